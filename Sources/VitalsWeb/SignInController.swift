import Foundation
import HTTPTypes
import Hummingbird
import VitalsConfig
import VitalsStore

/// Sign-in and sign-out (OWASP ASVS 4.0 V2, V3): bcrypt-checked passwords, a new session id at every
/// sign-in, lockout with back-off, and every outcome in the audit trail (never the password).
struct SignInController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to router: Router<Context>) {
        router.get("signin", use: form)
        router.post("signin", use: signIn)
    }

    func addSignedInRoutes(to group: RouterGroup<Context>) {
        group.get("/", use: { _, _ in Response.redirect(to: "/worklist", type: .normal) })
        group.post("signout", use: signOut)
    }

    /// The sign-in form, with a fresh CSRF token in the form and, signed by the daemon, in a cookie
    /// (double submit: there is no session yet to tie it to; the signature refuses planted cookies).
    @Sendable func form(_ request: Request, context: Context) async throws -> Response {
        let q = request.uri.queryParameters
        var notice: String?
        switch q.get("ended") {
        case "idle": notice = "You were signed out after \(Int(workspace.settings.sessionIdleMinutes)) minutes without activity."
        case "expired": notice = "Your session reached its time limit. Sign in again."
        case "disabled": notice = "This account is disabled."
        default: if q.get("signedout") != nil { notice = "You signed out." }
        }
        return page(next: q.get("next"), username: "", notice: notice, error: nil, status: .ok)
    }

    private func page(next: String?, username: String, notice: String?, error: String?, status: HTTPResponse.Status) -> Response {
        let csrf = SessionToken.make()
        var values: [String: Any] = [
            "title": "Sign in · vitalsd", "csrf": csrf, "next": Self.safeNext(next), "username": username,
            "idleMinutes": Int(workspace.settings.sessionIdleMinutes),
        ]
        if let notice { values["notice"] = notice }
        if let error { values["error"] = error }
        var response = workspace.pages.render("signin", values, status: status)
        response.headers[.setCookie] = workspace.setCookie(workspace.signInCookie, workspace.signInCookieValue(csrf), maxAge: 3_600)
        return response
    }

    /// A local path to return to after sign-in; anything else (another host, `//x`) becomes the worklist.
    static func safeNext(_ next: String?) -> String {
        // No whitespace or control characters either: browsers drop a tab or newline from a URL, so
        // `/\t/evil.example` would become `//evil.example`, another site.
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.contains("\\"), !next.hasPrefix("/signin"),
              !next.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        else {
            return "/worklist"
        }
        return next
    }

    @Sendable func signIn(_ request: Request, context: Context) async throws -> Response {
        let form = try await FormBody.read(request, context: context)
        guard workspace.signInTokenMatches(cookie: request.cookies[workspace.signInCookie]?.value, form: form["csrf"]) else {
            throw HTTPError(.forbidden, message: "This sign-in form has expired. Reload the page and try again.")
        }
        let typed = form["username"] ?? ""
        let name = Username.normalized(typed)
        let password = form["password"] ?? ""
        let next = form["next"]
        let db = workspace.database
        let now = workspace.clock()
        guard !name.isEmpty, !password.isEmpty else {
            return page(next: next, username: typed, notice: nil, error: "Enter your user name and password.", status: .badRequest)
        }
        if let locked = try await db.signInLockedUntil(username: name, now: now) {
            try await db.recordLockedSignIn(username: name, now: now)
            return page(next: next, username: typed, notice: nil, error: Self.lockedMessage(until: locked, now: now),
                        status: .tooManyRequests)
        }
        let credentials = try await db.credentials(username: name)
        let matches = try await Passwords.verify(password, hash: credentials?.passwordHash)
        guard let user = credentials?.user, matches, !user.disabled else {
            let reason = credentials == nil ? "unknown user name" : !matches ? "wrong password" : "user disabled"
            if let locked = try await db.recordSignInFailure(username: name, throttle: workspace.throttle, now: now, reason: reason) {
                return page(next: next, username: typed, notice: nil, error: Self.lockedMessage(until: locked, now: now),
                            status: .tooManyRequests)
            }
            let message = matches && credentials?.user.disabled == true
                ? "This account is disabled. Ask your administrator." : "The user name or the password is wrong."
            return page(next: next, username: typed, notice: nil, error: message, status: .unauthorized)
        }
        // The session this browser had (signing in again, or as someone else) ends: one live
        // session per browser, and a cookie once replaced never works again.
        if let previous = request.cookies[workspace.sessionCookie]?.value, let hash = SessionToken.hash(previous) {
            try await db.endSession(tokenHash: hash, at: now)
        }
        // A new session id at every sign-in (no session fixation), stored only as its hash.
        let token = SessionToken.make()
        try await db.createSession(
            userID: user.id, tokenHash: SessionToken.hash(token)!, csrfToken: SessionToken.make(), lifetime: workspace.lifetime,
            now: now)
        try await db.recordSignIn(username: user.username, now: now)
        var response = Response.redirect(to: Self.safeNext(next), type: .normal)
        response.headers.append(HTTPField(name: .setCookie, value: workspace.setCookie(workspace.sessionCookie, token)))
        response.headers.append(HTTPField(name: .setCookie, value: workspace.setCookie(workspace.signInCookie, "", maxAge: 0)))
        return response
    }

    static func lockedMessage(until: Date, now: Date) -> String {
        let minutes = max(1, Int((until.timeIntervalSince(now) / 60).rounded(.up)))
        return "Too many failed sign-ins for this user name. Try again in \(minutes) minute\(minutes == 1 ? "" : "s")."
    }

    @Sendable func signOut(_ request: Request, context: Context) async throws -> Response {
        if let hash = context.sessionTokenHash {
            try await workspace.database.endSession(tokenHash: hash, at: workspace.clock())
        }
        var response = Response.redirect(to: "/signin?signedout=1", type: .normal)
        response.headers[.setCookie] = workspace.setCookie(workspace.sessionCookie, "", maxAge: 0)
        return response
    }
}

extension Workspace {
    /// The values every signed-in page needs: title, the user in the header, the session's CSRF token.
    func pageValues(_ context: WorkspaceRequestContext, title: String, nav: String) -> [String: Any] {
        var values: [String: Any] = ["title": title + " · vitalsd"]
        if let session = context.session {
            values["user"] = [
                "displayName": session.user.displayName, "roleLabel": session.user.role.rawValue.replacingOccurrences(of: "_", with: " "),
                "csrf": session.csrfToken, "navWorklist": nav == "worklist", "navPatients": nav == "patients",
                "navBilling": nav == "billing",
            ] as [String: Any]
            values["csrf"] = session.csrfToken
        }
        return values
    }
}
