import Foundation
import Hummingbird
import Logging
import MQTTClient
import ServiceLifecycle
import VitalsStore

/// The operations endpoints, on 127.0.0.1 by default:
/// - `GET /healthz`: 200 while the process serves requests;
/// - `GET /readyz`: 200 when the broker connection is up and subscribed, the database takes a write
///   lock within 0.5 s, and no commit has waited longer than 5 s; otherwise 503 with the reasons;
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
        if let waiting = ingest.storeWaiting, waiting > .seconds(5) {
            problems.append("a commit has waited \(waiting.components.seconds) s for the database")
        }
        if let reason = AppDatabase.writeProbe(path: databasePath) {
            problems.append(reason)
        }
        return problems
    }

    /// The Hummingbird application serving the endpoints; a `Service` for the service group.
    public static func application(
        host: String, port: Int, ingest: IngestService, metrics: VitalsMetrics, database: AppDatabase, databasePath: String,
        logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router()
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
