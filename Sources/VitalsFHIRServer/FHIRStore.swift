import Crypto
import Foundation
import GRDB
import VitalsDomain
import VitalsFHIR
import VitalsStore

/// The FHIR API's reads and writes on the vitalsd database: readings as Observations, patients,
/// devices and tasks, SMART clients, assertion ids and bearer tokens, and the push cursor.
///
/// The mapping from `tasks` rows to ``StoredTask`` is in one place, ``storedTask(_:)``, as is the
/// reading row mapping, ``observationSource(_:)``: schema changes follow there.
public struct FHIRStore: Sendable {
    public let database: AppDatabase

    /// - Throws: nothing today; kept throwing so that opening can check the schema later.
    public init(database: AppDatabase) throws {
        self.database = database
    }

    // MARK: Observations

    /// The reading columns, and the diastolic partner of a systolic reading (`d_*`).
    static let observationSelect = """
        SELECT r.id, r.device_id, r.patient_id, r.type, r.canonical_value, r.measured_at, r.received_at, r.source, r.flags,
               r.local_offset_minutes, d.id AS d_id, d.canonical_value AS d_value, d.received_at AS d_received,
               d.source AS d_source, d.flags AS d_flags
        FROM readings r
        LEFT JOIN readings d ON r.type = 'systolic_bp' AND d.device_id = r.device_id AND d.loinc = '8462-4'
                            AND d.measured_at = r.measured_at
        """

    /// Excludes a diastolic reading that is part of a panel: it is served inside its systolic's Observation.
    static let notPairedDiastolic = """
        NOT (r.type = 'diastolic_bp' AND EXISTS (SELECT 1 FROM readings s WHERE s.device_id = r.device_id
             AND s.loinc = '8480-6' AND s.measured_at = r.measured_at))
        """

    /// A row of ``observationSelect`` as an Observation's source.
    static func observationSource(_ row: Row) -> ObservationSource? {
        guard let type = VitalType(rawValue: row["type"]) else { return nil }
        let reading = StoredReading(
            id: row["id"], deviceID: row["device_id"], patientID: row["patient_id"], type: type,
            canonicalValue: row["canonical_value"], measuredAt: row["measured_at"], receivedAt: row["received_at"],
            source: ReadingSource(rawValue: row["source"]) ?? .device, flags: ObservationFlags(stored: row["flags"]),
            localOffsetMinutes: row["local_offset_minutes"])
        var diastolic: StoredReading?
        if let id: Int64 = row["d_id"] {
            diastolic = StoredReading(
                id: id, deviceID: reading.deviceID, patientID: reading.patientID, type: .diastolicBP,
                canonicalValue: row["d_value"], measuredAt: reading.measuredAt, receivedAt: row["d_received"],
                source: ReadingSource(rawValue: row["d_source"]) ?? .device, flags: ObservationFlags(stored: row["d_flags"]),
                localOffsetMinutes: reading.localOffsetMinutes)
        }
        return ObservationSource(reading: reading, diastolic: diastolic)
    }

    /// One page of an Observation search, in (effective instant, reading id) order: keyset paging, so
    /// that readings stored meanwhile neither repeat nor shift an entry across pages.
    /// - Returns: the page's Observations, whether more follow, and the total when asked for.
    public func observations(_ search: ObservationSearch) async throws -> (page: [ObservationSource], more: Bool, total: Int?) {
        if let kinds = search.kinds, kinds.isEmpty { return ([], false, search.page.total ? 0 : nil) }
        let position = try search.position()
        var clauses = [Self.notPairedDiastolic]
        var arguments: [(any DatabaseValueConvertible)?] = []
        if !search.patientIDs.isEmpty {
            clauses.append("r.patient_id IN (\(Array(repeating: "?", count: search.patientIDs.count).joined(separator: ",")))")
            arguments += search.patientIDs as [(any DatabaseValueConvertible)?]
        }
        var idFilter: Set<String>?
        if let ids = search.ids {
            let readingIDs = ids.compactMap { id -> Int64? in
                if id.hasPrefix("r-") { return Int64(id.dropFirst(2)) }
                if id.hasPrefix("bp-") { return Int64(id.dropFirst(3)) }
                return nil
            }
            if readingIDs.isEmpty { return ([], false, search.page.total ? 0 : nil) }
            clauses.append("r.id IN (\(Array(repeating: "?", count: readingIDs.count).joined(separator: ",")))")
            arguments += readingIDs as [(any DatabaseValueConvertible)?]
            idFilter = Set(ids)
        }
        if let kinds = search.kinds {
            var alternatives: [String] = []
            for kind in kinds {
                switch kind {
                case .bloodPressurePanel: alternatives.append("(r.type = 'systolic_bp' AND d.id IS NOT NULL)")
                case .single(.systolicBP): alternatives.append("(r.type = 'systolic_bp' AND d.id IS NULL)")
                case .single(let type):
                    alternatives.append("r.type = ?")
                    arguments.append(type.rawValue)
                }
            }
            clauses.append("(" + alternatives.joined(separator: " OR ") + ")")
        }
        for condition in search.dates {
            switch condition {
            case .atOrAfter(let t):
                clauses.append("r.measured_at >= ?")
                arguments.append(t)
            case .before(let t):
                clauses.append("r.measured_at < ?")
                arguments.append(t)
            case .outside(let a, let b):
                clauses.append("(r.measured_at < ? OR r.measured_at >= ?)")
                arguments += [a, b]
            }
        }
        let filter = clauses.joined(separator: " AND ")
        var pageClause = filter
        var pageArguments = arguments
        if let position {
            pageClause += " AND r.measured_at >= ? AND (r.measured_at > ? OR r.id > ?)"
            pageArguments += [position.measuredAt, position.measuredAt, position.readingID]
        }
        let limit = search.page.count
        let wantTotal = search.page.total
        let pageSQL = "\(Self.observationSelect) WHERE \(pageClause) ORDER BY r.measured_at, r.id LIMIT ?"
        let pageArgs = StatementArguments(pageArguments + [limit + 1])
        let totalArgs = StatementArguments(arguments)
        let wantedIDs = idFilter
        return try await database.writer.read { db in
            let rows = try Row.fetchAll(db, sql: pageSQL, arguments: pageArgs)
            var sources = rows.prefix(limit).compactMap(Self.observationSource)
            if let wantedIDs { sources = sources.filter { wantedIDs.contains($0.logicalID) } }
            var total: Int?
            if wantTotal {
                total = try Int.fetchOne(
                    db,
                    sql: "SELECT count(*) FROM readings r LEFT JOIN readings d ON r.type = 'systolic_bp' AND d.device_id = r.device_id AND d.loinc = '8462-4' AND d.measured_at = r.measured_at WHERE \(filter)",
                    arguments: totalArgs)
            }
            return (sources, rows.count > limit, total)
        }
    }

    /// The Observation with a logical id (`r-<id>` or `bp-<systolic id>`), or nil.
    public func observation(id: String) async throws -> ObservationSource? {
        let readingID: Int64?
        if id.hasPrefix("r-") { readingID = Int64(id.dropFirst(2)) } else if id.hasPrefix("bp-") { readingID = Int64(id.dropFirst(3)) } else { readingID = nil }
        guard let readingID else { return nil }
        let source = try await database.writer.read { db in
            try Row.fetchOne(db, sql: "\(Self.observationSelect) WHERE r.id = ? AND \(Self.notPairedDiastolic)", arguments: [readingID])
                .flatMap(Self.observationSource)
        }
        return source?.logicalID == id ? source : nil
    }

    /// The logical id of the Observation that holds a reading.
    static func observationID(_ db: Database, readingID: Int64) throws -> String? {
        guard let row = try Row.fetchOne(
            db,
            sql: """
                SELECT r.id, r.type,
                       (SELECT s.id FROM readings s WHERE r.type = 'diastolic_bp' AND s.device_id = r.device_id
                          AND s.loinc = '8480-6' AND s.measured_at = r.measured_at) AS systolic_id,
                       EXISTS (SELECT 1 FROM readings d WHERE r.type = 'systolic_bp' AND d.device_id = r.device_id
                          AND d.loinc = '8462-4' AND d.measured_at = r.measured_at) AS paired
                FROM readings r WHERE r.id = ?
                """,
            arguments: [readingID])
        else { return nil }
        if let systolic: Int64 = row["systolic_id"] { return "bp-\(systolic)" }
        return (row["paired"] as Bool) ? "bp-\(readingID)" : "r-\(readingID)"
    }

    // MARK: Patients and devices

    func storedPatient(_ row: Row) -> StoredPatient {
        StoredPatient(
            id: row["id"], timezone: row["timezone"], createdAt: row["created_at"],
            name: row["name"], birthDate: row["birth_date"], phone: row["phone"])
    }

    /// Patients by id, in id order, after `_page`.
    public func patients(_ search: EnrollmentSearch) async throws -> (page: [StoredPatient], more: Bool) {
        let (clause, arguments) = Self.enrollmentFilter(search, patientColumn: nil)
        let limit = search.page.count
        let args = StatementArguments(arguments + [limit + 1])
        return try await database.writer.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM patients WHERE \(clause) ORDER BY id LIMIT ?", arguments: args)
            return (rows.prefix(limit).map(storedPatient), rows.count > limit)
        }
    }

    public func patient(id: String) async throws -> StoredPatient? {
        try await database.writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM patients WHERE id = ?", arguments: [id]).map(storedPatient)
        }
    }

    static func storedDevice(_ row: Row) -> StoredDevice {
        StoredDevice(id: row["id"], kind: row["kind"], patientID: row["patient_id"], createdAt: row["created_at"])
    }

    /// Devices by id, in id order, after `_page`.
    public func devices(_ search: EnrollmentSearch) async throws -> (page: [StoredDevice], more: Bool) {
        let (clause, arguments) = Self.enrollmentFilter(search, patientColumn: "patient_id")
        let limit = search.page.count
        let args = StatementArguments(arguments + [limit + 1])
        return try await database.writer.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM devices WHERE \(clause) ORDER BY id LIMIT ?", arguments: args)
            return (rows.prefix(limit).map(Self.storedDevice), rows.count > limit)
        }
    }

    public func device(id: String) async throws -> StoredDevice? {
        try await database.writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM devices WHERE id = ?", arguments: [id]).map(Self.storedDevice)
        }
    }

    static func enrollmentFilter(_ search: EnrollmentSearch, patientColumn: String?) -> (String, [(any DatabaseValueConvertible)?]) {
        var clauses = ["1"]
        var arguments: [(any DatabaseValueConvertible)?] = []
        func list(_ column: String, _ values: [String]) {
            clauses.append(values.isEmpty ? "0" : "\(column) IN (\(Array(repeating: "?", count: values.count).joined(separator: ",")))")
            arguments += values as [(any DatabaseValueConvertible)?]
        }
        if let ids = search.ids { list("id", ids) }
        if let identifiers = search.identifiers { list("id", identifiers) }
        if let patients = search.patientIDs, let patientColumn { list(patientColumn, patients) }
        if let after = search.page.after {
            clauses.append("id > ?")
            arguments.append(after)
        }
        return (clauses.joined(separator: " AND "), arguments)
    }

    // MARK: Tasks

    /// A `tasks` row as a ``StoredTask``: the one place that follows the tasks schema.
    func storedTask(_ db: Database, _ row: Row) throws -> StoredTask {
        let first: Int64? = row["first_reading_id"]
        let last: Int64? = row["last_reading_id"]
        return StoredTask(
            id: row["id"], patientID: row["patient_id"], kind: row["kind"], condition: row["vital"], direction: row["direction"],
            priority: row["priority"], status: row["status"], reason: row["reason"], occurrences: row["occurrences"],
            openedAt: row["opened_at"], updatedAt: row["updated_at"], resolvedAt: row["resolved_at"],
            notes: try Row.fetchAll(
                db.cachedStatement(sql: "SELECT author, at, text FROM task_notes WHERE task_id = ? ORDER BY id"), arguments: [row["id"]]
            ).map { StoredTaskNote(author: $0["author"], at: $0["at"], text: $0["text"]) },
            escalationLevel: row["escalation_level"], confirmation: row["confirmation"], dataStale: row["data_stale"],
            owner: row["owner"],
            focusObservationID: try first.flatMap { try Self.observationID(db, readingID: $0) },
            latestObservationID: try last.flatMap { try Self.observationID(db, readingID: $0) })
    }

    /// Tasks by id after `_page`.
    public func tasks(_ search: TaskSearch) async throws -> (page: [StoredTask], more: Bool, total: Int?) {
        var clauses = ["1"]
        var arguments: [(any DatabaseValueConvertible)?] = []
        func list(_ column: String, _ values: [(any DatabaseValueConvertible)?]) {
            clauses.append(values.isEmpty ? "0" : "\(column) IN (\(Array(repeating: "?", count: values.count).joined(separator: ",")))")
            arguments += values
        }
        if let patients = search.patientIDs { list("patient_id", patients) }
        if let statuses = search.statuses { list("status", statuses) }
        if let ids = search.ids { list("id", ids) }
        for condition in search.lastUpdated {
            switch condition {
            case .atOrAfter(let t): clauses.append("updated_at >= ?"); arguments.append(t)
            case .before(let t): clauses.append("updated_at < ?"); arguments.append(t)
            case .outside(let a, let b): clauses.append("(updated_at < ? OR updated_at >= ?)"); arguments += [a, b]
            }
        }
        let filter = clauses.joined(separator: " AND ")
        var pageFilter = filter
        var pageArguments = arguments
        if let after = search.page.after {
            guard let id = Int64(after) else { throw FHIRError.invalid("_page is not a position this server wrote") }
            pageFilter += " AND id > ?"
            pageArguments.append(id)
        }
        let limit = search.page.count
        let wantTotal = search.page.total
        let pageSQL = "SELECT * FROM tasks WHERE \(pageFilter) ORDER BY id LIMIT ?"
        let pageArgs = StatementArguments(pageArguments + [limit + 1])
        let totalArgs = StatementArguments(arguments)
        return try await database.writer.read { db in
            let rows = try Row.fetchAll(db, sql: pageSQL, arguments: pageArgs)
            let tasks = try rows.prefix(limit).map { try storedTask(db, $0) }
            let total = wantTotal ? try Int.fetchOne(db, sql: "SELECT count(*) FROM tasks WHERE \(filter)", arguments: totalArgs) : nil
            return (tasks, rows.count > limit, total)
        }
    }

    public func task(id: Int64) async throws -> StoredTask? {
        try await database.writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]).map { try storedTask(db, $0) }
        }
    }
}

// MARK: - SMART clients and tokens

/// A registered SMART Backend Services client (an EHR).
public struct SMARTClient: Sendable, Hashable, Codable {
    /// The `client_id`: `iss` and `sub` of its assertions.
    public var id: String
    public var name: String
    /// The JWK Set registered inline (JSON), or nil when it is fetched from ``jwksURL``.
    public var jwks: String?
    public var jwksURL: String?
    /// Pre-authorised scopes, e.g. `["system/Observation.rs", "system/Patient.rs"]`.
    public var scopes: [String]
    public var enabled: Bool
    public var createdAt: Date
    public var createdBy: String

    enum CodingKeys: String, CodingKey {
        case id, name, jwks, scopes, enabled
        case jwksURL = "jwks_url"
        case createdAt = "created_at"
        case createdBy = "created_by"
    }

    init(row: Row) {
        id = row["id"]
        name = row["name"]
        jwks = row["jwks"]
        jwksURL = row["jwks_url"]
        scopes = (row["scopes"] as String).split(separator: " ").map(String.init)
        enabled = row["enabled"]
        createdAt = dateFromEpochMilliseconds(row["created_at"])
        createdBy = row["created_by"]
    }
}

/// A client registration that cannot be made.
public struct ClientRegistrationError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A bearer token's grant: who holds it and what it allows.
public struct TokenGrant: Sendable, Hashable {
    public var clientID: String
    public var scopes: [SMARTScope]
}

extension FHIRStore {
    /// Registers a client and returns it with its new `client_id` (a random UUID).
    ///
    /// - Parameters:
    ///   - jwks: a JWK Set (JSON) whose keys each have `kty` and `kid`; or nil with `jwksURL`.
    ///   - jwksURL: an `https://` (or `http://` on loopback) URL of the client's JWK Set.
    ///   - scopes: `system/` scopes with v1 (`read`) or v2 (`rs`) permissions on served resource types.
    /// - Throws: ``ClientRegistrationError`` for a bad scope, JWK Set or URL; GRDB errors.
    public func addClient(name: String, jwks: String?, jwksURL: String?, scopes: [String], actor: String) throws -> SMARTClient {
        guard !name.trimmingCharacters(in: .whitespaces).isEmpty else { throw ClientRegistrationError("--name is required") }
        guard (jwks == nil) != (jwksURL == nil) else { throw ClientRegistrationError("give exactly one of --jwks and --jwks-url") }
        guard !scopes.isEmpty else { throw ClientRegistrationError("--scope needs at least one system/ scope") }
        for scope in scopes {
            guard let s = SMARTScope(scope), s.resourceType == "*" || SMARTScopeGrant.servedTypes.contains(s.resourceType),
                  !s.interactions.isEmpty else {
                throw ClientRegistrationError("scope '\(scope)' is not a system/ read scope on \(SMARTScopeGrant.servedTypes.joined(separator: ", ")) or *, e.g. system/Observation.rs")
            }
        }
        if let jwks { _ = try JWKSet.parse(Data(jwks.utf8)) }
        if let jwksURL {
            guard let url = URL(string: jwksURL), url.scheme == "https" || (url.scheme == "http" && ["127.0.0.1", "localhost", "::1"].contains(url.host ?? "")) else {
                throw ClientRegistrationError("--jwks-url must be an https:// URL (http:// only on loopback)")
            }
        }
        let id = UUID().uuidString.lowercased()
        let now = Date()
        try database.writer.write { db in
            try db.execute(
                sql: "INSERT INTO smart_clients(id, name, jwks, jwks_url, scopes, enabled, created_at, created_by) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                arguments: [id, name, jwks, jwksURL, scopes.joined(separator: " "), epochMilliseconds(now), actor])
            try db.execute(
                sql: "INSERT INTO audit_log(at, actor, action, target_type, target_id, detail) VALUES (?, ?, 'client.create', 'smart_client', ?, ?)",
                arguments: [epochMilliseconds(now), actor, id, "name=\(name) scopes=\(scopes.joined(separator: " ")) keys=\(jwksURL == nil ? "inline" : "url")"])
        }
        return try client(id: id)!
    }

    /// Every registered client, oldest first.
    public func clients() throws -> [SMARTClient] {
        try database.writer.read { db in try Row.fetchAll(db, sql: "SELECT * FROM smart_clients ORDER BY created_at, id").map(SMARTClient.init(row:)) }
    }

    public func client(id: String) throws -> SMARTClient? {
        try database.writer.read { db in try Row.fetchOne(db, sql: "SELECT * FROM smart_clients WHERE id = ?", arguments: [id]).map(SMARTClient.init(row:)) }
    }

    /// Disables a client and revokes its tokens at once.
    /// - Throws: ``ClientRegistrationError`` for an unknown client.
    public func disableClient(id: String, actor: String) throws {
        try database.writer.write { db in
            try db.execute(sql: "UPDATE smart_clients SET enabled = 0 WHERE id = ?", arguments: [id])
            guard db.changesCount == 1 else { throw ClientRegistrationError("no client \(id)") }
            try db.execute(sql: "DELETE FROM access_tokens WHERE client_id = ?", arguments: [id])
            try db.execute(
                sql: "INSERT INTO audit_log(at, actor, action, target_type, target_id, detail) VALUES (?, ?, 'client.disable', 'smart_client', ?, 'tokens revoked')",
                arguments: [epochMilliseconds(Date()), actor, id])
        }
    }

    /// Records an assertion's `jti` for its client until `expiresAt`, purging expired ones first.
    /// - Returns: false when the pair was already recorded: a replay.
    public func consumeAssertionID(clientID: String, jti: String, expiresAt: Date, now: Date) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(sql: "DELETE FROM smart_assertion_ids WHERE expires_at < ?", arguments: [epochMilliseconds(now)])
            try db.execute(
                sql: "INSERT OR IGNORE INTO smart_assertion_ids(client_id, jti, expires_at) VALUES (?, ?, ?)",
                arguments: [clientID, jti, epochMilliseconds(expiresAt)])
            return db.changesCount == 1
        }
    }

    /// Issues an opaque bearer token: 32 random bytes, base64url; only its SHA-256 is stored, with
    /// the client, scopes and expiry. The issue is written to the access log in the same transaction.
    /// - Returns: the token text, to give to the client once.
    public func issueToken(clientID: String, scopes: [SMARTScope], lifetime: TimeInterval, now: Date) async throws -> String {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        let token = bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let hash = Data(SHA256.hash(data: Data(token.utf8)))
        let scopeText = scopes.map(\.text).joined(separator: " ")
        try await database.writer.write { db in
            try db.execute(sql: "DELETE FROM access_tokens WHERE expires_at < ?", arguments: [epochMilliseconds(now)])
            try db.execute(
                sql: "INSERT INTO access_tokens(token_sha256, client_id, scopes, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [hash, clientID, scopeText, epochMilliseconds(now), epochMilliseconds(now.addingTimeInterval(lifetime))])
            try AppDatabase.recordAccess(db, actor: "client:\(clientID)", action: "token.issued", targetType: "token",
                                         detail: "scope=\(scopeText) expires_in=\(Int(lifetime))", at: now)
        }
        return token
    }

    /// The grant of a bearer token that exists, is unexpired and belongs to an enabled client; else nil.
    public func grant(forToken token: String, now: Date) async throws -> TokenGrant? {
        let hash = Data(SHA256.hash(data: Data(token.utf8)))
        return try await database.writer.read { db in
            guard let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT t.client_id, t.scopes FROM access_tokens t JOIN smart_clients c ON c.id = t.client_id
                    WHERE t.token_sha256 = ? AND t.expires_at > ? AND c.enabled = 1
                    """,
                arguments: [hash, epochMilliseconds(now)])
            else { return nil }
            return TokenGrant(clientID: row["client_id"], scopes: (row["scopes"] as String).split(separator: " ").compactMap { SMARTScope(String($0)) })
        }
    }
}

// MARK: - Push cursor

extension FHIRStore {
    /// Starts a reading channel at the newest reading, unless it has a cursor: enabling the channel
    /// sends the readings stored from then on, not the history.
    public func openReadingChannel(_ channel: String) throws {
        try database.writer.write { db in
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO reading_delivery_cursors(channel, last_reading_id, updated_at)
                    VALUES (?, (SELECT coalesce(max(id), 0) FROM readings), ?)
                    """,
                arguments: [channel, epochMilliseconds(Date())])
        }
    }

    /// The Observations of the readings after a channel's cursor, in reading order, and the id of the
    /// last reading they cover (the cursor to move to once they were accepted).
    ///
    /// A blood-pressure pair is one panel, at the place of its first reading. A diastolic reading whose
    /// systolic is already behind the cursor was sent inside that systolic's panel when both arrived
    /// together; when it arrived later (another receive time), the panel is sent again, which the
    /// receiver's conditional create absorbs.
    /// - Returns: nil when nothing is waiting.
    public func pendingObservations(channel: String, limit: Int) throws -> (observations: [ObservationSource], through: Int64)? {
        try database.writer.read { db in
            guard let cursor = try Int64.fetchOne(
                db, sql: "SELECT last_reading_id FROM reading_delivery_cursors WHERE channel = ?", arguments: [channel])
            else { return nil }
            let ids = try Int64.fetchAll(db, sql: "SELECT id FROM readings WHERE id > ? ORDER BY id LIMIT ?", arguments: [cursor, limit])
            guard let through = ids.last else { return nil }
            var result: [ObservationSource] = []
            var panels: Set<Int64> = []
            for id in ids {
                guard let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT r.*, s.id AS s_id, s.received_at AS s_received FROM readings r
                        LEFT JOIN readings s ON r.type = 'diastolic_bp' AND s.device_id = r.device_id AND s.loinc = '8480-6'
                                            AND s.measured_at = r.measured_at
                        WHERE r.id = ?
                        """,
                    arguments: [id])
                else { continue }
                var systolicID = id
                if let s: Int64 = row["s_id"] {
                    if s <= cursor && (row["s_received"] as Int64) == (row["received_at"] as Int64) { continue }
                    systolicID = s
                }
                guard !panels.contains(systolicID) else { continue }
                guard let source = try Row.fetchOne(db, sql: "\(Self.observationSelect) WHERE r.id = ?", arguments: [systolicID])
                    .flatMap(Self.observationSource) else { continue }
                // A systolic reading after a diastolic one of the same message: the panel went with the diastolic.
                if let d = source.diastolic, d.id <= cursor, d.receivedAt == source.reading.receivedAt { continue }
                if source.diastolic != nil { panels.insert(systolicID) }
                result.append(source)
            }
            return (result, through)
        }
    }

    /// Moves a reading channel's cursor forward to `readingID` (never back).
    public func markPushed(channel: String, through readingID: Int64) throws {
        try database.writer.write { db in
            try db.execute(
                sql: "UPDATE reading_delivery_cursors SET last_reading_id = max(last_reading_id, ?), updated_at = ? WHERE channel = ?",
                arguments: [readingID, epochMilliseconds(Date()), channel])
        }
    }

    /// Readings not yet sent on a reading channel.
    public func pushBacklog(channel: String) throws -> Int {
        try database.writer.read { db in
            let cursor = try Int64.fetchOne(db, sql: "SELECT last_reading_id FROM reading_delivery_cursors WHERE channel = ?", arguments: [channel]) ?? 0
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM readings WHERE id > ?", arguments: [cursor]) ?? 0
        }
    }
}
