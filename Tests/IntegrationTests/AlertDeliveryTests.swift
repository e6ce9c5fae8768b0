import Crypto
import Foundation
import Hummingbird
import Logging
import MQTTClient
import ServiceLifecycle
import Synchronization
import Testing
import VitalsDomain
import VitalsStore

/// A webhook receiver: records each request's body and headers, answers 204.
final class WebhookReceiver: Sendable {
    struct Request: Sendable {
        var body: Data
        var idempotencyKey: String?
        var timestamp: String?
        var signature: String?
    }

    let port: Int
    let requests = Mutex<[Request]>([])
    private let server = LoopbackServer()

    init(port: Int) { self.port = port }

    func start() async throws {
        let router = Router()
        router.post("events") { request, _ -> HTTPResponse.Status in
            let buffer = try await request.body.collect(upTo: 1 << 20)
            let r = Request(
                body: Data(buffer.readableBytesView), idempotencyKey: request.headers[.init("Idempotency-Key")!],
                timestamp: request.headers[.init("X-Vitalsd-Timestamp")!],
                signature: request.headers[.init("X-Vitalsd-Signature")!])
            self.requests.withLock { $0.append(r) }
            return .noContent
        }
        try await server.start(router, port: port)
    }

    func stop() async { await server.stop() }
}

@Suite("alerts through a real broker: trends, silence, delivery", .serialized)
struct AlertDeliveryTests {
    @Test("heart failure over 10 days: one weight-gain task, one no-data task, nothing repeated after a restart")
    func heartFailureScenario() async throws {
        // The 10 days are replayed in seconds: their readings arrive days after they were measured,
        // so late_after_hours is raised for this test; otherwise they would go to a late-data review.
        let env = try await TestEnvironment(extraYAML: """
            alerts:
              late_after_hours: 1000
            adherence:
              no_data_days: 3
              check_interval_seconds: 1
            """)
        try env.database.upsertPatient(Patient(id: "hf1", timezone: "UTC", programs: [.heartFailure]), actor: "test")
        try env.database.upsertDevice(Device(id: "scale1", kind: .scale, patientID: "hf1"), actor: "test")
        let alerts = try ChildProcess(
            path: "/usr/bin/mosquitto_sub",
            arguments: ["-h", "127.0.0.1", "-p", "\(env.broker.port)", "-t", "alerts/hf1/tasks", "-q", "1"],
            logPath: env.directory + "/sub.log", outputPath: env.directory + "/alerts.jsonl")
        defer { alerts.signal(SIGTERM); alerts.waitBlocking() }

        // Day 0 is 9 days and 1 hour before the test starts, whatever the hour; weights on days 0, 1, 2,
        // (3 missed), 4, 5 (distinct UTC dates, 24 h apart); days 6–9 silent. The no-data rule counts
        // whole elapsed days since the last reading (RoutineTasks): 4 days and 1 hour plus the test's
        // own duration is "4 days" at any hour. (Day 0 at 07:00 UTC made it 3 days before 07:00 UTC.)
        let utc = TimeZone(identifier: "UTC")!
        let day0 = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 9 * 86_400 - 3_600).rounded(.down))
        func weight(_ kg: Double, day: Int) -> [UInt8] {
            let ms = Int64(day0.addingTimeInterval(Double(day) * 86_400).timeIntervalSince1970 * 1000)
            return Array(#"{"type":"body_weight","value":\#(kg),"unit":"kg","measured_at":\#(ms)}"#.utf8)
        }
        let pub = try await env.publisher()
        var daemon = try env.startProcess()
        let first = [(80.0, 0), (80.5, 1), (81.0, 2)]
        #expect(await publishUntilStored(pub, env, topic: "devices/scale1/readings", payload: weight(80.0, day: 0)))
        for (kg, day) in first.dropFirst() { try pub.publish(topic: "devices/scale1/readings", payload: weight(kg, day: day)) }
        #expect(await eventually { (try? env.statistics().readings) == 3 })

        // Restart in the middle; the device then re-sends day 2 (a duplicate) before days 4 and 5.
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        daemon = try env.startProcess()
        for (kg, day) in [(81.0, 2), (82.0, 4), (82.5, 5)] {
            try pub.publish(topic: "devices/scale1/readings", payload: weight(kg, day: day))
        }
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == 5 })
        // The RPM episode starts on day 0; the routine check (every second) then sees 4 silent days.
        _ = try env.database.startEpisode(patientID: "hf1", startDate: LocalDate(day0, in: utc),
                                          practitioner: "Dr. A", actor: "test")
        #expect(await eventually { (try? env.database.tasks(patientID: "hf1").count) == 2 })

        // A second restart re-raises nothing.
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        daemon = try env.startProcess()
        try await Task.sleep(for: .seconds(2))
        let tasks = try env.database.tasks(patientID: "hf1").sorted { $0.id < $1.id }
        #expect(tasks.map(\.kind) == [.trend, .noData])
        // A failed expectation above must not crash the whole run on the indexes below.
        try #require(tasks.count == 2)
        #expect(tasks[0].reason == "Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days")
        #expect(tasks[0].occurrences == 1)
        #expect(tasks[1].reason.hasPrefix("No device data for 4 days"))
        // The open weight task rests on data that is now stale.
        #expect(tasks[0].dataStale)

        // Every task event reached the alerts topic: opened (trend), opened (no data), data_stale.
        #expect(await eventually {
            let lines = (try? String(contentsOfFile: env.directory + "/alerts.jsonl", encoding: .utf8))?.split(separator: "\n") ?? []
            return lines.count >= 3
        })
        let lines = try String(contentsOfFile: env.directory + "/alerts.jsonl", encoding: .utf8).split(separator: "\n")
        let events = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let ids = events.compactMap { $0["event_id"] as? String }
        #expect(Set(ids).count == 3)
        #expect(Set(events.compactMap { $0["event"] as? String }) == ["opened", "data_stale"])
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }

    @Test("F15: 20 open alerts, a restart with 200 queued readings (20 repeat breaches), then a reload: no new task, no resent event")
    func noStormAfterRestartAndReload() async throws {
        let env = try await TestEnvironment()
        for i in 0..<20 {
            try env.database.upsertPatient(Patient(id: "f\(i)", timezone: "UTC", programs: [.diabetes]), actor: "test")
            try env.database.upsertDevice(Device(id: "fg\(i)", kind: .glucometer, patientID: "f\(i)"), actor: "test")
        }
        let pub = try await env.publisher()
        var daemon = try env.startProcess()
        #expect(await publishUntilStored(pub, env, topic: "devices/fg0/readings", payload: glucoseJSON(45, at: msAgo(3_600))))
        for i in 1..<20 { try pub.publish(topic: "devices/fg\(i)/readings", payload: glucoseJSON(45, at: msAgo(3_600))) }
        #expect(await eventually { (try? env.database.tasks(status: .open).count) == 20 })
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))

        // While vitalsd is down: 9 normal readings and 1 breach of the same condition per patient.
        for i in 0..<20 {
            for k in 0..<9 { try pub.publish(topic: "devices/fg\(i)/readings", payload: glucoseJSON(110, at: msAgo(3_000 - Double(k) * 60))) }
            try pub.publish(topic: "devices/fg\(i)/readings", payload: glucoseJSON(48, at: msAgo(2_000)))
        }
        try await pub.waitUntilDelivered()
        daemon = try env.startProcess()
        #expect(await eventually { (try? env.statistics().readings) == 220 })
        try await Task.sleep(for: .milliseconds(500))
        let tasks = try env.database.tasks()
        #expect(tasks.count == 20)
        #expect(tasks.allSatisfy { $0.occurrences == 2 && $0.status == .open })

        func history() throws -> [String] {
            try env.database.tasks().flatMap { try env.database.task(id: $0.id)?.events.map(\.event) ?? [] }
        }
        // Per task: opened; the first 110 mg/dL, 10 min after the 45, is its re-measurement
        // (confirmation) and clears the low condition (recovered); the 48 is an occurrence (updated).
        let before = try history()
        #expect(before.filter { $0 == "opened" }.count == 20)
        #expect(before.count == 80)
        // A reload with nothing changed raises and sends nothing.
        daemon.signal(SIGHUP)
        try await Task.sleep(for: .seconds(2))
        #expect(try history() == before)
        #expect(await eventually { (try? await env.database.outboxBacklog(channel: "mqtt")) == 0 })
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }

    @Test("webhook down, then back after a daemon restart: every task event arrives exactly once, signed, in order")
    func webhookOutage() async throws {
        let outage = Double(ProcessInfo.processInfo.environment["VITALSD_TEST_WEBHOOK_OUTAGE_SECONDS"] ?? "") ?? 120
        let hookPort = try Broker.freePort()
        let secretPath = NSTemporaryDirectory() + "vitalsd-hook-\(UUID().uuidString)"
        try "hook-secret-7\n".write(toFile: secretPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secretPath) }
        let env = try await TestEnvironment(extraYAML: """
            delivery:
              mqtt_enabled: false
              webhook_url: http://127.0.0.1:\(hookPort)/events
              webhook_secret_file: \(secretPath)
              webhook_timeout_seconds: 2
              retry_max_seconds: 2
            """)
        let started = Date()
        let pub = try await env.publisher()
        var daemon = try env.startProcess()
        // Critical low, then high (a second condition), while the receiver is down.
        #expect(await publishUntilStored(pub, env, payload: glucoseJSON(45, at: msAgo(50))))
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(300, at: msAgo(40)))
        #expect(await eventually { (try? env.database.tasks().count) == 2 })
        let low = try #require(try env.database.tasks().first { $0.direction == .low })
        _ = try env.database.acknowledgeTask(id: low.id, by: "nurse.a")

        // Restart once during the outage; more events meanwhile.
        try await Task.sleep(for: .seconds(max(0, outage / 2 - Date().timeIntervalSince(started))))
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        daemon = try env.startProcess()
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(310, at: msAgo(30)))
        #expect(await eventually { (try? env.database.tasks().first { $0.direction == .high }?.occurrences) == 2 })
        _ = try env.database.resolveTask(id: low.id, by: "nurse.a")
        // The 300 mg/dL, 10 min after the critical 45, is its re-measurement (not confirmed) and
        // clears the low condition (recovered): opened, confirmation, recovered, opened (high),
        // acknowledged, updated (310), resolved.
        #expect(try await env.database.outboxBacklog(channel: "webhook") == 7)

        try await Task.sleep(for: .seconds(max(0, outage - Date().timeIntervalSince(started))))
        let receiver = WebhookReceiver(port: hookPort)
        try await receiver.start()
        defer { Task { await receiver.stop() } }
        #expect(await eventually { receiver.requests.withLock { $0.count } >= 7 })
        try await Task.sleep(for: .seconds(3))  // room for a stray repeat to show up
        let received = receiver.requests.withLock { $0 }
        let bodies = received.compactMap { try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any] }
        let ids = bodies.compactMap { $0["event_id"] as? String }
        #expect(ids.count == 7)
        #expect(Set(ids).count == 7)  // exactly once
        // task-event-<row id>-<incarnation>: the first run of the daemon wrote the first four, the
        // test's own database the acknowledgement and the resolution, the second run the update.
        let numbers = ids.compactMap { Int($0.split(separator: "-")[2]) }
        #expect(numbers.count == 7)
        let incarnations = ids.map { String($0.split(separator: "-")[3]) }
        let (first, mine, second) = (incarnations[0], env.database.incarnation, incarnations[5])
        #expect(incarnations == [first, first, first, first, mine, second, mine])
        #expect(Set([first, mine, second]).count == 3)
        #expect(numbers == numbers.sorted())  // in order
        #expect(bodies.compactMap { $0["event"] as? String } == [
            "opened", "confirmation", "recovered", "opened", "acknowledged", "updated", "resolved",
        ])
        for r in received {
            // The idempotency key is the event id, and the signature is HMAC-SHA256 over "<timestamp>.<body>".
            let body = try #require(try JSONSerialization.jsonObject(with: r.body) as? [String: Any])
            #expect(r.idempotencyKey == body["event_id"] as? String)
            let timestamp = try #require(r.timestamp)
            let mac = HMAC<SHA256>.authenticationCode(
                for: Data("\(timestamp).".utf8) + r.body, using: SymmetricKey(data: Data("hook-secret-7".utf8)))
            #expect(r.signature == "sha256=" + mac.map { String(format: "%02x", $0) }.joined())
        }
        #expect(try await env.database.outboxBacklog(channel: "webhook") == 0)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        await receiver.stop()
    }
}
