/// The claims of a SMART client authentication JWT, already signature-verified.
public struct AssertionClaims: Sendable, Hashable {
    public var issuer: String?
    public var subject: String?
    public var audience: [String]
    /// Seconds since 1970-01-01T00:00:00Z.
    public var expiresAt: Int64?
    public var notBefore: Int64?
    public var jwtID: String?

    public init(issuer: String?, subject: String?, audience: [String], expiresAt: Int64?, notBefore: Int64? = nil, jwtID: String?) {
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.expiresAt = expiresAt
        self.notBefore = notBefore
        self.jwtID = jwtID
    }
}

/// The claim rules of SMART's `client-confidential-asymmetric` authentication
/// (hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html, RFC 7523 §3).
public enum AssertionRules {
    /// How far `exp` may lie ahead: five minutes (the SMART rule).
    public static let maximumLifetimeSeconds: Int64 = 300
    /// Allowed difference between the client's clock and ours, in seconds, on `exp`'s upper bound
    /// and on `nbf`; `exp` itself must still be in the future.
    public static let clockSkewSeconds: Int64 = 30

    /// Checks `iss` = `sub` = the client id, `aud` names the token URL, `exp` is in the future and at
    /// most five minutes ahead, `nbf` (if any) has passed, and a `jti` is present.
    /// - Parameters:
    ///   - now: seconds since 1970-01-01T00:00:00Z.
    /// - Returns: nil when the claims pass, else the reason (for an OAuth `invalid_client` answer).
    public static func problem(_ c: AssertionClaims, clientID: String, tokenURL: String, now: Int64) -> String? {
        guard c.issuer == clientID else { return "iss must be the client id" }
        guard c.subject == clientID else { return "sub must be the client id" }
        guard c.audience.contains(tokenURL) else { return "aud must be this token endpoint's URL, \(tokenURL)" }
        guard let exp = c.expiresAt else { return "exp is required" }
        guard exp > now else { return "the assertion has expired (exp is in the past)" }
        guard exp <= now + maximumLifetimeSeconds + clockSkewSeconds else { return "exp is more than five minutes ahead" }
        if let nbf = c.notBefore, nbf > now + clockSkewSeconds { return "the assertion is not valid yet (nbf)" }
        guard let jti = c.jwtID, !jti.isEmpty, jti.utf8.count <= 256 else { return "jti is required (at most 256 bytes)" }
        return nil
    }

    /// The JOSE algorithms accepted: RS384 and ES384, the two SMART names.
    public static let algorithms: Set<String> = ["RS384", "ES384"]

    /// The JWK key type an algorithm needs: `RSA` for RS384, `EC` (P-384) for ES384.
    public static func keyType(for algorithm: String) -> String? {
        switch algorithm {
        case "RS384": "RSA"
        case "ES384": "EC"
        default: nil
        }
    }
}
