import Foundation
import GRDB
import Glibc
import MQTTClient
import Testing
import VitalsConfig
import VitalsStore

/// `GET path` on 127.0.0.1:`port` over a plain socket. Returns (status, body), or nil when nothing listens.
func httpGet(port: Int, _ path: String) -> (status: Int, body: String)? {
    (try? blockingRequest(port: port, "GET", path, headers: [:], body: nil)).map { ($0.status, $0.body) }
}

/// The value of a metric line such as `vitalsd_readings_stored_total 3`.
func metric(_ exposition: String, _ name: String) -> Double? {
    for line in exposition.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1))
    }
    return nil
}

@Suite("health, readiness and metrics endpoints", .serialized)
struct HTTPEndpointTests {
    @Test("/healthz, /readyz through a broker restart and a held database lock, /metrics with exact counts")
    func endpoints() async throws {
        let env = try TestEnvironment()
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let port = env.httpPort
        #expect(await eventually(15) { httpGet(port: port, "/readyz")?.status == 200 })
        #expect(httpGet(port: port, "/healthz")?.status == 200)

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
        let exposition = try #require(httpGet(port: port, "/metrics")).body
        #expect(metric(exposition, "vitalsd_messages_received_total") == 7)
        #expect(metric(exposition, "vitalsd_readings_stored_total") == 4)
        #expect(metric(exposition, "vitalsd_duplicates_total") == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="malformed_json"}"#) == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="unknown_device"}"#) == 1)
        #expect(metric(exposition, #"vitalsd_dead_letters_total{reason="bad_unit"}"#) == 0)
        #expect(metric(exposition, #"vitalsd_tasks_opened_total{priority="critical"}"#) == 1)
        #expect(metric(exposition, "vitalsd_broker_connected") == 1)
        #expect(metric(exposition, "vitalsd_ingest_latency_seconds_count") == 7)

        // The broker goes away: not ready; it comes back: ready again, by itself.
        env.broker.stop()
        #expect(await eventually(10) { httpGet(port: port, "/readyz")?.status == 503 })
        #expect(httpGet(port: port, "/healthz")?.status == 200)
        try env.broker.start()
        #expect(await eventually(15) { httpGet(port: port, "/readyz")?.status == 200 })
        #expect(metric(try #require(httpGet(port: port, "/metrics")).body, "vitalsd_broker_reconnects") == 1)

        // Another connection holds the write lock for 5 s: not ready while it lasts; nothing is lost.
        let locker = try DatabaseQueue(path: env.config.database.path)
        let holding = Task {
            try await locker.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                Thread.sleep(forTimeInterval: 5)  // on GRDB's queue, not the test's threads
                try db.execute(sql: "ROLLBACK")
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        let pub2 = try await env.publisher()  // the first one lost its connection with the broker
        defer { pub2.close() }
        try pub2.publish(topic: "devices/g1/readings", payload: glucoseJSON(101, at: base + 20_000))
        #expect(await eventually(4) { httpGet(port: port, "/readyz")?.status == 503 })
        try await holding.value
        #expect(await eventually(15) { httpGet(port: port, "/readyz")?.status == 200 })
        #expect(await eventually { (try? env.statistics().readings) == 5 })
        #expect(daemon.isRunning)

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 10))
        #expect(daemon.exitCode == 0)
    }

    @Test("SIGTERM while another process holds the write lock: /healthz stays fast, exit 0 within 10 s, nothing lost")
    func shutdownUnderHeldLock() async throws {
        let env = try TestEnvironment()
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let port = env.httpPort
        #expect(await eventually(15) { httpGet(port: port, "/readyz")?.status == 200 })
        let pub = try await env.publisher()
        defer { pub.close() }
        let first = msAgo(60)
        #expect(await publishUntilStored(pub, env, payload: glucoseJSON(100, at: first)))

        // Another process-level connection holds the lock for 20 s, longer than the busy timeout.
        let locker = try DatabaseQueue(path: env.config.database.path)
        let holding = Task {
            try await locker.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                Thread.sleep(forTimeInterval: 20)
                try db.execute(sql: "ROLLBACK")
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(101, at: first + 1_000))
        try await pub.waitUntilDelivered()
        try await Task.sleep(for: .seconds(2))
        // The timer and delivery services wait for the lock off the cooperative pool: the endpoints answer.
        let start = Date()
        #expect(httpGet(port: port, "/healthz")?.status == 200)
        #expect(httpGet(port: port, "/metrics")?.status == 200)
        #expect(Date().timeIntervalSince(start) < 1)

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 10.5))
        #expect(daemon.exitCode == 0)
        try await holding.value
        // The uncommitted reading was never acknowledged: the broker delivers it again.
        let again = try env.startProcess()
        defer { if again.isRunning { again.signal(SIGKILL); again.waitBlocking() } }
        #expect(await eventually(15) { (try? env.statistics().readings) == 2 })
        again.signal(SIGTERM)
        #expect(await again.waitForExit(seconds: 10))
    }
}
