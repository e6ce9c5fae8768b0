import Foundation
import Logging
import MQTTClient
import ServiceLifecycle
import Testing
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// The whole daemon (`Daemon.compose`) in this process on a ``ManualWallClock``: the rules, the
/// timers and the receive times see the test's time, not the hour the suite runs.
struct ClockedDaemon {
    let composition: Daemon.Composition
    let task: Task<Void, any Error>

    /// - Parameter http: serve the HTTP endpoints on the environment's port (off unless a test reads them).
    static func start(_ env: TestEnvironment, clock: ManualWallClock, http: Bool = false) async throws -> ClockedDaemon {
        var logger = Logger(label: "vitalsd-clocked")
        logger.logLevel = .warning
        var config = env.config
        config.http.enabled = http
        // The daemon stopped before has given its lock up, yet once (under faketime, with other tests
        // spawning processes) the restart found it still held: a child spawned at that moment can hold
        // a copy of the lock's descriptor until it execs. Wait for the lock to be free, not fail.
        var composed: Daemon.Composition?
        var lastError: (any Error)?
        _ = await eventually(30) {
            do {
                composed = try Daemon.compose(config: config, clock: clock, logger: logger, signals: false)
                return true
            } catch let error as DatabaseLock.Failure where error.description.contains("is in use by another vitalsd") {
                lastError = error
                try? await Task.sleep(for: .milliseconds(50))
                return false
            } catch {
                lastError = error
                return true
            }
        }
        guard let composition = composed else { throw lastError ?? TestFailure("the daemon could not be composed") }
        let task = Task { try await composition.run() }
        let daemon = ClockedDaemon(composition: composition, task: task)
        guard await eventually(60, { composition.ingest.connectionStatus.subscribed }) else {
            await daemon.stop()
            throw TestFailure("daemon did not subscribe: \(composition.ingest.connectionStatus)")
        }
        return daemon
    }

    /// Graceful shutdown, as on SIGTERM; also after a failed expectation.
    func stop() async {
        await composition.group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// Epoch milliseconds of an instant.
private func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

private func bpJSON(_ sys: Double, _ dia: Double, at: Date) -> [UInt8] {
    Array(#"{"measured_at":\#(ms(at)),"readings":[{"type":"systolic_bp","value":\#(sys),"unit":"mmHg"},{"type":"diastolic_bp","value":\#(dia),"unit":"mmHg"}]}"#.utf8)
}

/// 2026-03-02T07:00:00Z.
private let day0 = Date(timeIntervalSince1970: 1_772_434_800)

@Suite("the daemon on a test clock, against a real broker", .serialized)
struct ClockedDaemonTests {
    @Test("heart failure over 10 days on a test clock: one weight-gain task, one no-data task at 02:30 UTC, nothing repeated after a restart")
    func heartFailure() async throws {
        let env = try await TestEnvironment(extraYAML: """
            adherence:
              no_data_days: 3
              check_interval_seconds: 60
            """)
        try env.database.upsertPatient(Patient(id: "hf1", timezone: "UTC", programs: [.heartFailure]), actor: "test")
        try env.database.upsertDevice(Device(id: "scale1", kind: .scale, patientID: "hf1"), actor: "test")
        _ = try env.database.startEpisode(patientID: "hf1", startDate: LocalDate("2026-03-02")!, practitioner: "Dr. A", actor: "test",
                                          now: day0)
        let clock = ManualWallClock(day0)
        var daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        // Weights on days 0, 1, 2, (3 missed), 4, 5 at 07:00 UTC, each received a minute after it was measured.
        var stored = 0
        for (kg, day) in [(80.0, 0.0), (80.5, 1), (81.0, 2), (82.0, 4), (82.5, 5)] {
            let at = day0.addingTimeInterval(day * 86_400)
            clock.set(at.addingTimeInterval(60))
            stored += 1
            // Sent again until stored (same measured_at: a repeat is a duplicate), so that a loaded
            // machine's slow reconnect after the restart cannot lose the test's reading.
            #expect(await publishUntilStored(pub, env, topic: "devices/scale1/readings",
                                             payload: Array(#"{"type":"body_weight","value":\#(kg),"unit":"kg","measured_at":\#(ms(at))}"#.utf8),
                                             readings: stored))
            if day == 2 {
                // A restart in the middle.
                await daemon.stop()
                daemon = try await ClockedDaemon.start(env, clock: clock)
            }
        }
        // Day 9 at 02:30 UTC: the last reading was 3 days 19.5 hours ago.
        clock.set(day0.addingTimeInterval(9 * 86_400 - 4.5 * 3_600))
        // A check that was running when the clock jumped sleeps its next minute from the new time:
        // move on by a minute each second until it has run (at most 20 minutes: still 3 days).
        #expect(await eventually(advancing: clock, by: 61, every: .seconds(1)) {
            (try? env.database.tasks(patientID: "hf1").count) == 2
        })
        await daemon.stop()
        daemon = try await ClockedDaemon.start(env, clock: clock)
        clock.advance(by: 120)
        try await Task.sleep(for: .milliseconds(500))
        let tasks = try env.database.tasks(patientID: "hf1").sorted { $0.id < $1.id }
        #expect(tasks.map(\.kind) == [.trend, .noData])
        #expect(tasks.first?.reason == "Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days")
        #expect(tasks.last?.reason == "No device data for 3 days since the last reading on 2026-03-07")
        #expect(tasks.first?.dataStale == true)
        #expect(tasks.first?.latest?.measuredAt == day0.addingTimeInterval(5 * 86_400))
        await daemon.stop()
    }

    @Test("escalation after 30 min on the test clock; a warning raised to critical counts in tasks_opened_total and the open-tasks gauge")
    func escalationAndMetrics() async throws {
        let env = try await TestEnvironment(extraYAML: """
            alerts:
              check_interval_seconds: 30
            """)
        let clock = ManualWallClock(day0)
        let daemon = try await ClockedDaemon.start(env, clock: clock, http: true)
        let pub = try await env.publisher()
        defer { pub.close() }
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(65, at: ms(day0.addingTimeInterval(-60))))
        #expect(await eventually { (try? env.database.tasks().first?.priority) == .warning })
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(50, at: ms(day0.addingTimeInterval(-30))))
        #expect(await eventually { (try? env.database.tasks().first?.priority) == .critical })
        let task = try #require(try env.database.tasks().first)
        #expect(task.nextEscalationAt == day0.addingTimeInterval(1_800))
        clock.advance(by: 29 * 60)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try env.database.task(id: task.id)?.task.escalationLevel == 0)
        // Due at 30 minutes. The timer may have been running, not sleeping, when the clock moved:
        // move on by one check interval at a time until it has run (level 2 is 30 minutes later).
        clock.advance(by: 60)
        #expect(await eventually(advancing: clock, by: 30) { (try? env.database.task(id: task.id)?.task.escalationLevel) == 1 })

        let body = try #require(await httpGet(port: env.httpPort, "/metrics")).body
        #expect(body.contains(#"vitalsd_tasks_opened_total{priority="critical"} 1"#))
        #expect(body.contains(#"vitalsd_tasks_opened_total{priority="warning"} 1"#))
        #expect(body.contains(#"vitalsd_tasks_open{priority="critical"} 1"#))
        #expect(body.contains(#"vitalsd_tasks_open{priority="warning"} 0"#))
        await daemon.stop()
    }

    @Test("issue 11.1: a reading measured before a reassignment but received after it stays with the first patient")
    func reassignment() async throws {
        let env = try await TestEnvironment()
        for p in ["pa", "pb"] { try env.database.upsertPatient(Patient(id: p, timezone: "UTC", programs: [.hypertension]), actor: "test") }
        try env.database.upsertDevice(Device(id: "cuff-rr", kind: .bpCuff, patientID: "pa"), actor: "test")
        let clock = ManualWallClock(day0)
        let daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        let t1 = day0.addingTimeInterval(-600)
        // Moved to B now; the 190/100 measured 10 minutes ago arrives afterwards.
        try env.database.upsertDevice(Device(id: "cuff-rr", kind: .bpCuff, patientID: "pb"), actor: "test", reassign: true, at: day0)
        clock.advance(by: 60)
        try pub.publish(topic: "devices/cuff-rr/readings", payload: bpJSON(190, 100, at: t1))
        try pub.publish(topic: "devices/cuff-rr/readings", payload: bpJSON(121, 79, at: day0.addingTimeInterval(30)))
        #expect(await eventually { (try? env.statistics().readings) == 4 })
        #expect(try env.database.tasks(patientID: "pa").map(\.priority) == [.critical])
        #expect(try env.database.tasks(patientID: "pb").isEmpty)
        #expect(try env.database.deviceBindings(deviceID: "cuff-rr").map(\.patientID) == ["pa", "pb"])
        // The schema keeps one current binding, and a reassignment cannot predate what is stored.
        #expect(throws: EnrollmentError.self) {
            try env.database.upsertDevice(Device(id: "cuff-rr", kind: .bpCuff, patientID: "pa"), actor: "test", reassign: true,
                                          at: day0.addingTimeInterval(10))
        }
        await daemon.stop()
    }

    @Test("issue 11.2: a retained SenML pack without a time adds nothing on restart and reconnect")
    func retainedWithoutTime() async throws {
        let env = try await TestEnvironment(mqttExtra: """
              subscriptions:
                - {topic: "gw/+/senml", format: senml}
            """)
        try env.database.upsertDevice(Device(id: "bpcuff-9", kind: .bpCuff, patientID: "p1"), actor: "test")
        let clock = ManualWallClock(day0)
        var daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        let pack = Array(#"[{"bn":"rpm/gw01/bpcuff-9/","bu":"mmHg","n":"sys","v":128},{"n":"dia","v":82}]"#.utf8)
        try pub.publish(topic: "gw/bpcuff-9/senml", payload: pack, retain: true)
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == 2 })
        for _ in 0..<3 {
            clock.advance(by: 3_600)
            await daemon.stop()
            daemon = try await ClockedDaemon.start(env, clock: clock)
            // The broker sends the retained copy on every subscribe.
            #expect(await eventually { (try? env.statistics().duplicates) ?? 0 > 0 })
        }
        await env.broker.stop()
        try await env.broker.start()
        #expect(await eventually { daemon.composition.ingest.connectionStatus.subscribed })
        try await Task.sleep(for: .seconds(1))
        #expect(try env.statistics().readings == 2)
        // The same values sent live again are a new measurement.
        clock.advance(by: 60)
        let again = try await env.publisher()
        defer { again.close() }
        try again.publish(topic: "gw/bpcuff-9/senml", payload: pack)
        #expect(await eventually { (try? env.statistics().readings) == 4 })
        await daemon.stop()
    }

    @Test("issue 11.3: glucose 41 from a device whose clock reads 2000-01-01, or 15 min ahead, opens a critical clock task")
    func wrongDeviceClock() async throws {
        let env = try await TestEnvironment()
        let clock = ManualWallClock(day0)
        let daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        try pub.publish(topic: "devices/g1/readings",
                        payload: Array(#"{"type":"glucose","value":41,"unit":"mg/dL","measured_at":"2000-01-01T00:05:00Z"}"#.utf8))
        #expect(await eventually { (try? env.database.tasks().count) == 1 })
        let task = try #require(try env.database.tasks().first)
        #expect(task.vital == "clock:g1" && task.kind == .device && task.priority == .critical && task.status == .open)
        #expect(task.reason.hasSuffix("Worst value, received 2026-03-02T07:00:00Z: Glucose 41 mg/dL below critical limit 54 mg/dL"))
        #expect(try env.statistics().readings == 0)
        #expect(try env.statistics().deadLettersByReason == ["bad_timestamp": 1])
        // 15 minutes ahead of the receive time: the same task, another occurrence.
        try pub.publish(topic: "devices/g2/readings", payload: glucoseJSON(44, at: ms(day0.addingTimeInterval(900))))
        #expect(await eventually { (try? env.database.tasks(patientID: "p1").count) == 2 })
        #expect(try env.database.tasks(patientID: "p1").map(\.vital).sorted() == ["clock:g1", "clock:g2"])
        await daemon.stop()
    }

    @Test("issue 11.3: a SenML glucose 41 with an unset device clock opens the same critical clock task")
    func wrongDeviceClockSenML() async throws {
        let env = try await TestEnvironment(mqttExtra: """
              subscriptions:
                - {topic: "gw/+/senml", format: senml}
            """)
        let clock = ManualWallClock(day0)
        let daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        // `t` 946684800 s is 2000-01-01T00:00:00Z, the reset value of an unset clock.
        try pub.publish(topic: "gw/g1/senml", payload: Array(#"[{"bn":"urn:dev:id:g1:","n":"glucose","u":"mg/dL","v":41,"t":946684800}]"#.utf8))
        #expect(await eventually { (try? env.database.tasks().count) == 1 })
        let task = try #require(try env.database.tasks().first)
        #expect(task.vital == "clock:g1" && task.kind == .device && task.priority == .critical)
        #expect(task.reason.hasSuffix("Worst value, received 2026-03-02T07:00:00Z: Glucose 41 mg/dL below critical limit 54 mg/dL"))
        #expect(try env.statistics().readings == 0)
        #expect(try env.statistics().deadLettersByReason == ["bad_timestamp": 1])
        await daemon.stop()
    }

    @Test("issue 11.6: a delayed crisis sees the re-measurement that arrived before it: not_confirmed")
    func confirmationByMeasurementTime() async throws {
        let env = try await TestEnvironment()
        try env.database.upsertPatient(Patient(id: "h1", timezone: "UTC", programs: [.hypertension]), actor: "test")
        try env.database.upsertDevice(Device(id: "cuff-6", kind: .bpCuff, patientID: "h1"), actor: "test")
        let clock = ManualWallClock(day0)
        let daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        try pub.publish(topic: "devices/cuff-6/readings", payload: bpJSON(122, 78, at: day0.addingTimeInterval(-30 * 60)))
        try pub.publish(topic: "devices/cuff-6/readings", payload: bpJSON(124, 79, at: day0.addingTimeInterval(-20 * 60)))
        #expect(await eventually { (try? env.statistics().readings) == 4 })
        clock.advance(by: 10)
        try pub.publish(topic: "devices/cuff-6/readings", payload: bpJSON(188, 122, at: day0.addingTimeInterval(-25 * 60)))
        #expect(await eventually { (try? env.database.tasks(patientID: "h1").first?.confirmation) == .notConfirmed })
        // The timer does not change it afterwards.
        clock.advance(by: 3_600)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try env.database.tasks(patientID: "h1").first?.confirmation == .notConfirmed)
        await daemon.stop()
    }
}
