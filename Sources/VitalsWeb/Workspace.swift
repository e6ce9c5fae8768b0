import Crypto
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import VitalsConfig
import VitalsDomain
import VitalsStore

/// The request context of the user-facing listener: the signed-in user's session, once the session
/// middleware has found it, and the fields of a form post it has read and checked.
public struct WorkspaceRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The peer of the connection (a TLS proxy's, behind one).
    public let remoteAddress: SocketAddress?
    /// The session of the signed-in user; nil on public routes (sign-in, static files) and other groups.
    public var session: WebSession?
    /// SHA-256 of the session id in the cookie.
    var sessionTokenHash: Data?
    /// The fields of a form post (`application/x-www-form-urlencoded`), CSRF-checked.
    var form: [String: String] = [:]

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Forms are small; a larger body is refused before it is read.
    public var maxUploadSize: Int { 64 * 1024 }

    /// The signed-in user.
    /// - Throws: 401 when there is none (a route registered without the session middleware).
    func user() throws -> WorkspaceUser {
        guard let user = session?.user else { throw HTTPError(.unauthorized) }
        return user
    }
}

/// Routes that another part of vitalsd serves on the same user-facing listener (e.g. an API), with
/// their own authentication. They get the listener's security headers, and their thrown errors keep
/// their own form (the workspace's become pages); the workspace's sign-in does not apply to them. A
/// group needing its own context uses `router.group(_:context:)` with a `ChildRequestContext`. They
/// must not use the paths of the workspace (`/`, `/signin`, `/signout`, `/worklist`, `/tasks`,
/// `/patients`, `/billing`, `/events`, `/static`).
public protocol WorkspaceRouteGroup: Sendable {
    /// Registers the group's routes.
    func addRoutes(to router: Router<WorkspaceRequestContext>)
}

/// The care manager's workspace: what every page and action needs, built once at start.
public struct Workspace: Sendable {
    let database: AppDatabase
    let settings: VitalsConfiguration.Web
    let thresholds: ThresholdPolicy
    /// Trend rules and late data, for the patient chart's rules in force and logbook flags.
    let alerts: AlertPolicy
    /// `billing.*`: the rules of billing progress, the timer's longest entry and the billing page.
    let billing: BillingRules
    let lifetime: SessionLifetime
    let throttle: SignInThrottle
    let pages: Pages
    let logger: Logger
    /// The time now; tests pass their own clock.
    let clock: @Sendable () -> Date
    /// Signs the sign-in form's cookie, so that a cookie planted by someone else (from a sibling
    /// host, or over plain HTTP) is refused: new at every start, so a form served before a restart
    /// must be reloaded.
    let signInKey = SymmetricKey(size: .bits256)
    /// The open `/events` streams: one cursor read for all, a bound per session.
    let streams: EventStreams

    /// - Throws: ``Pages/TemplateError`` when a template does not parse (a programming error found at start).
    public init(
        configuration: VitalsConfiguration, database: AppDatabase, logger: Logger,
        throttle: SignInThrottle = SignInThrottle(), clock: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.database = database
        settings = configuration.web
        thresholds = configuration.thresholds
        alerts = configuration.alerts
        billing = configuration.billing
        lifetime = SessionLifetime(
            idleSeconds: configuration.web.sessionIdleMinutes * 60, absoluteSeconds: configuration.web.sessionMaxHours * 3_600)
        self.throttle = throttle
        pages = try Pages(timeZone: TimeZone(identifier: configuration.web.displayTimezone) ?? .gmt)
        self.logger = logger
        self.clock = clock
        streams = EventStreams(database: database)
    }

    // MARK: Cookies

    /// The session cookie's name: with the `__Host-` prefix when cookies are `Secure`, so that no other
    /// host or path can set it (RFC 6265bis §4.1.3.2).
    var sessionCookie: String { settings.secureCookies ? "__Host-vitalsd_session" : "vitalsd_session" }
    /// The cookie holding the sign-in form's CSRF token (double submit, before there is a session).
    var signInCookie: String { settings.secureCookies ? "__Host-vitalsd_signin" : "vitalsd_signin" }

    /// The sign-in cookie's value for a form token: `<token>.<HMAC-SHA256 of it under signInKey>`.
    func signInCookieValue(_ token: String) -> String {
        token + "." + SessionToken.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(token.utf8), using: signInKey)))
    }

    /// Whether a sign-in post's cookie was made by this daemon for the form token it sends.
    func signInTokenMatches(cookie: String?, form: String?) -> Bool {
        guard let cookie, let form, !form.isEmpty else { return false }
        return SessionToken.equal(cookie, signInCookieValue(form))
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` under TLS.
    /// - Parameter maxAge: seconds; nil for a cookie that ends with the browser, 0 to delete it.
    func setCookie(_ name: String, _ value: String, maxAge: Int? = nil) -> String {
        var text = "\(name)=\(value); Path=/; HttpOnly; SameSite=Strict"
        if settings.secureCookies { text += "; Secure" }
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        return text
    }

    // MARK: Building the listener

    /// The user-facing listener: the workspace, plus `routeGroups` (other route groups of the same
    /// listener, e.g. an API), over HTTPS when `web.tls_cert_file` is set. A `Service` for the service group.
    /// - Throws: TLS errors when the certificate or key cannot be read; template errors.
    /// - Parameter idleTimeout: a connection that has sent no complete request part for this long,
    ///   and is not being answered, is closed (a client that opens connections and sends half a
    ///   header would otherwise hold them, and the process's descriptors, for ever). Default 30 s.
    /// - Parameter onListening: called once the listener is bound, with the port it is bound to
    ///   (the configured one; a test that binds port 0 learns the kernel's choice).
    public static func application(
        configuration: VitalsConfiguration, database: AppDatabase, logger: Logger, routeGroups: [any WorkspaceRouteGroup] = [],
        throttle: SignInThrottle = SignInThrottle(), clock: @escaping @Sendable () -> Date = { Date() },
        idleTimeout: Duration = .seconds(30), onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let idle = TimeAmount.nanoseconds(idleTimeout.components.seconds * 1_000_000_000 + idleTimeout.components.attoseconds / 1_000_000_000)
        let workspace = try Workspace(configuration: configuration, database: database, logger: logger, throttle: throttle, clock: clock)
        let router = workspace.router(routeGroups: routeGroups)
        let web = configuration.web
        let server: HTTPServerBuilder
        if let cert = web.tlsCertFile, let key = web.tlsKeyFile {
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            tls.minimumTLSVersion = .tlsv12
            server = try .tls(.http1(configuration: .init(idleTimeout: idle)), tlsConfiguration: tls)
        } else {
            server = .http1(configuration: .init(idleTimeout: idle))
        }
        return Application(
            router: router, server: server,
            configuration: .init(address: .hostname(web.host, port: web.port), serverName: "vitalsd"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? web.port) },
            logger: logger)
    }

    /// What is wrong with the workspace's TLS certificate and key beyond their being readable files:
    /// not PEM, no certificate, a key that does not belong to the certificate. Empty without TLS.
    /// `config check` reports these; the daemon would refuse to start with them.
    public static func tlsProblems(_ configuration: VitalsConfiguration) -> [ConfigurationError] {
        guard configuration.web.enabled, let cert = configuration.web.tlsCertFile, let key = configuration.web.tlsKeyFile,
              configuration.webTLSFileProblems.isEmpty else { return [] }
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(cert)
        } catch {
            return [ConfigurationError(key: "web.tls_cert_file", "\(cert) holds no PEM certificate OpenSSL can read")]
        }
        guard !chain.isEmpty else { return [ConfigurationError(key: "web.tls_cert_file", "\(cert) holds no certificate")] }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            return [ConfigurationError(key: "web.tls_key_file", "\(key) holds no PEM private key OpenSSL can read")]
        }
        let tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        do {
            _ = try NIOSSLContext(configuration: tls)
        } catch {
            return [ConfigurationError(key: "web.tls_key_file", "the key in \(key) does not belong to the certificate in \(cert) (\(error))")]
        }
        return []
    }

    /// The router of the listener: security headers on every response, public routes (sign-in, static
    /// files), then the pages and actions behind the session middleware.
    func router(routeGroups: [any WorkspaceRouteGroup]) -> Router<WorkspaceRequestContext> {
        // HEAD answers as GET without the body (RFC 9110 §9.3.2).
        let router = Router(context: WorkspaceRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: SecurityHeadersMiddleware(strictTransport: settings.secureCookies, pages: pages, logger: logger))
        router.add(middleware: RateLimitMiddleware(
            paths: ["/signin", "/auth/token"], perMinute: settings.authenticationRequestsPerMinute, behindProxy: settings.behindTLSProxy,
            logger: logger, now: clock))
        Assets.addRoutes(to: router)
        SignInController(workspace: self).addRoutes(to: router)
        for group in routeGroups { group.addRoutes(to: router) }
        let signedIn = router.group().add(middleware: SessionMiddleware(workspace: self))
        SignInController(workspace: self).addSignedInRoutes(to: signedIn)
        WorklistController(workspace: self).addRoutes(to: signedIn)
        TaskController(workspace: self).addRoutes(to: signedIn)
        PatientController(workspace: self).addRoutes(to: signedIn)
        TimerController(workspace: self).addRoutes(to: signedIn)
        PauseController(workspace: self).addRoutes(to: signedIn)
        BillingController(workspace: self).addRoutes(to: signedIn)
        return router
    }
}

/// Random tokens for sessions and forms, and their stored hash.
enum SessionToken {
    /// 32 random bytes from the system's CSPRNG, base64url without padding (43 characters).
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return base64URL(Data(bytes))
    }

    /// Base64url without padding (RFC 4648 §5).
    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// SHA-256 of a token as stored; nil for a value that is no token of ours (wrong length or alphabet).
    static func hash(_ token: String) -> Data? {
        guard token.utf8.count == 43, token.utf8.allSatisfy({ $0.isBase64URL }) else { return nil }
        return Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// Compares two tokens in time independent of where they differ.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension UInt8 {
    fileprivate var isBase64URL: Bool {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || self == UInt8(ascii: "-") || self == UInt8(ascii: "_")
    }
}
