import Foundation
import GRDB
import Glibc
import Synchronization
import MQTTClient
import Testing
import VitalsConfig
import VitalsDaemon
import VitalsStore

/// `GET path` on 127.0.0.1:`port` over a plain socket. Returns (status, body), or nil when nothing listens.
///
/// Async, on a Dispatch thread (``httpRequest(port:_:_:headers:body:)``): a blocking request on the
/// cooperative pool (two threads here) could starve an in-process daemon that must answer it, or
/// another test's, until the request times out.
func httpGet(port: Int, _ path: String) async -> (status: Int, body: String)? {
    (try? await httpRequest(port: port, "GET", path)).map { ($0.status, $0.body) }
}

/// The value of a metric line such as `vitalsd_readings_stored_total 3`.
func metric(_ exposition: String, _ name: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1))
    }
    return nil
}

/// Another connection's write lock on the database file, held from `start()` until `release()` (or
/// at most `limit` seconds), on GRDB's queue, not the test's threads.
final class HeldWriteLock: Sendable {
    private let queue: DatabaseQueue
    private let released = Atomic<Bool>(false)
    private let taken = Atomic<Bool>(false)
    private let holding = Mutex<Task<Void, any Error>?>(nil)

    init(path: String) throws { queue = try DatabaseQueue(path: path) }

    /// Starts taking the lock; returns once it is held (false if that took a minute).
    func start(limit: Double = 120) async -> Bool {
        holding.withLock {
            $0 = Task { [self] in
                try await queue.writeWithoutTransaction { db in
                    try db.execute(sql: "BEGIN IMMEDIATE")
                    self.taken.store(true, ordering: .sequentiallyConsistent)
                    let deadline = Date().addingTimeInterval(limit)
                    while !self.released.load(ordering: .sequentiallyConsistent) && Date() < deadline {
                        Thread.sleep(forTimeInterval: 0.05)
                    }
                    try db.execute(sql: "ROLLBACK")
                }
            }
        }
        return await eventually { self.taken.load(ordering: .sequentiallyConsistent) }
    }

    /// Releases the lock and waits until it is released.
    func release() async throws {
        released.store(true, ordering: .sequentiallyConsistent)
        try await holding.withLock({ $0 })?.value
    }
}

@Suite("health, readiness and metrics endpoints", .serialized)
struct HTTPEndpointTests {
    @Test("/healthz, /readyz through a broker restart and a held database lock, /metrics with exact counts")
    func endpoints() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let port = env.httpPort
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 200 })
        #expect(await httpGet(port: port, "/healthz")?.status == 200)
        // HEAD as GET without the body (RFC 9110 §9.3.2), as a load balancer's health check may send it.
        let head = try await httpRequest(port: port, "HEAD", "/healthz")
        #expect(head.status == 200 && head.body.isEmpty)

        let pub = try await env.publisher()
        defer { pub.close() }
        let base = msAgo(7200)
        for i in 0..<3 { try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: base + Int64(i) * 1000)) }
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(45, at: base + 10_000))  // critical low
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: base))  // duplicate
        try pub.publish(topic: "devices/g1/readings", payload: Array(#"{"sys":1"#.utf8))
        try pub.publish(topic: "devices/nobody/readings", payload: glucoseJSON(100, at: base))
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == 4 && (try? env.statistics().deadLetters) == 2 })
        let exposition = try #require(await httpGet(port: port, "/metrics")).body
        #expect(metric(exposition, "vitalsd_messages_received_total") == 7)
        #expect(metric(exposition, "vitalsd_readings_stored_total") == 4)
        #expect(metric(exposition, "vitalsd_duplicates_total") == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="malformed_json"}"#) == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="unknown_device"}"#) == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="bad_unit"}"#) == 0)
        #expect(metric(exposition, #"vitalsd_tasks_opened_total{priority="critical"}"#) == 1)
        #expect(metric(exposition, "vitalsd_broker_connected") == 1)
        #expect(metric(exposition, #"vitalsd_build_info{version="\#(BuildInfo.version)"}"#) == 1)
        #expect(metric(exposition, "vitalsd_ingest_latency_seconds_count") == 7)
        // Each metric says what it is, counters as counters (Prometheus text format).
        let lines = exposition.split(separator: "\n")
        #expect(lines.contains("# TYPE vitalsd_broker_reconnects_total counter"))
        #expect(lines.contains("# HELP vitalsd_readings_stored_total Readings stored."))
        let typed = Set(lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
        let helped = Set(lines.filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        #expect(!typed.isEmpty && typed == helped, "\(typed.symmetricDifference(helped))")
        #expect(typed.filter { $0.hasSuffix("_total") }.allSatisfy { name in lines.contains("# TYPE \(name) counter") })

        // The broker goes away: not ready; it comes back: ready again, by itself.
        await env.broker.stop()
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 503 })
        #expect(await httpGet(port: port, "/healthz")?.status == 200)
        try await env.broker.start()
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 200 })
        #expect(metric(try #require(await httpGet(port: port, "/metrics")).body, "vitalsd_broker_reconnects_total") == 1)

        // Another connection holds the write lock until the endpoint has said so: not
        // ready while it lasts; nothing is lost.
        let lock = try HeldWriteLock(path: env.config.database.path)
        #expect(await lock.start())
        let pub2 = try await env.publisher()  // the first one lost its connection with the broker
        defer { pub2.close() }
        try pub2.publish(topic: "devices/g1/readings", payload: glucoseJSON(101, at: base + 20_000))
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 503 })
        try await lock.release()
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 200 })
        #expect(await eventually { (try? env.statistics().readings) == 5 })
        #expect(daemon.isRunning)

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
    }

    @Test("SIGTERM while another process holds the write lock: /healthz stays fast, exit 0, nothing lost")
    func shutdownUnderHeldLock() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let port = env.httpPort
        #expect(await eventually { await httpGet(port: port, "/readyz")?.status == 200 })
        let pub = try await env.publisher()
        defer { pub.close() }
        let first = msAgo(60)
        #expect(await publishUntilStored(pub, env, payload: glucoseJSON(100, at: first)))

        // Another process-level connection holds the lock until the daemon has exited (at most 120 s),
        // longer than the busy timeout.
        let lock = try HeldWriteLock(path: env.config.database.path)
        #expect(await lock.start())
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(101, at: first + 1_000))
        try await pub.waitUntilDelivered()
        try await Task.sleep(for: .seconds(2))
        // The timer and delivery services wait for the lock off the cooperative pool: the endpoints answer
        // while the lock is still held (blocked endpoints would wait out the 10 s busy timeout; the
        // bound leaves room for a loaded machine).
        let start = Date()
        #expect(await httpGet(port: port, "/healthz")?.status == 200)
        #expect(await httpGet(port: port, "/metrics")?.status == 200)
        #expect(Date().timeIntervalSince(start) < 5)

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
        try await lock.release()
        // The uncommitted reading was never acknowledged: the broker delivers it again.
        let again = try env.startProcess()
        defer { if again.isRunning { again.signal(SIGKILL); again.waitBlocking() } }
        #expect(await eventually { (try? env.statistics().readings) == 2 })
        again.signal(SIGTERM)
        #expect(await again.waitForExit(seconds: 30))
    }
}
