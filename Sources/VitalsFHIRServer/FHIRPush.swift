import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import JWTKit
import Logging
import ServiceLifecycle
import VitalsFHIR

/// `delivery.fhir.*`: where and how readings are pushed to an EHR.
public struct FHIRPushSettings: Sendable, Hashable {
    /// The EHR's FHIR base URL; transaction Bundles are POSTed to it.
    public var baseURL: URL
    /// The EHR's SMART token endpoint (the `aud` of vitalsd's assertions).
    public var tokenURL: URL
    /// The client id the EHR assigned to vitalsd.
    public var clientID: String
    /// PEM of vitalsd's private key (RSA for RS384, P-384 EC for ES384).
    public var privateKeyPEM: String
    /// `RS384` or `ES384`.
    public var algorithm: String
    /// The `kid` of the key in the JWK Set registered with the EHR.
    public var keyID: String
    /// Scopes to request, e.g. `system/Observation.c` or `system/Observation.write`.
    public var scope: String
    /// Seconds before a request is given up and retried.
    public var timeout: Double
    /// Observations per transaction Bundle.
    public var maxEntries: Int
    /// Longest wait between retries, in seconds.
    public var retryMax: Double

    public init(
        baseURL: URL, tokenURL: URL, clientID: String, privateKeyPEM: String, algorithm: String, keyID: String, scope: String,
        timeout: Double = 10, maxEntries: Int = 50, retryMax: Double = 60
    ) {
        self.baseURL = baseURL
        self.tokenURL = tokenURL
        self.clientID = clientID
        self.privateKeyPEM = privateKeyPEM
        self.algorithm = algorithm
        self.keyID = keyID
        self.scope = scope
        self.timeout = timeout
        self.maxEntries = maxEntries
        self.retryMax = retryMax
    }
}

/// The SMART Backend Services client side: signs an assertion with jwt-kit and trades it for a
/// bearer token at the EHR's token endpoint, kept until shortly before it expires.
public actor SMARTClientCredentials {
    let settings: FHIRPushSettings
    let keys: JWTKeyCollection
    let session: URLSession
    private var token: (value: String, until: Date)?

    /// - Throws: when the private key cannot be read for the algorithm.
    public init(settings: FHIRPushSettings, session: URLSession) async throws {
        self.settings = settings
        self.session = session
        keys = JWTKeyCollection()
        let kid = JWKIdentifier(string: settings.keyID)
        switch settings.algorithm {
        case "ES384": await keys.add(ecdsa: try ES384PrivateKey(pem: settings.privateKeyPEM), kid: kid)
        case "RS384": await keys.add(rsa: try Insecure.RSA.PrivateKey(pem: settings.privateKeyPEM), digestAlgorithm: .sha384, kid: kid)
        default: throw PushError("delivery.fhir.algorithm must be RS384 or ES384")
        }
    }

    /// The public JWK Set of the configured key, to register with the EHR.
    public static func publicJWKS(pem: String, algorithm: String, keyID: String) throws -> String {
        var key: [String: String] = ["kid": keyID, "alg": algorithm, "use": "sig"]
        switch algorithm {
        case "ES384":
            guard let p = try ES384PrivateKey(pem: pem).publicKey.parameters else { throw PushError("no EC parameters") }
            key["kty"] = "EC"
            key["crv"] = "P-384"
            key["x"] = p.x
            key["y"] = p.y
        case "RS384":
            let primitives = try Insecure.RSA.PrivateKey(pem: pem).publicKey.getKeyPrimitives()
            key["kty"] = "RSA"
            key["n"] = base64URL(primitives.modulus)
            key["e"] = base64URL(primitives.publicExponent)
        default: throw PushError("algorithm must be RS384 or ES384")
        }
        let data = try JSONSerialization.data(withJSONObject: ["keys": [key]], options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    struct Claims: JWTPayload {
        var iss: String
        var sub: String
        var aud: String
        var exp: Int64
        var iat: Int64
        var jti: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    /// A signed assertion: `iss` = `sub` = client id, `aud` = token URL, `exp` 4 minutes ahead (under
    /// SMART's 5-minute limit), a random `jti`, header `kid` and `typ: JWT`.
    func assertion(now: Date) async throws -> String {
        let seconds = Int64(now.timeIntervalSince1970)
        let claims = Claims(iss: settings.clientID, sub: settings.clientID, aud: settings.tokenURL.absoluteString,
                            exp: seconds + 240, iat: seconds, jti: UUID().uuidString)
        var header = JWTHeader()
        header.typ = "JWT"
        header.alg = settings.algorithm
        return try await keys.sign(claims, kid: JWKIdentifier(string: settings.keyID), header: header)
    }

    /// A bearer token, fetched when none is held or it expires within 30 s.
    /// - Throws: ``PushError`` when the token endpoint refuses or cannot be reached.
    public func bearerToken(now: Date = Date()) async throws -> String {
        if let token, token.until > now.addingTimeInterval(30) { return token.value }
        var request = URLRequest(url: settings.tokenURL)
        request.httpMethod = "POST"
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        request.httpBody = Data(QueryString.build([
            ("grant_type", "client_credentials"), ("scope", settings.scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", try await assertion(now: now)),
        ]).utf8)
        let (data, response) = try await session.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let body = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        guard (200..<300).contains(status), let value = body?["access_token"] as? String else {
            throw PushError("token endpoint answered HTTP \(status) \((body?["error"] as? String) ?? "")")
        }
        let lifetime = (body?["expires_in"] as? Double) ?? (body?["expires_in"] as? Int).map(Double.init) ?? 300
        token = (value, now.addingTimeInterval(lifetime))
        return value
    }

    /// Forgets the token (after a 401 from the EHR).
    public func discard() { token = nil }
}

/// A push attempt that failed; retried.
public struct PushError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The outbox channel `fhir`: every reading stored after the channel was enabled goes to the EHR as
/// an Observation in a FHIR `transaction` Bundle, each entry a conditional create on the Observation's
/// identifier (`ifNoneExist`), so that a repeat creates nothing. In reading order, at least once: the
/// cursor (``FHIRStore/markPushed(channel:through:)``) moves only after a 2xx answer; a failure is
/// retried with a wait doubling from 1 s to ``FHIRPushSettings/retryMax``, and the readings wait in
/// the database, also across restarts. A blood-pressure pair goes as one panel.
public struct FHIRPushDelivery: Service {
    /// The channel's name, and its cursor's key.
    public static let channel = "fhir"

    let store: FHIRStore
    let settings: FHIRPushSettings
    let mapper: FHIRMapper
    let logger: Logger
    let pollInterval: Duration
    let report: @Sendable (_ delivered: Int, _ failed: Bool, _ backlog: Int?) -> Void

    /// - Parameter report: called after each round: Observations delivered, whether it failed, and
    ///   the readings still waiting (for the delivery metrics).
    public init(store: FHIRStore, settings: FHIRPushSettings, mapping: FHIRMappingSettings, logger: Logger,
                pollInterval: Duration = .milliseconds(250),
                report: @escaping @Sendable (_ delivered: Int, _ failed: Bool, _ backlog: Int?) -> Void = { _, _, _ in }) {
        self.store = store
        self.settings = settings
        self.mapper = FHIRMapper(settings: mapping)
        self.logger = logger
        self.pollInterval = pollInterval
        self.report = report
    }

    public func run() async throws {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = settings.timeout
        let session = URLSession(configuration: configuration)
        defer { session.finishTasksAndInvalidate() }
        let credentials = try await SMARTClientCredentials(settings: settings, session: session)
        var wait = 1.0
        let (store, channel, limit) = (self.store, Self.channel, settings.maxEntries)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var pause = pollInterval
            do {
                if let batch = try await Self.offPool({ try store.pendingObservations(channel: channel, limit: limit) }) {
                    if !batch.observations.isEmpty { try await send(batch.observations, credentials: credentials, session: session) }
                    let left = try await Self.offPool {
                        try store.markPushed(channel: channel, through: batch.through)
                        return try store.pushBacklog(channel: channel)
                    }
                    report(batch.observations.count, false, left)
                    wait = 1
                    continue
                }
                report(0, false, 0)
            } catch is CancellationError {
                return
            } catch {
                report(0, true, try? await Self.offPool { try store.pushBacklog(channel: channel) })
                logger.warning("FHIR push failed; will retry", metadata: [
                    "delivery.channel": "\(channel)", "delivery.retry_seconds": "\(Int(wait))", "error": "\(error)"])
                pause = .milliseconds(Int(wait * 1000))
                wait = min(wait * 2, settings.retryMax)
            }
            let sleep = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: sleep) }
        }
    }

    /// POSTs one transaction Bundle; a 401 fetches a new token and tries once more.
    func send(_ observations: [ObservationSource], credentials: SMARTClientCredentials, session: URLSession) async throws {
        let bundle = mapper.transaction(observations, fullURLs: observations.map { _ in "urn:uuid:\(UUID().uuidString.lowercased())" })
        let body = Data(bundle.serialized())
        for attempt in 0..<2 {
            var request = URLRequest(url: settings.baseURL)
            request.httpMethod = "POST"
            request.httpBody = body
            request.setValue("application/fhir+json", forHTTPHeaderField: "Content-Type")
            request.setValue("application/fhir+json", forHTTPHeaderField: "Accept")
            request.setValue("Bearer \(try await credentials.bearerToken())", forHTTPHeaderField: "Authorization")
            let (_, response) = try await session.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            if (200..<300).contains(status) { return }
            if status == 401 && attempt == 0 {
                await credentials.discard()
                continue
            }
            throw PushError("EHR answered HTTP \(status) to a transaction of \(observations.count) Observations")
        }
    }
}

extension FHIRPushDelivery {
    /// Runs blocking database work on a Dispatch thread, off the cooperative pool: another process
    /// holding the write lock must not stall the HTTP endpoints.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .utility).async { continuation.resume(with: Result { try body() }) }
        }
    }
}
