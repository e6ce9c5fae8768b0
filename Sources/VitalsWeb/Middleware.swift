import Foundation
import HTTPTypes
import Hummingbird
import Logging
import VitalsStore

/// Security headers on every response of the user-facing listener, errors included (OWASP ASVS 4.0
/// V14.4): a Content-Security-Policy that allows scripts, styles and images from vitalsd only (no
/// inline script), no framing, no referrer, no MIME sniffing, and `Cache-Control: no-store` unless
/// a route set its own (pages carry PHI); and `Server-Timing` with the time the response took to build.
struct SecurityHeadersMiddleware: RouterMiddleware {
    typealias Context = WorkspaceRequestContext

    /// The policy sent with every response.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// The paths of the workspace's own routes (other route groups must not use them).
    static let workspacePaths = ["/signin", "/signout", "/worklist", "/tasks", "/patients", "/billing", "/events", "/static"]

    static func isWorkspacePath(_ path: String) -> Bool {
        let path = routedPath(path)
        return path == "/" || workspacePaths.contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// Add `Strict-Transport-Security` (the browser reaches the listener over HTTPS).
    let strictTransport: Bool
    let pages: Pages
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            // The workspace's errors are pages; another route group's (an API's) keep their own form.
            response = Self.isWorkspacePath(request.uri.path)
                ? pages.errorResponse(status: error.status, message: (error as? HTTPError)?.body)
                : try error.response(from: request, context: context)
        } catch {
            // Log the kind of failure and the route, never the request's content.
            logger.error("workspace request failed", metadata: [
                "http.path": "\(context.endpointPath ?? "?")", "error.type": "\(type(of: error))",
            ])
            response = pages.errorResponse(status: .internalServerError, message: nil)
        }
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.crossOriginOpenerPolicy] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        if strictTransport { response.headers[.strictTransportSecurity] = "max-age=31536000" }
        // Time to build the response (not to send a streamed body), for scripts/bench-workspace.
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        response.headers[.serverTiming] = "app;dur=" + String(format: "%.1f", ms)
        return response
    }
}

/// Finds the signed-in user's session for every page and action behind it, and checks the CSRF token
/// of every form post (OWASP ASVS 4.0 V3, V4.2.2).
///
/// Without a live session a page redirects to the sign-in page (which says why: idle, expired), a form
/// post too, and a background request (live updates) answers 401. A post whose `csrf` field is not the
/// session's token, or that a browser marks cross-site, answers 403.
struct SessionMiddleware: RouterMiddleware {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    /// Requests the page makes by itself: they neither extend the idle time nor get redirected.
    static func isBackground(_ path: String) -> Bool {
        let path = routedPath(path)
        return path == "/events" || path == "/worklist/rows"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let background = Self.isBackground(request.uri.path)
        guard let token = request.cookies[workspace.sessionCookie]?.value, let hash = SessionToken.hash(token) else {
            return signInFirst(request, background: background, end: nil)
        }
        let found = try await workspace.database.session(
            tokenHash: hash, lifetime: workspace.lifetime, now: workspace.clock(), touch: !background)
        let session: WebSession
        switch found {
        case .success(let s): session = s
        case .failure(let ended): return signInFirst(request, background: background, end: ended.end)
        }
        var context = context
        context.session = session
        context.sessionTokenHash = hash
        if request.method == .post {
            if request.headers[HTTPField.Name("Sec-Fetch-Site")!] == "cross-site" {
                throw HTTPError(.forbidden, message: "A form from another site was refused.")
            }
            let form = try await FormBody.read(request, context: context)
            guard let csrf = form["csrf"], SessionToken.equal(csrf, session.csrfToken) else {
                throw HTTPError(
                    .forbidden,
                    message: "This form has expired or did not come from this workspace. Go back, reload the page and try again.")
            }
            context.form = form
        }
        return try await next(request, context)
    }

    /// No session: the sign-in page (returning here afterwards), or 401 for the page's own requests.
    private func signInFirst(_ request: Request, background: Bool, end: SessionEnd?) -> Response {
        if background {
            return Response(status: .unauthorized, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "sign in\n")))
        }
        var query: [String] = []
        if request.method == .get, let path = request.uri.string.addingPercentEncoding(withAllowedCharacters: .alphanumerics) {
            query.append("next=\(path)")
        }
        if let end, end != .unknown { query.append("ended=\(end.rawValue)") }
        var response = Response.redirect(to: "/signin" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), type: .normal)
        if request.cookies[workspace.sessionCookie] != nil {
            response.headers[.setCookie] = workspace.setCookie(workspace.sessionCookie, "", maxAge: 0)
        }
        return response
    }
}

/// Reads `application/x-www-form-urlencoded` bodies.
enum FormBody {
    /// The fields of a form post; a repeated field keeps its last value.
    /// - Throws: 415 for another content type, 413 over the context's upload limit, 400 when it does not parse.
    static func read(_ request: Request, context: some RequestContext) async throws -> [String: String] {
        guard request.headers[.contentType]?.hasPrefix("application/x-www-form-urlencoded") == true else {
            throw HTTPError(.unsupportedMediaType)
        }
        let buffer = try await request.body.collect(upTo: context.maxUploadSize)
        return try parse(String(buffer: buffer))
    }

    /// Parses `a=1&b=x+y` (WHATWG URL-encoded form rules: `+` is a space, then percent-decoding).
    /// - Throws: 400 for a field that does not decode.
    static func parse(_ text: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) throws -> String {
                guard let value = s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                    throw HTTPError(.badRequest, message: "The form could not be read.")
                }
                return value
            }
            fields[try decode(parts[0])] = parts.count > 1 ? try decode(parts[1]) : ""
        }
        return fields
    }
}

extension HTTPField.Name {
    static let crossOriginOpenerPolicy = Self("Cross-Origin-Opener-Policy")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let serverTiming = Self("Server-Timing")!
}
