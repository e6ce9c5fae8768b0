import Foundation
import Hummingbird
import HTTPTypes
import Logging
import NIOCore
import Synchronization

/// Token buckets keyed by client address: each key may spend ``capacity`` requests at once and
/// regains ``capacity`` per minute, evenly (one every `60 / capacity` seconds).
///
/// A pure value: the caller passes the time in seconds (a clock set back refills nothing). At most ``maximumKeys``
/// buckets are kept; beyond that, full buckets (idle addresses) are forgotten first, then the least
/// recently used, so that many addresses cannot grow memory without bound.
public struct TokenBuckets: Sendable {
    /// Requests a key may make at once, and per minute.
    public let capacity: Double
    /// Most buckets held.
    public let maximumKeys: Int
    private var buckets: [String: (tokens: Double, at: Double)] = [:]

    /// - Parameters:
    ///   - perMinute: requests per minute and key (at least 1).
    ///   - maximumKeys: most keys remembered (default 10,000).
    public init(perMinute: Int, maximumKeys: Int = 10_000) {
        capacity = Double(max(1, perMinute))
        self.maximumKeys = max(1, maximumKeys)
    }

    /// Takes one request from `key`'s bucket at time `now` (seconds).
    /// - Returns: nil when the request may go on; else the seconds until the bucket holds one again.
    public mutating func take(_ key: String, now: Double) -> Double? {
        let refillPerSecond = capacity / 60
        var bucket = buckets[key] ?? (capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + max(0, now - bucket.at) * refillPerSecond)
        bucket.at = now
        defer {
            buckets[key] = bucket
            if buckets.count > maximumKeys { forget(now: now) }
        }
        guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / refillPerSecond }
        bucket.tokens -= 1
        return nil
    }

    /// The number of keys remembered.
    public var count: Int { buckets.count }

    private mutating func forget(now: Double) {
        let refillPerSecond = capacity / 60
        buckets = buckets.filter { $0.value.tokens + (now - $0.value.at) * refillPerSecond < capacity }
        if buckets.count > maximumKeys {
            let keep = buckets.sorted { $0.value.at > $1.value.at }.prefix(maximumKeys / 2)
            buckets = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
    }
}

/// Limits the unauthenticated requests that cost the server most, per client address: sign-ins
/// (`POST /signin`, a bcrypt check and an audit row each) and SMART token requests
/// (`POST /auth/token`, a signature check and an audit row each). A request over the limit is
/// answered `429 Too Many Requests` with `Retry-After` before any of that work, and writes nothing,
/// so that a flood can neither take the CPU from ingest nor fill the audit trail (OWASP ASVS 4.0
/// V2.2.1, V11.1.4).
///
/// The client address is the socket's peer; behind a TLS proxy (`web.behind_tls_proxy`) it is the
/// last address of `X-Forwarded-For`, the one the proxy itself saw.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = WorkspaceRequestContext

    /// The buckets of one limited path, and the addresses already logged as limited (so that a
    /// flood logs one line per address and burst).
    final class Limiter: Sendable {
        let buckets: Mutex<TokenBuckets>
        let logged = Mutex<Set<String>>([])
        init(perMinute: Int) { buckets = Mutex(TokenBuckets(perMinute: perMinute)) }
    }

    /// The limited `POST` paths, each with buckets of its own.
    let limiters: [String: Limiter]
    let behindProxy: Bool
    let logger: Logger
    /// The workspace's clock; tests pass their own.
    let now: @Sendable () -> Date

    init(paths: [String], perMinute: Int, behindProxy: Bool, logger: Logger, now: @escaping @Sendable () -> Date) {
        limiters = Dictionary(uniqueKeysWithValues: paths.map { ($0, Limiter(perMinute: perMinute)) })
        self.behindProxy = behindProxy
        self.logger = logger
        self.now = now
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, let limiter = limiters[routedPath(request.uri.path)] else {
            return try await next(request, context)
        }
        let address = clientAddress(request, context: context)
        let time = now().timeIntervalSince1970
        guard let wait = limiter.buckets.withLock({ $0.take(address, now: time) }) else {
            _ = limiter.logged.withLock { $0.remove(address) }
            return try await next(request, context)
        }
        if limiter.logged.withLock({ $0.count < 10_000 && $0.insert(address).inserted }) {
            logger.notice("requests refused: too many from one address",
                          metadata: ["http.path": "\(request.uri.path)", "client.address": "\(address)"])
        }
        let seconds = Int(wait.rounded(.up))
        var headers = HTTPFields()
        headers[.retryAfter] = "\(seconds)"
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(
            status: .tooManyRequests, headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: "Too many requests from this address. Try again in \(seconds) s.\n")))
    }

    /// The client's address, without the port.
    func clientAddress(_ request: Request, context: Context) -> String {
        if behindProxy, let forwarded = request.headers[.xForwardedFor],
           let last = forwarded.split(separator: ",").last?.trimmingCharacters(in: .whitespaces), !last.isEmpty {
            return String(last.prefix(64))
        }
        return context.remoteAddress?.ipAddress ?? "unknown"
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}

/// A request path as the router matches it: empty segments dropped, so `/signin/` and `//signin` are
/// `/signin`. Checks keyed by path (the rate limits, the background requests) must use this form, or a
/// doubled or trailing slash reaches the route and skips the check.
func routedPath(_ path: String) -> String {
    "/" + path.split(separator: "/", omittingEmptySubsequences: true).joined(separator: "/")
}
