import Foundation
import Glibc
import MQTTClient
import Testing
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// End to end through a real mosquitto and a real SQLite file.
@Suite("daemon against a real broker", .serialized)
struct PipelineIntegrationTests {
    @Test("each dead-letter reason, then a valid reading: the valid one is stored, nothing stops")
    func badThenGood() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        let pub = try await env.publisher()
        defer { pub.close() }
        let base = msAgo(3600)
        let bad: [(String, [UInt8])] = [
            ("devices/g1/readings", [0xFF, 0xFE, 0x7B, 0x22]),
            ("devices/g1/readings", Array(#"{"sys":12"#.utf8)),
            ("devices/g1/readings", Array(#"{"hello":1}"#.utf8)),
            ("devices/stranger/readings", glucoseJSON(90, at: base)),
            ("devices/g1/readings", Array(#"{"type":"ketones","value":1,"unit":"mmol/L","measured_at":\#(base)}"#.utf8)),
            ("devices/g1/readings", Array(#"{"type":"glucose","value":90,"unit":"parsecs","measured_at":\#(base)}"#.utf8)),
            ("devices/g1/readings", Array(#"{"type":"glucose","value":"LO","unit":"mg/dL","measured_at":\#(base)}"#.utf8)),
            ("devices/g1/readings", Array(#"{"type":"glucose","value":110,"unit":"mmol/L","measured_at":\#(base)}"#.utf8)),
            ("devices/g1/readings", Array(#"{"type":"glucose","value":90,"unit":"mg/dL","measured_at":0}"#.utf8)),
            ("devices/g1/readings", Array(repeating: UInt8(ascii: " "), count: 300_000)),
        ]
        for (i, (topic, payload)) in bad.enumerated() {
            try pub.publish(topic: topic, payload: payload)
            try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: base + Int64(i + 1) * 1000))
        }
        try await pub.waitUntilDelivered()
        #expect(try await eventually { try env.statistics().readings == bad.count && env.statistics().deadLetters == bad.count })
        let s = try env.statistics()
        #expect(s.readings == bad.count)
        #expect(s.deadLettersByReason == [
            "invalid_utf8": 1, "malformed_json": 1, "missing_field": 1, "unknown_device": 1, "unknown_type": 1,
            "bad_unit": 1, "out_of_meter_range": 1, "implausible_value": 1, "bad_timestamp": 1, "too_large": 1,
        ])
        // The meter's LO is no value, but glucose below what it can measure: one critical low task.
        // 110 "mmol/L" (1,982 mg/dL) is implausible: a routine device task that names it.
        // The reading timed at epoch 0 names a wrong device clock: a routine device task (its 90 mg/dL breaches nothing).
        #expect(s.tasksOpen == 3)
        // (The two routine tasks open in one batch or in two: compared without their order.)
        #expect(try env.database.tasks().map { "\($0.vital) \($0.direction.rawValue) \($0.priority.rawValue)" }.sorted()
                == ["clock:g1 high routine", "glucose low critical", "value:g1 high routine"])
        try await daemon.stop()
    }

    @Test("a redelivered reading adds no row and no task")
    func duplicate() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        let pub = try await env.publisher()
        defer { pub.close() }
        let at = msAgo(600)
        for _ in 0..<3 { try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(48, at: at)) }
        // Retained, as a device's "last reading" replayed on every subscribe (F6).
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(48, at: at), retain: true)
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().duplicates) == 3 })
        let s = try env.statistics()
        #expect(s.readings == 1)
        #expect(s.tasksOpen == 1)
        #expect(try env.database.tasks()[0].occurrences == 1)
        try await daemon.stop()
    }

    @Test("two devices of one patient breach at the same moment: one task")
    func concurrentBreaches() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        let a = try await env.publisher()
        let b = try await env.publisher()
        defer { a.close(); b.close() }
        let at = msAgo(120)
        try a.publish(topic: "devices/g1/readings", payload: glucoseJSON(45, at: at))
        try b.publish(topic: "devices/g2/readings", payload: glucoseJSON(47, at: at))
        try await a.waitUntilDelivered()
        try await b.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == 2 })
        let tasks = try env.database.tasks()
        #expect(tasks.count == 1)
        #expect(tasks.first?.occurrences == 2)
        #expect(tasks.first?.priority == .critical)
        try await daemon.stop()
    }

    @Test("messages queued at the broker while the daemon is down are all stored once")
    func restartWithBacklog() async throws {
        let env = try await TestEnvironment()
        // First run creates the persistent session.
        var daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        try await daemon.stop()
        let pub = try await env.publisher()
        defer { pub.close() }
        let count = 3_000  // above mosquitto's default max_queued_messages of 1000
        let base = msAgo(86_400)
        for i in 0..<count {
            try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100 + Double(i % 50), at: base + Int64(i) * 1000))
        }
        try await pub.waitUntilDelivered()
        // And the broker restarts while vitalsd is down (persistence on).
        await env.broker.stop()
        try await env.broker.start()
        daemon = try env.startDaemon()
        #expect(await eventually(300) { (try? env.statistics().readings) == count })
        let s = try env.statistics()
        #expect(s.readings == count)
        #expect(s.duplicates == 0)
        #expect(s.deadLetters == 0)
        try await daemon.stop()
    }

    @Test("a broker killed with kill -9 keeps what it acknowledged for an offline daemon, but for the last save window")
    func brokerCrashWindow() async throws {
        let env = try await TestEnvironment()
        var daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        try await daemon.stop()
        let pub = try await env.publisher()
        defer { pub.close() }
        let count = 500
        let base = msAgo(86_400)
        for i in 0..<count {
            try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: base + Int64(i) * 1000))
        }
        try await pub.waitUntilDelivered()  // every reading acknowledged by the broker
        await env.broker.kill()
        try await env.broker.start()
        daemon = try env.startDaemon()
        // Config/mosquitto.conf saves after every 100 changes (autosave_on_changes, autosave_interval 100):
        // at most 99 queued readings are lost. With "autosave_interval 30" all 500 were.
        #expect(await eventually { ((try? env.statistics().readings) ?? 0) >= count - 99 })
        let stored = try env.statistics().readings
        #expect(stored >= count - 99 && stored <= count, "stored \(stored) of \(count)")
        try await daemon.stop()
    }

    @Test("the daemon reconnects and resubscribes when the broker restarts")
    func brokerRestart() async throws {
        let env = try await TestEnvironment()
        let daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        await env.broker.stop()
        #expect(await eventually { !daemon.service.connectionStatus.connected })
        try await env.broker.start()
        try await daemon.waitUntilSubscribed()
        #expect(daemon.service.connectionStatus.reconnects >= 1)
        let pub = try await env.publisher()
        defer { pub.close() }
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: msAgo(60)))
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == 1 })
        try await daemon.stop()
    }
}

/// The built `vitalsd run` process under SIGTERM and SIGKILL in the middle of a stream.
@Suite("daemon process faults", .serialized)
struct ProcessFaultTests {
    /// Publishes `count` readings while `interrupt` runs after `after` seconds; then restarts the
    /// daemon and checks that every published reading is stored exactly once.
    func streamWithInterruption(
        count: Int, signal: Int32, expectCleanExit: Bool
    ) async throws {
        let env = try await TestEnvironment()
        var daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        #expect(await eventually { Broker.canConnect(port: env.broker.port) })
        // Wait until the session exists: a probe published before the daemon subscribed would be
        // dropped by the broker, so repeat it (same measured_at: one row) until it is stored.
        let pub = try await env.publisher()
        defer { pub.close() }
        let probeAt = msAgo(200_000)
        try #require(await publishUntilStored(pub, env, payload: glucoseJSON(100, at: probeAt)))

        let base = msAgo(100_000)
        let publishing = Task {
            for i in 0..<count {
                try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100, at: base + Int64(i) * 1000))
            }
            try await pub.waitUntilDelivered(timeout: 120)
        }
        // Interrupt once part of the stream is stored.
        #expect(await eventually(300) { ((try? env.statistics().readings) ?? 0) > count / 4 })
        daemon.signal(signal)
        let exited = await daemon.waitForExit(seconds: 30)
        #expect(exited)
        if expectCleanExit {
            #expect(daemon.exitCode == 0)
        }
        let storedAtStop = try env.statistics().readings
        try await publishing.value

        daemon = try env.startProcess()
        #expect(await eventually(300) { (try? env.statistics().readings) == count + 1 })
        let s = try env.statistics()
        #expect(s.readings == count + 1, "stored \(storedAtStop) before the signal")
        #expect(s.deadLetters == 0)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
    }

    @Test("SIGTERM during a stream: exit 0 within 10 s, and nothing acknowledged is lost")
    func sigterm() async throws {
        try await streamWithInterruption(count: 20_000, signal: SIGTERM, expectCleanExit: true)
    }

    @Test("kill -9 during a stream: after restart every reading is stored once")
    func sigkill() async throws {
        try await streamWithInterruption(count: 20_000, signal: SIGKILL, expectCleanExit: false)
    }
}
