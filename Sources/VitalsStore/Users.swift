import Foundation
import GRDB
import VitalsDomain

/// What a workspace user may do.
///
/// - `care_manager`: works the task queue (claim, assign, acknowledge, resolve, reopen, notes) and keeps
///   patients' contact details and caseloads;
/// - `clinician`: works the task queue;
/// - `admin`: everything a care manager does. Users themselves are managed with `vitalsd user`.
public enum UserRole: String, Sendable, Hashable, Codable, CaseIterable {
    case careManager = "care_manager"
    case clinician
    case admin

    /// May change a patient's contact details and care manager.
    public var managesCaseloads: Bool { self != .clinician }
}

/// A person who signs in to the workspace. The password hash never leaves storage through this type.
public struct WorkspaceUser: Sendable, Hashable, Codable {
    public var id: Int64
    /// Sign-in name: 1–64 characters from `a–z 0–9 . _ @ -`; names the user in the audit trail.
    public var username: String
    /// The name shown to colleagues, e.g. "Ana Ruiz, RN".
    public var displayName: String
    public var role: UserRole
    /// A disabled user cannot sign in and owns no task.
    public var disabled: Bool
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, username, role, disabled
        case displayName = "display_name"
        case createdAt = "created_at"
    }

    init(row: Row) {
        id = row["id"]
        username = row["username"]
        displayName = row["display_name"]
        role = UserRole(rawValue: row["role"]) ?? .clinician
        disabled = row["disabled"]
        createdAt = dateFromEpochMilliseconds(row["created_at"])
    }
}

/// A user change that cannot be made, or a sign-in that cannot go on.
public struct UserError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Rules for user names: what `vitalsd user add` accepts.
public enum Username {
    /// The name as stored: trimmed and lower-cased, so that `Ana` and `ana` are one user.
    public static func normalized(_ text: String) -> String {
        text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    /// - Throws: ``UserError`` naming what is wrong.
    public static func validate(_ name: String) throws {
        guard (1...64).contains(name.utf8.count) else { throw UserError("a user name has 1 to 64 characters") }
        guard name.unicodeScalars.allSatisfy({ c in
            c.isASCII && (("a"..."z").contains(c) || ("0"..."9").contains(c) || "._@-".unicodeScalars.contains(c))
        }) else {
            throw UserError("a user name may contain only a-z, 0-9 and . _ @ -")
        }
    }
}

extension AppDatabase {
    // MARK: Users

    /// Adds a user with a password hash made by the caller (bcrypt, in the workspace module). Audited.
    /// - Throws: ``UserError`` for a bad or taken name or an empty display name.
    @discardableResult
    public func addUser(
        username: String, displayName: String, role: UserRole, passwordHash: String, actor: String, at: Date = Date()
    ) throws -> WorkspaceUser {
        let name = Username.normalized(username)
        try Username.validate(name)
        let display = displayName.trimmingCharacters(in: .whitespacesAndNewlines)
        // No control characters: the name is printed by `user list` and on every page (an escape
        // sequence or a newline would forge terminal output or table rows).
        guard (1...200).contains(display.count), !HiddenCharacters.contain(display) else {
            throw UserError("the display name has 1 to 200 characters and no control, invisible or text-direction characters")
        }
        return try writer.write { db in
            if try Self.fetchUser(db, username: name) != nil { throw UserError("user \(name) exists") }
            let ms = epochMilliseconds(at)
            try db.execute(
                sql: """
                    INSERT INTO users(username, display_name, role, password_hash, created_at, password_changed_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [name, display, role.rawValue, passwordHash, ms, ms])
            try Self.audit(db, actor: actor, action: "user.create", targetType: "user", targetID: name,
                           detail: "role=\(role.rawValue)", at: at)
            return try Self.fetchUser(db, username: name)!
        }
    }

    /// Every user, by name.
    public func users() throws -> [WorkspaceUser] {
        try writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM users ORDER BY username").map(WorkspaceUser.init(row:))
        }
    }

    /// The user with this sign-in name (normalized), or nil.
    public func user(username: String) throws -> WorkspaceUser? {
        try writer.read { db in try Self.fetchUser(db, username: Username.normalized(username)) }
    }

    static func fetchUser(_ db: Database, username: String) throws -> WorkspaceUser? {
        try Row.fetchOne(db, sql: "SELECT * FROM users WHERE username = ?", arguments: [username]).map(WorkspaceUser.init(row:))
    }

    /// The stored bcrypt hash and the user, for a sign-in check; nil for an unknown name.
    public func credentials(username: String) async throws -> (user: WorkspaceUser, passwordHash: String)? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE username = ?", arguments: [Username.normalized(username)])
                .map { (WorkspaceUser(row: $0), $0["password_hash"]) }
        }
    }

    /// Disables or enables a user. Disabling ends their sessions and puts the unresolved tasks they own
    /// back in Unassigned, so that no task waits with someone who has left. Audited.
    /// - Throws: ``UserError`` for an unknown user.
    public func setUserDisabled(username: String, disabled: Bool, actor: String, at: Date = Date()) throws {
        let name = Username.normalized(username)
        try writer.write { db in
            guard let user = try Self.fetchUser(db, username: name) else { throw UserError("user \(name) does not exist") }
            try db.execute(sql: "UPDATE users SET disabled = ? WHERE id = ?", arguments: [disabled, user.id])
            var detail = disabled ? "disabled" : "enabled"
            if disabled {
                try db.execute(sql: "DELETE FROM web_sessions WHERE user_id = ?", arguments: [user.id])
                let released = try Self.releaseTasks(db, owner: name, actor: actor, at: at, incarnation: incarnation)
                detail += "; \(released) unresolved task(s) back to unassigned"
            }
            try Self.audit(db, actor: actor, action: disabled ? "user.disable" : "user.enable", targetType: "user",
                           targetID: name, detail: detail, at: at)
        }
    }

    /// Replaces a user's password hash and ends their sessions. Audited (never the password).
    /// - Throws: ``UserError`` for an unknown user.
    public func setPasswordHash(username: String, passwordHash: String, actor: String, at: Date = Date()) throws {
        let name = Username.normalized(username)
        try writer.write { db in
            guard let user = try Self.fetchUser(db, username: name) else { throw UserError("user \(name) does not exist") }
            try db.execute(
                sql: "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                arguments: [passwordHash, epochMilliseconds(at), user.id])
            try db.execute(sql: "DELETE FROM web_sessions WHERE user_id = ?", arguments: [user.id])
            try Self.audit(db, actor: actor, action: "user.reset_password", targetType: "user", targetID: name,
                           detail: "sessions ended", at: at)
        }
    }
}

// MARK: - Sessions

/// A signed-in browser's session, as stored (by the SHA-256 of its id).
public struct WebSession: Sendable, Hashable {
    public var user: WorkspaceUser
    /// The synchronizer token every form of this session carries.
    public var csrfToken: String
    public var createdAt: Date
    public var lastSeenAt: Date
    /// The absolute end, whatever the activity.
    public var expiresAt: Date
}

/// How long a session lives.
public struct SessionLifetime: Sendable, Hashable {
    /// Seconds without a request that extends the session before it ends (HIPAA §164.312(a)(2)(iii)
    /// automatic logoff; 15 minutes by default).
    public var idleSeconds: Double
    /// Seconds from sign-in after which the session ends however active it is.
    public var absoluteSeconds: Double

    public init(idleSeconds: Double = 15 * 60, absoluteSeconds: Double = 12 * 3_600) {
        self.idleSeconds = idleSeconds
        self.absoluteSeconds = absoluteSeconds
    }
}

/// Why a session lookup found no session.
public enum SessionEnd: String, Sendable {
    /// No session has this id (never existed, signed out, or ended by a password reset).
    case unknown
    /// No request extended it for the idle time.
    case idle
    /// Its absolute lifetime is over.
    case expired
    /// Its user was disabled.
    case disabled
}

extension AppDatabase {
    /// Stores a new session for a user who has just signed in. Sessions that have ended are purged.
    /// - Parameters:
    ///   - tokenHash: SHA-256 of the session id (32 bytes); the id itself is never stored.
    ///   - csrfToken: the session's synchronizer token.
    public func createSession(
        userID: Int64, tokenHash: Data, csrfToken: String, lifetime: SessionLifetime, now: Date
    ) async throws {
        let ms = epochMilliseconds(now)
        try await writer.write { db in
            try db.execute(
                sql: "DELETE FROM web_sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                arguments: [ms, ms - Int64(lifetime.idleSeconds * 1000)])
            try db.execute(
                sql: """
                    INSERT INTO web_sessions(token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [tokenHash, userID, csrfToken, ms, ms, ms + Int64(lifetime.absoluteSeconds * 1000)])
        }
    }

    /// The live session with this id hash, or why there is none. An ended session is deleted.
    /// - Parameter touch: the request is a person's (a page, a form): it extends the idle time. Live
    ///   updates (server-sent events, the rows they fetch) pass false, so an open worklist signs out too.
    ///   The write happens at most every 30 s per session.
    public func session(tokenHash: Data, lifetime: SessionLifetime, now: Date, touch: Bool) async throws -> Result<WebSession, SessionEndError> {
        let ms = epochMilliseconds(now)
        // Most requests only read: the write lock (shared with ingest) is taken only to end or extend a session.
        let found = try await writer.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT s.csrf_token, s.created_at, s.last_seen_at, s.expires_at, u.*
                    FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?
                    """,
                arguments: [tokenHash]
            ).map { row -> (user: WorkspaceUser, csrf: String, created: Int64, lastSeen: Int64, expires: Int64) in
                (WorkspaceUser(row: row), row["csrf_token"], row["created_at"], row["last_seen_at"], row["expires_at"])
            }
        }
        guard let found else { return .failure(SessionEndError(end: .unknown, username: nil)) }
        let user = found.user
        let lastSeen = found.lastSeen
        let expiresAt = found.expires
        let end: SessionEnd? = user.disabled ? .disabled
            : ms >= expiresAt ? .expired
            : ms - lastSeen >= Int64(lifetime.idleSeconds * 1000) ? .idle : nil
        if let end {
            try await writer.write { db in
                try db.execute(sql: "DELETE FROM web_sessions WHERE token_hash = ?", arguments: [tokenHash])
                guard db.changesCount > 0 else { return }
                try Self.audit(db, actor: user.username, action: "session.end", targetType: "user", targetID: user.username,
                               detail: end.rawValue, at: now)
            }
            return .failure(SessionEndError(end: end, username: user.username))
        }
        var seen = lastSeen
        if touch && ms - lastSeen >= 30_000 {
            try await writer.write { db in
                try db.execute(sql: "UPDATE web_sessions SET last_seen_at = max(last_seen_at, ?) WHERE token_hash = ?",
                               arguments: [ms, tokenHash])
            }
            seen = ms
        }
        return .success(WebSession(
            user: user, csrfToken: found.csrf, createdAt: dateFromEpochMilliseconds(found.created),
            lastSeenAt: dateFromEpochMilliseconds(seen), expiresAt: dateFromEpochMilliseconds(expiresAt)))
    }

    /// Ends a session (sign-out). Audited under the session's user.
    public func endSession(tokenHash: Data, at: Date) async throws {
        try await writer.write { db in
            guard let username = try String.fetchOne(
                db, sql: "SELECT u.username FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
                arguments: [tokenHash])
            else { return }
            try db.execute(sql: "DELETE FROM web_sessions WHERE token_hash = ?", arguments: [tokenHash])
            try Self.audit(db, actor: username, action: "sign_out", targetType: "user", targetID: username, at: at)
        }
    }
}

/// No live session, and why.
public struct SessionEndError: Error, Sendable {
    public var end: SessionEnd
    /// The session's user, when the session existed.
    public var username: String?
}

// MARK: - Sign-in lockout

/// Lockout after repeated failed sign-ins, with a back-off (OWASP ASVS 4.0 V2.2.1).
///
/// Failures are counted per user name typed, known or not (so the answer never tells whether a name
/// exists), since the last successful sign-in; a day without failures forgets them. From the
/// ``threshold``-th failure on, the name is locked for ``baseSeconds``, doubling with each further
/// failure up to ``maximumSeconds``. While locked, a sign-in is refused without its password being
/// checked, so that even the right password does not get in.
public struct SignInThrottle: Sendable, Hashable {
    /// Failures that start the lockout (5: the sixth attempt within the minute is refused).
    public var threshold = 5
    /// Seconds of the first lock.
    public var baseSeconds = 60.0
    /// Longest lock, in seconds.
    public var maximumSeconds = 15 * 60.0
    /// Seconds without a failure after which the count starts again.
    public var forgetAfterSeconds = 24 * 3_600.0

    public init() {}

    /// How long a name stays locked after its `failures`-th consecutive failure; nil: not locked.
    public func lockSeconds(afterFailures failures: Int) -> Double? {
        guard failures >= threshold else { return nil }
        let doublings = min(failures - threshold, 30)
        return min(baseSeconds * pow(2, Double(doublings)), maximumSeconds)
    }
}

extension AppDatabase {
    /// Until when sign-ins with this name are refused; nil when they are not.
    public func signInLockedUntil(username: String, now: Date) async throws -> Date? {
        let ms = epochMilliseconds(now)
        return try await writer.read { db in
            try Int64.fetchOne(
                db, sql: "SELECT locked_until FROM sign_in_failures WHERE username = ? AND locked_until > ?",
                arguments: [Username.normalized(username), ms]
            ).map(dateFromEpochMilliseconds)
        }
    }

    /// Records a failed sign-in and audits it (with the name only when it is a user's; never the
    /// password). A typed name that is no user's is audited as `unknown`: it may be a password typed
    /// into the wrong field.
    /// - Returns: until when the name is now locked, if it is.
    @discardableResult
    public func recordSignInFailure(
        username typed: String, throttle: SignInThrottle, now: Date, reason: String
    ) async throws -> Date? {
        let name = Username.normalized(typed)
        let ms = epochMilliseconds(now)
        return try await writer.write { db in
            let row = try Row.fetchOne(db, sql: "SELECT failures, last_failure_at FROM sign_in_failures WHERE username = ?",
                                       arguments: [name])
            var failures = 1
            if let row, Double(ms - (row["last_failure_at"] as Int64)) / 1000 < throttle.forgetAfterSeconds {
                failures = row["failures"] + 1
            }
            let lockedUntil = throttle.lockSeconds(afterFailures: failures).map { ms + Int64($0 * 1000) }
            try db.execute(
                sql: """
                    INSERT INTO sign_in_failures(username, failures, last_failure_at, locked_until) VALUES (?, ?, ?, ?)
                    ON CONFLICT(username) DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at,
                        locked_until = excluded.locked_until
                    """,
                arguments: [name, failures, ms, lockedUntil])
            // Names nobody has typed for a day are forgotten, so the table stays small under guessing.
            try db.execute(sql: "DELETE FROM sign_in_failures WHERE last_failure_at < ?",
                           arguments: [ms - Int64(throttle.forgetAfterSeconds * 1000)])
            let known = try Self.fetchUser(db, username: name) != nil
            try Self.audit(db, actor: known ? name : "unknown", action: "sign_in.failed", targetType: "user",
                           targetID: known ? name : "unknown",
                           detail: reason + (lockedUntil != nil ? "; locked after \(failures) failures" : ""), at: now)
            return lockedUntil.map(dateFromEpochMilliseconds)
        }
    }

    /// Audits a sign-in refused because the name is locked (the password was not checked).
    public func recordLockedSignIn(username typed: String, now: Date) async throws {
        let name = Username.normalized(typed)
        try await writer.write { db in
            let known = try Self.fetchUser(db, username: name) != nil
            try Self.audit(db, actor: known ? name : "unknown", action: "sign_in.refused", targetType: "user",
                           targetID: known ? name : "unknown", detail: "locked", at: now)
        }
    }

    /// Records a successful sign-in: forgets the failures and audits it.
    public func recordSignIn(username: String, now: Date) async throws {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM sign_in_failures WHERE username = ?", arguments: [username])
            try Self.audit(db, actor: username, action: "sign_in", targetType: "user", targetID: username, at: now)
        }
    }
}
