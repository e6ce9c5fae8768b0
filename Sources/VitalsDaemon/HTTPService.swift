import Foundation
import Hummingbird
import Logging
import MQTTClient
import ServiceLifecycle
import VitalsConfig
import VitalsStore
#if canImport(Glibc)
import Glibc
#endif

/// The operations endpoints, on 127.0.0.1 by default:
/// - `GET /healthz`: 200 while the process serves requests;
/// - `GET /readyz`: 200 when the broker connection is up and subscribed and its session is not being
///   taken over by another client, the database takes a write lock within 0.5 s, and no commit has
///   waited longer than 5 s; otherwise 503 with the reasons;
/// - `GET /metrics`: ``VitalsMetrics`` in the Prometheus text format.
///
/// The workspace and the FHIR API are served on the web listener (`web.*`), not here.
public enum HTTPEndpoints {
    /// Why the daemon is not ready, or an empty list when it is.
    public static func readinessProblems(ingest: IngestService, databasePath: String) -> [String] {
        var problems: [String] = []
        let status = ingest.connectionStatus
        if !status.connected {
            problems.append("broker not connected\(status.lastError.map { ": \($0)" } ?? "")")
        } else if !status.subscribed {
            problems.append("broker connected but not subscribed")
        }
        if status.sessionTakenOver {
            problems.append(
                "MQTT session taken over \(status.sessionTakeovers) times by another client with client id '\(ingest.mqttClientID)' (mqtt.client_id): is a second vitalsd using it?")
        }
        if let failure = ingest.storeFailure {
            // Say why, first: a full disk is not a slow commit.
            let waited = ingest.storeWaiting.map { " (a batch has waited \($0.components.seconds) s; nothing of it is acknowledged)" } ?? ""
            problems.append("cannot commit to the database: \(failure)\(waited)")
        } else if let waiting = ingest.storeWaiting, waiting > .seconds(5) {
            problems.append("a commit has waited \(waiting.components.seconds) s for the database")
        }
        if let reason = AppDatabase.writeProbe(path: databasePath) {
            problems.append(reason)
        }
        return problems
    }

    /// Fails when `host:port` cannot be bound (another vitalsd, or another program, listens there), so
    /// that the daemon stops before it connects to the broker, with the key named.
    /// - Throws: ``ConfigurationErrors`` naming `http.port` (or `http.host` when the address is unknown).
    public static func checkPortFree(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw ConfigurationErrors(errors: [ConfigurationError(key: "http.host", "cannot resolve '\(host)'")])
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var yes: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0 {
            let reason = String(cString: strerror(errno))
            throw ConfigurationErrors(errors: [ConfigurationError(
                key: "http.port", "\(host):\(port) cannot be used for the HTTP endpoints (\(reason)): another vitalsd or another program listens there; choose another http.port")])
        }
    }

    /// The Hummingbird application serving the endpoints; a `Service` for the service group.
    public static func application(
        host: String, port: Int, ingest: IngestService, metrics: VitalsMetrics, database: AppDatabase, databasePath: String,
        logger: Logger
    ) -> some ApplicationProtocol {
        // HEAD answers as GET without the body (RFC 9110 §9.3.2), as on the web listener.
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.get("healthz") { _, _ in
            "ok\n"
        }
        router.get("readyz") { _, _ -> Response in
            // The write probe may wait 0.5 s for a lock: off the cooperative pool.
            let problems = try await offPool { readinessProblems(ingest: ingest, databasePath: databasePath) }
            let body = problems.isEmpty ? "ready\n" : problems.joined(separator: "\n") + "\n"
            return Response(
                status: problems.isEmpty ? .ok : .serviceUnavailable,
                headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ -> Response in
            let open = (try? await database.unresolvedTaskCounts()) ?? [:]
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition(status: ingest.connectionStatus, openTasks: open))))
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "vitalsd"), logger: logger)
    }
}
