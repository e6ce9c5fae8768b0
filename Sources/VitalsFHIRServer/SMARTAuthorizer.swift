import Foundation
import GRDB
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import JWTKit
import Logging
import Synchronization
import VitalsFHIR
import VitalsStore

/// A client's JWK Set: each key's JSON, by `kid`.
public struct JWKSet: Sendable, Hashable {
    /// (kid, kty, crv, alg, key JSON) per key.
    struct Key: Sendable, Hashable {
        var kid: String
        var kty: String
        var crv: String?
        var alg: String?
        var json: Data
    }

    var keys: [Key]

    /// Parses a JWK Set (RFC 7517 §5).
    /// - Throws: ``ClientRegistrationError`` when it is not `{"keys": [...]}` or a key lacks `kty` or
    ///   `kid`, or holds private key material (`d`).
    public static func parse(_ data: Data) throws -> JWKSet {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let list = root["keys"] as? [Any] else {
            throw ClientRegistrationError("the JWK Set must be a JSON object with a \"keys\" array")
        }
        var keys: [Key] = []
        for (i, item) in list.enumerated() {
            guard let key = item as? [String: Any], let kty = key["kty"] as? String, let kid = key["kid"] as? String, !kid.isEmpty else {
                throw ClientRegistrationError("key \(i) of the JWK Set needs kty and kid (SMART requires both)")
            }
            guard key["d"] == nil else { throw ClientRegistrationError("key \(kid) holds a private key; register the public key only") }
            keys.append(Key(kid: kid, kty: kty, crv: key["crv"] as? String, alg: key["alg"] as? String,
                            json: try JSONSerialization.data(withJSONObject: key)))
        }
        guard !keys.isEmpty else { throw ClientRegistrationError("the JWK Set has no key") }
        return JWKSet(keys: keys)
    }

    /// The keys with `kid` whose type fits `algorithm` (RSA for RS384, EC P-384 for ES384).
    func candidates(kid: String, algorithm: String) -> [Key] {
        keys.filter { k in
            k.kid == kid && k.kty == AssertionRules.keyType(for: algorithm) && (algorithm != "ES384" || k.crv == "P-384")
        }
    }
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2): `invalid_request`, `invalid_client`, `unsupported_grant_type`,
/// `invalid_scope`; `invalid_client` with HTTP 401, the others 400.
public struct OAuthError: Error, Sendable, Hashable, CustomStringConvertible {
    public var error: String
    public var description: String
    public var status: Int { error == "invalid_client" ? 401 : 400 }

    public static func invalidClient(_ d: String) -> OAuthError { OAuthError(error: "invalid_client", description: d) }
    public static func invalidRequest(_ d: String) -> OAuthError { OAuthError(error: "invalid_request", description: d) }

    /// `{"error": …, "error_description": …}`.
    public var body: FHIRJSON { ["error": .string(error), "error_description": .string(description)] }
}

/// The signed claims of a client assertion, as jwt-kit decodes them; checked by ``AssertionRules``.
struct AssertionPayload: JWTPayload {
    var iss: String?
    var sub: String?
    var aud: AudienceClaim?
    var exp: Double?
    var nbf: Double?
    var jti: String?

    /// Claims are checked by ``AssertionRules/problem(_:clientID:tokenURL:now:)`` with the caller's clock.
    func verify(using algorithm: some JWTAlgorithm) async throws {}

    var claims: AssertionClaims {
        AssertionClaims(issuer: iss, subject: sub, audience: aud?.value ?? [], expiresAt: exp.map { Int64($0) },
                        notBefore: nbf.map { Int64($0) }, jwtID: jti)
    }
}

/// Settings of the authorization server.
public struct SMARTSettings: Sendable, Hashable {
    /// This token endpoint's public URL: the `aud` every assertion must carry.
    public var tokenURL: String
    /// Seconds a bearer token lives (SMART: at most 300).
    public var tokenLifetime: Double
    /// Seconds to wait for a client's JWK Set URL.
    public var jwksTimeout: Double
    /// Longest time a fetched JWK Set is used, in seconds; a shorter `Cache-Control: max-age` wins.
    public var jwksCacheSeconds: Double

    public init(tokenURL: String, tokenLifetime: Double = 300, jwksTimeout: Double = 5, jwksCacheSeconds: Double = 300) {
        self.tokenURL = tokenURL
        self.tokenLifetime = tokenLifetime
        self.jwksTimeout = jwksTimeout
        self.jwksCacheSeconds = jwksCacheSeconds
    }
}

/// SMART Backend Services authorization: the token endpoint's checks and bearer-token lookup.
///
/// An assertion is verified as `client-confidential-asymmetric` requires
/// (hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html): `alg` RS384 or ES384, a `kid`
/// naming exactly one key of the client's JWK Set of the matching type (`jku`, when sent, must be the
/// registered URL), the signature checked by jwt-kit with that key alone, then the claims
/// (``AssertionRules``), then the `jti` recorded until it expires so that a replay is refused, then
/// the scopes (``SMARTScopeGrant``). Every issue and refusal goes to the access log.
public final class SMARTAuthorizer: Sendable {
    let store: FHIRStore
    let settings: SMARTSettings
    let logger: Logger
    private let cache = Mutex<[String: (fetched: Date, maxAge: Double, set: JWKSet)]>([:])
    private let session: URLSession

    public init(store: FHIRStore, settings: SMARTSettings, logger: Logger) {
        self.store = store
        self.settings = settings
        self.logger = logger
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = settings.jwksTimeout
        configuration.timeoutIntervalForResource = settings.jwksTimeout
        session = URLSession(configuration: configuration)
    }

    /// Answers a token request (form fields of a `POST` to the token endpoint).
    /// - Returns: the token response JSON (`access_token`, `token_type`, `expires_in`, `scope`), or
    ///   the OAuth error to answer with.
    public func token(form: [(name: String, value: String)], now: Date) async -> Result<FHIRJSON, OAuthError> {
        var claimedClient = "unknown"
        do {
            let (clientID, scopes) = try await authenticate(form: form, now: now, claimedClient: &claimedClient)
            let token = try await store.issueToken(clientID: clientID, scopes: scopes, lifetime: settings.tokenLifetime, now: now)
            return .success([
                "access_token": .string(token), "token_type": "bearer", "expires_in": .integer(Int64(settings.tokenLifetime)),
                "scope": .string(scopes.map(\.text).joined(separator: " ")),
            ])
        } catch {
            let oauth = (error as? OAuthError) ?? OAuthError(error: "server_error", description: "the token could not be issued")
            logger.notice("token refused", metadata: ["smart.client": "\(claimedClient)", "oauth.error": "\(oauth.error)"])
            try? await store.database.recordAccess(
                actor: "client:\(claimedClient)", action: "token.refused", targetType: "token",
                detail: "error=\(oauth.error) reason=\(oauth.description)", at: now)
            return .failure(oauth)
        }
    }

    private func authenticate(
        form: [(name: String, value: String)], now: Date, claimedClient: inout String
    ) async throws -> (String, [SMARTScope]) {
        var fields: [String: String] = [:]
        for (name, value) in form {
            guard fields[name] == nil else { throw OAuthError.invalidRequest("parameter \(name) is repeated") }
            fields[name] = value
        }
        guard fields["grant_type"] == "client_credentials" else {
            throw OAuthError(error: "unsupported_grant_type", description: "grant_type must be client_credentials")
        }
        guard fields["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" else {
            throw OAuthError.invalidRequest("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        }
        guard let assertion = fields["client_assertion"], !assertion.isEmpty else {
            throw OAuthError.invalidRequest("client_assertion is required")
        }
        guard let scope = fields["scope"] else { throw OAuthError.invalidRequest("scope is required") }

        let parts = assertion.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URLDecode(parts[0]), let payloadData = Self.base64URLDecode(parts[1]),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              let unverified = try? JSONSerialization.jsonObject(with: payloadData) as? [String: Any]
        else { throw OAuthError.invalidClient("client_assertion is not a signed JWT") }
        if let iss = unverified["iss"] as? String { claimedClient = Self.loggable(iss) }
        guard let alg = header["alg"] as? String, AssertionRules.algorithms.contains(alg) else {
            throw OAuthError.invalidClient("alg must be RS384 or ES384")
        }
        guard let kid = header["kid"] as? String, !kid.isEmpty else { throw OAuthError.invalidClient("the JWT header needs a kid") }
        // SMART App Launch 2.x, Backend Services, the authentication JWT header: typ is required, fixed value JWT.
        guard let typ = header["typ"] as? String, typ.uppercased() == "JWT" else { throw OAuthError.invalidClient("the JWT header needs typ JWT") }
        guard header["crit"] == nil else { throw OAuthError.invalidClient("critical header parameters are not supported") }
        guard let iss = unverified["iss"] as? String, let client = try await readClient(iss), client.enabled else {
            throw OAuthError.invalidClient("unknown or disabled client")
        }
        // RFC 7521 §4.2: a client_id sent with the assertion must name the same client.
        if let claimed = fields["client_id"], claimed != client.id {
            throw OAuthError.invalidClient("client_id does not name the client of the assertion")
        }
        if let jku = header["jku"] as? String, jku != client.jwksURL {
            throw OAuthError.invalidClient("jku is not the JWK Set URL registered for this client")
        }
        let key = try await signingKey(client: client, kid: kid, algorithm: alg, now: now)
        if let keyAlg = key.alg, keyAlg != alg { throw OAuthError.invalidClient("key \(kid) is registered for \(keyAlg), not \(alg)") }

        // Claims of the wrong JSON type (an exp given as a string) are named as such, before the
        // signature check, whose failure would otherwise be reported for them.
        do {
            _ = try JSONDecoder().decode(AssertionPayload.self, from: payloadData)
        } catch {
            throw OAuthError.invalidClient("the assertion's claims have the wrong types (iss, sub, jti strings; exp, nbf numbers; aud a string or strings)")
        }
        let payload: AssertionPayload
        do {
            let jwk = try JSONDecoder().decode(JWK.self, from: key.json)
            let keys = JWTKeyCollection()
            try await keys.add(jwk: jwk)
            payload = try await keys.verify(assertion, as: AssertionPayload.self)
        } catch {
            throw OAuthError.invalidClient("the signature does not verify with key \(kid)")
        }
        let nowSeconds = Int64(now.timeIntervalSince1970)
        if let problem = AssertionRules.problem(payload.claims, clientID: client.id, tokenURL: settings.tokenURL, now: nowSeconds) {
            throw OAuthError.invalidClient(problem)
        }
        let expiry = Date(timeIntervalSince1970: Double(payload.claims.expiresAt!))
        guard try await store.consumeAssertionID(clientID: client.id, jti: payload.jti!, expiresAt: expiry, now: now) else {
            throw OAuthError.invalidClient("this assertion's jti was already used")
        }
        switch SMARTScopeGrant.grant(requested: scope, registered: client.scopes) {
        case .success(let scopes): return (client.id, scopes)
        case .failure(let refusal): throw OAuthError(error: "invalid_scope", description: refusal.description)
        }
    }

    private func readClient(_ id: String) async throws -> SMARTClient? {
        try await store.database.writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM smart_clients WHERE id = ?", arguments: [id]).map(SMARTClient.init(row:))
        }
    }

    /// The one key of the client's JWK Set with `kid` and a type fitting `algorithm`. A JWK Set URL is
    /// fetched (within ``SMARTSettings/jwksTimeout``) and cached for its `Cache-Control: max-age`, at
    /// most ``SMARTSettings/jwksCacheSeconds``; an unknown `kid` fetches it again (key rotation), at
    /// most once every 10 s.
    private func signingKey(client: SMARTClient, kid: String, algorithm: String, now: Date) async throws -> JWKSet.Key {
        var set: JWKSet
        if let inline = client.jwks {
            set = try JWKSet.parse(Data(inline.utf8))
        } else if let url = client.jwksURL {
            let cached = cache.withLock { $0[client.id] }
            if let cached, now.timeIntervalSince(cached.fetched) < cached.maxAge {
                set = cached.set
                if set.candidates(kid: kid, algorithm: algorithm).isEmpty, now.timeIntervalSince(cached.fetched) > 10 {
                    set = try await fetch(url, client: client.id, now: now)
                }
            } else {
                set = try await fetch(url, client: client.id, now: now)
            }
        } else {
            throw OAuthError.invalidClient("the client has no keys")
        }
        let candidates = set.candidates(kid: kid, algorithm: algorithm)
        guard candidates.count == 1 else {
            throw OAuthError.invalidClient(candidates.isEmpty
                ? "no \(AssertionRules.keyType(for: algorithm) ?? "") key with kid \(kid) in the client's JWK Set"
                : "more than one key with kid \(kid) in the client's JWK Set")
        }
        return candidates[0]
    }

    private func fetch(_ urlText: String, client: String, now: Date) async throws -> JWKSet {
        guard let url = URL(string: urlText) else { throw OAuthError.invalidClient("the registered JWK Set URL is not a URL") }
        var request = URLRequest(url: url)
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            logger.warning("JWK Set fetch failed", metadata: ["smart.client": "\(client)", "error": "\(error)"])
            throw OAuthError.invalidClient("the client's JWK Set URL could not be fetched")
        }
        guard let http = response as? HTTPURLResponse, (200..<300).contains(http.statusCode) else {
            throw OAuthError.invalidClient("the client's JWK Set URL did not answer 2xx")
        }
        let set: JWKSet
        do { set = try JWKSet.parse(data) } catch { throw OAuthError.invalidClient("the client's JWK Set URL serves no valid JWK Set") }
        var maxAge = settings.jwksCacheSeconds
        if let control = http.value(forHTTPHeaderField: "Cache-Control")?.lowercased() {
            if control.contains("no-store") || control.contains("no-cache") {
                maxAge = 0
            } else if let range = control.range(of: "max-age=") {
                let digits = control[range.upperBound...].prefix { $0.isNumber }
                if let seconds = Double(digits) { maxAge = min(maxAge, seconds) }
            }
        }
        cache.withLock { $0[client] = (now, maxAge, set) }
        return set
    }

    /// The grant of the bearer token in an `Authorization` header, or nil when it is missing, malformed,
    /// unknown, expired or its client disabled.
    public func grant(authorization: String?, now: Date) async throws -> TokenGrant? {
        guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return nil }
        let token = authorization.dropFirst(7).trimmingCharacters(in: .whitespaces)
        guard !token.isEmpty, token.count <= 512 else { return nil }
        return try await store.grant(forToken: token, now: now)
    }

    static func base64URLDecode(_ s: Substring) -> Data? {
        var text = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text)
    }

    /// A claimed client id for logs: at most 64 characters from the id alphabet, else `unparseable`.
    static func loggable(_ s: String) -> String {
        guard s.count <= 64, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:@".contains($0)) }) else {
            return "unparseable"
        }
        return s
    }
}
