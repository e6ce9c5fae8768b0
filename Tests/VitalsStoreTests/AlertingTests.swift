import Foundation
import GRDB
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsFormats
@testable import VitalsStore

/// Systolic critical at 180 mmHg, clearing only below 170 (the F13 test input).
private let hysteresisPipeline = IngestPipeline(
    thresholds: ThresholdPolicy(defaults: [.systolicBP: ThresholdLimits(criticalHigh: 180, recoveryHigh: 170)]))

/// A systolic-only cuff message for `device`, measured `minutesAgo` minutes before `now`.
private func systolic(_ value: Double, minutesAgo: Double, device: String = "c1", now: Date = Date()) -> IncomingMessage {
    let ms = Int64((now.timeIntervalSince1970 - minutesAgo * 60) * 1000)
    return message(device, #"{"type":"systolic_bp","value":\#(value),"unit":"mm[Hg]","measured_at":\#(ms)}"#, receivedAt: now)
}

private func bp(_ sys: Double, _ dia: Double, at: Date, device: String = "c1", receivedAt: Date? = nil) -> IncomingMessage {
    let ms = Int64(at.timeIntervalSince1970 * 1000)
    return message(device, """
        {"measured_at":\(ms),"readings":[{"type":"systolic_bp","value":\(sys),"unit":"mmHg"},
        {"type":"diastolic_bp","value":\(dia),"unit":"mmHg"}]}
        """, receivedAt: receivedAt ?? at.addingTimeInterval(5))
}

@Suite("alert rules in the ingest transaction")
struct AlertingTests {
    @Test("F13: 179, 181, 179, 182, 178, 181 around 180 with recovery 170 make one task")
    func hysteresis() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        for (i, v) in [179.0, 181, 179, 182].enumerated() {
            _ = try await db.ingest([systolic(v, minutesAgo: Double(60 - i))], pipeline: hysteresisPipeline)
        }
        var tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 2)  // 181 and 182
        // The care manager resolves it while the pressure still hovers at the limit.
        _ = try db.resolveTask(id: tasks[0].id, by: "nurse.a")
        var suppressed = 0
        for (i, v) in [178.0, 181].enumerated() {
            suppressed += try await db.ingest([systolic(v, minutesAgo: Double(50 - i))], pipeline: hysteresisPipeline).suppressedBreaches
        }
        tasks = try db.tasks()
        #expect(tasks.count == 1)  // still one task: the condition never cleared
        #expect(suppressed == 1)
        // Below 170 it clears; the next crossing is a new condition and a new task.
        _ = try await db.ingest([systolic(165, minutesAgo: 40)], pipeline: hysteresisPipeline)
        _ = try await db.ingest([systolic(183, minutesAgo: 39)], pipeline: hysteresisPipeline)
        tasks = try db.tasks()
        #expect(tasks.count == 2)
        #expect(tasks.filter { $0.status != .resolved }.count == 1)
    }

    @Test("F13 without resolution: a hovering value is one task; a higher level after resolution opens anew")
    func hoveringAndWorse() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let warnAndCritical = IngestPipeline(thresholds: ThresholdPolicy(
            defaults: [.systolicBP: ThresholdLimits(criticalHigh: 180, warningHigh: 160, recoveryHigh: 150)]))
        for (i, v) in [161.0, 158, 162, 159, 163].enumerated() {
            _ = try await db.ingest([systolic(v, minutesAgo: Double(60 - i))], pipeline: warnAndCritical)
        }
        let tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 3)
        _ = try db.resolveTask(id: tasks[0].id, by: "nurse.a")
        // Still active (never below 150): another warning is suppressed, a critical is not.
        #expect(try await db.ingest([systolic(164, minutesAgo: 50)], pipeline: warnAndCritical).suppressedBreaches == 1)
        _ = try await db.ingest([systolic(185, minutesAgo: 49)], pipeline: warnAndCritical)
        let after = try db.tasks(status: .open)
        #expect(after.count == 1)
        #expect(after[0].priority == .critical)
    }

    @Test("F14: two high readings in the same millisecond, in one batch and in racing batches, make one task")
    func concurrentReadings() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.upsertDevice(Device(id: "c2", kind: .bpCuff, patientID: "p2"), actor: "test")
        try db.upsertDevice(Device(id: "c3", kind: .bpCuff, patientID: "p2"), actor: "test")
        let now = Date()
        let s = try await db.ingest([systolic(185, minutesAgo: 1, device: "c1", now: now),
                                     systolic(186, minutesAgo: 1, device: "c2", now: now)], pipeline: pipeline)
        #expect(s.readingsStored == 2)
        #expect(s.tasksOpened == [.critical: 1])
        #expect(s.tasksUpdated == 1)
        // Two batches at once, from two writers.
        async let a = db.ingest([systolic(187, minutesAgo: 0.5, device: "c3", now: now)], pipeline: pipeline)
        async let b = db.ingest([systolic(188, minutesAgo: 0.5, device: "c1", now: now)], pipeline: pipeline)
        _ = try await (a, b)
        let tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 4)
        _ = try db.resolveTask(id: tasks[0].id, by: "nurse.a")
        #expect(try db.tasks(status: .open).isEmpty)  // clearing leaves no orphan
    }

    @Test("F15: after a restart, 200 queued readings with 20 repeat breaches open nothing new; late breaches make one review task each")
    func noStormAfterRestart() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        var db = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
        for i in 0..<20 {
            try db.upsertPatient(Patient(id: "p\(i)", timezone: "UTC", programs: [.diabetes]), actor: "test")
            try db.upsertDevice(Device(id: "g\(i)", kind: .glucometer, patientID: "p\(i)"), actor: "test")
        }
        _ = try await db.ingest((0..<20).map { glucose(45, minutesAgo: 120, device: "g\($0)") }, pipeline: pipeline)
        #expect(try db.tasks(status: .open).count == 20)
        // Restart: a new connection and a pipeline built again from the same configuration.
        try db.close()
        db = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
        let reloaded = IngestPipeline(thresholds: .clinicalDefaults)
        var backlog: [IncomingMessage] = []
        for i in 0..<20 {
            for k in 0..<9 { backlog.append(glucose(110, minutesAgo: 100 - Double(k), device: "g\(i)")) }
            backlog.append(glucose(48, minutesAgo: 90, device: "g\(i)"))
        }
        #expect(backlog.count == 200)
        let s = try await db.ingest(backlog.shuffled(), pipeline: reloaded)
        #expect(s.readingsStored == 200)
        #expect(s.tasksOpened.isEmpty)
        #expect(s.tasksUpdated == 20)
        #expect(try db.tasks().count == 20)
        // Readings measured 30 h before they arrive: stored and evaluated, but gathered into one
        // late-data review task per patient (3 patients, 2 breaching readings each).
        var late: [IncomingMessage] = []
        for i in 0..<3 {
            late.append(glucose(300, minutesAgo: 30 * 60, device: "g\(i)"))
            late.append(glucose(40, minutesAgo: 30 * 60 - 5, device: "g\(i)"))
        }
        let l = try await db.ingest(late, pipeline: reloaded)
        #expect(l.readingsStored == 6)
        #expect(l.lateBreaches == 6)
        #expect(l.tasksOpened == [.warning: 3])
        let review = try db.tasks(status: .open).filter { $0.kind == .lateData }
        #expect(review.count == 3)
        // 300 mg/dL is a warning; the 40 mg/dL after it is critical (< 54) and raises the review task.
        #expect(l.tasksRaised == [.critical: 3])
        #expect(review.allSatisfy { $0.occurrences == 2 && $0.priority == .critical && $0.nextEscalationAt != nil })
        #expect(try db.tasks().filter { $0.vital == "glucose" && $0.direction == .high }.isEmpty)
    }

    @Test("F16: silence opens one no-data task and flags the open high task as stale without clearing it")
    func staleData() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let day0 = Date().addingTimeInterval(-30 * 3_600)
        _ = try db.startEpisode(patientID: "p2", startDate: LocalDate(day0.addingTimeInterval(-86_400), in: TimeZone(identifier: "Europe/Berlin")!),
                                practitioner: "Dr. A", actor: "test")
        _ = try await db.ingest([bp(185, 125, at: day0)], pipeline: pipeline)
        let high = try #require(try db.tasks().first)
        let s = try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 1, now: Date())
        #expect(s.noDataTasks == 1)
        let after = try #require(try db.task(id: high.id))
        #expect(after.task.status == .open)
        #expect(after.task.dataStale)
        #expect(after.events.map(\.event).contains("data_stale"))
        // Once a reading arrives, it is no longer stale.
        _ = try await db.ingest([bp(120, 80, at: Date().addingTimeInterval(-60))], pipeline: pipeline)
        #expect(try db.task(id: high.id)?.task.dataStale == false)
    }

    @Test("confirmation: a re-measurement within 15 min confirms or not; none at all is recorded by the timer")
    func confirmation() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let t0 = Date().addingTimeInterval(-3_600)
        _ = try await db.ingest([bp(185, 125, at: t0)], pipeline: pipeline)
        var task = try #require(try db.tasks().first)
        #expect(task.confirmation == .pending)
        _ = try await db.ingest([bp(183, 118, at: t0.addingTimeInterval(120))], pipeline: pipeline)
        task = try #require(try db.task(id: task.id)?.task)
        #expect(task.confirmation == .confirmed)  // 183 mmHg is still ≥ 180
        _ = try db.resolveTask(id: task.id, by: "nurse.a")
        // Recovered (120/80), then a new crisis and a lower re-measurement 3 min later.
        _ = try await db.ingest([bp(120, 80, at: t0.addingTimeInterval(600))], pipeline: pipeline)
        _ = try await db.ingest([bp(190, 100, at: t0.addingTimeInterval(1_200))], pipeline: pipeline)
        _ = try await db.ingest([bp(165, 95, at: t0.addingTimeInterval(1_380))], pipeline: pipeline)
        let second = try #require(try db.tasks(status: .open).first)
        #expect(second.confirmation == .notConfirmed)
        // A third crisis with no re-measurement: the timer closes the window after 15 min.
        _ = try db.resolveTask(id: second.id, by: "nurse.a")
        _ = try await db.ingest([bp(120, 80, at: t0.addingTimeInterval(1_500))], pipeline: pipeline)
        _ = try await db.ingest([bp(181, 90, at: t0.addingTimeInterval(1_800))], pipeline: pipeline)
        let third = try #require(try db.tasks(status: .open).first)
        #expect(try await db.runAlertTimers(policy: pipeline.alerts, now: t0.addingTimeInterval(1_800 + 899)).notRepeated == 0)
        #expect(try await db.runAlertTimers(policy: pipeline.alerts, now: t0.addingTimeInterval(1_800 + 901)).notRepeated == 1)
        #expect(try db.task(id: third.id)?.task.confirmation == .notRepeated)
    }

    @Test("escalation: after 30 min unacknowledged, then every 30 min, until acknowledged; never twice for one step")
    func escalation() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let opened = Date()
        _ = try await db.ingest([glucose(45, minutesAgo: 1)], pipeline: pipeline)  // critical low
        _ = try await db.ingest([glucose(65, minutesAgo: 0.5, device: "g1")], pipeline: pipeline)
        let task = try #require(try db.tasks().first { $0.priority == .critical })
        let policy = pipeline.alerts
        func run(_ minutes: Double) async throws -> Int {
            try await db.runAlertTimers(policy: policy, now: opened.addingTimeInterval(minutes * 60)).escalated
        }
        #expect(try await run(29) == 0)
        // p1 has no care manager and the pipeline no escalation backup: the escalation reaches nobody,
        // which the summary names for the metric and the error log.
        let first = try await db.runAlertTimers(policy: policy, now: opened.addingTimeInterval(31 * 60))
        #expect(first.escalated == 1)
        #expect(first.unreached == [task.id])
        #expect(try await run(31) == 0)  // a repeated run, as after a restart, does not escalate again
        #expect(try await run(60) == 0)
        #expect(try await run(62) == 1)
        #expect(try db.task(id: task.id)?.task.escalationLevel == 2)
        _ = try db.acknowledgeTask(id: task.id, by: "nurse.a")
        #expect(try await run(200) == 0)
        let events = try #require(try db.task(id: task.id)).events.map(\.event)
        #expect(events.filter { $0 == "escalated" }.count == 2)
        // A warning task never escalates.
        _ = try await db.ingest([glucose(300, minutesAgo: 0.2)], pipeline: pipeline)
        #expect(try await run(1_000) == 0)
    }

    @Test("heart failure: 2.5 kg over 5 days with a missed day opens one weight-gain task")
    func heartFailureWeights() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.upsertPatient(Patient(id: "p3", timezone: "UTC", programs: [.heartFailure]), actor: "test")
        try db.upsertDevice(Device(id: "s3", kind: .scale, patientID: "p3"), actor: "test")
        let start = Date().addingTimeInterval(-6 * 86_400)
        // Day 3 missed. The 24 h rule sees +0.5 kg a day at most; the 7-day rule sees 82.5 − 80.0 at day 5.
        let weights: [(Double, Double)] = [(0, 80.0), (1, 80.5), (2, 81.0), (4, 82.0), (5, 82.5)]
        for (day, kg) in weights {
            let at = start.addingTimeInterval(day * 86_400)
            let ms = Int64(at.timeIntervalSince1970 * 1000)
            _ = try await db.ingest([message("s3", #"{"type":"body_weight","value":\#(kg),"unit":"kg","measured_at":\#(ms)}"#,
                                             receivedAt: at.addingTimeInterval(60))], pipeline: pipeline)
        }
        let tasks = try db.tasks(patientID: "p3")
        #expect(tasks.count == 1)
        #expect(tasks[0].kind == .trend)
        #expect(tasks[0].vital == "body_weight")
        #expect(tasks[0].priority == .warning)
        #expect(tasks[0].reason == "Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days")
        // A patient can have a rule changed: with a 3 kg bound the same rise opens nothing.
        try db.setRuleOverride(patientID: "p1", ruleID: "weight_gain_7d", override: RuleOverride(bound: 3, disabled: false), actor: "dr.a")
        #expect(try db.ruleOverrides(patientID: "p1")["weight_gain_7d"]?.bound == 3)
    }

    @Test("every task event lands in the outbox in the same transaction, as documented JSON")
    func outbox() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.openDeliveryChannel("mqtt")  // before anything happens: starts at 0
        _ = try await db.ingest([bp(185, 125, at: Date().addingTimeInterval(-60))], pipeline: pipeline)
        let task = try #require(try db.tasks().first)
        _ = try db.acknowledgeTask(id: task.id, by: "nurse.a")
        let events = try await db.pendingEvents(channel: "mqtt", limit: 10)
        #expect(events.count == 2)
        #expect(events.allSatisfy { $0.patientID == "p2" })
        let first = try #require(try JSONSerialization.jsonObject(with: Data(events[0].body.utf8)) as? [String: Any])
        #expect(first["event"] as? String == "opened")
        #expect(first["event_id"] as? String == "task-event-\(events[0].id)-\(db.incarnation)")
        #expect(events[0].eventID == first["event_id"] as? String)
        let t = try #require(first["task"] as? [String: Any])
        #expect(t["priority"] as? String == "critical")
        #expect(t["fhir_priority"] as? String == "stat")
        #expect(t["fhir_status"] as? String == "requested")
        #expect(t["condition"] as? String == "blood_pressure")
        #expect(t["confirmation"] as? String == "pending")
        #expect(t["data_stale"] as? Bool == false)
        let second = try #require(try JSONSerialization.jsonObject(with: Data(events[1].body.utf8)) as? [String: Any])
        #expect((second["task"] as? [String: Any])?["fhir_status"] as? String == "accepted")
        #expect(second["actor"] as? String == "nurse.a")
        try await db.markDelivered(channel: "mqtt", through: events[0].id)
        #expect(try await db.outboxBacklog(channel: "mqtt") == 1)
        try await db.markDelivered(channel: "mqtt", through: events[1].id)
        try await db.markDelivered(channel: "mqtt", through: events[0].id)  // never moves back
        #expect(try await db.pendingEvents(channel: "mqtt", limit: 10).isEmpty)
        // A channel opened later starts at the newest event: no replay of history.
        try db.openDeliveryChannel("webhook")
        #expect(try await db.pendingEvents(channel: "webhook", limit: 10).isEmpty)
        // Delivered copies go after 30 days; the task events stay.
        #expect(try db.purgeDeliveredEvents(channels: ["mqtt", "webhook"], olderThanDays: 30) == 0)
        #expect(try db.purgeDeliveredEvents(channels: ["mqtt", "webhook"], olderThanDays: 30, now: Date().addingTimeInterval(31 * 86_400)) == 2)
        #expect(try db.task(id: task.id)?.events.count == 2)
    }

    @Test("after a restore from a backup, new task events get row ids already delivered but event ids never seen")
    func eventIDsAfterRestore() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        let live = try enrolledDatabase(dir)
        try live.openDeliveryChannel("webhook")
        _ = try await live.ingest([bp(185, 125, at: Date().addingTimeInterval(-60))], pipeline: pipeline)
        try await live.markDelivered(channel: "webhook", through: 1)
        try live.backup(to: dir.path + "/copy.sqlite")
        // After the backup: the task is acknowledged (event 2) and that event is delivered.
        let task = try #require(try live.tasks().first)
        _ = try live.acknowledgeTask(id: task.id, by: "nurse.a")
        let delivered = try await live.pendingEvents(channel: "webhook", limit: 10)
        #expect(delivered.map(\.id) == [2])
        try await live.markDelivered(channel: "webhook", through: 2)
        try live.close()
        // The restore: the copy in the database's place, the WAL of the replaced database removed.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        try FileManager.default.copyItem(atPath: dir.path + "/copy.sqlite", toPath: path)
        let restored = try AppDatabase.open(path: path)
        #expect(restored.incarnation != live.incarnation)
        _ = try restored.resolveTask(id: task.id, by: "nurse.b", note: "called the patient")
        let after = try await restored.pendingEvents(channel: "webhook", limit: 10)
        // The copy's cursor stood at event 1; the resolution reuses row id 2, which the receiver has
        // seen under another event id.
        #expect(after.map(\.id) == [2])
        #expect(after[0].eventID == "task-event-2-\(restored.incarnation)")
        #expect(delivered[0].eventID == "task-event-2-\(live.incarnation)")
        #expect(after[0].eventID != delivered[0].eventID)
        #expect(restored.incarnation.count == 12 && restored.incarnation.allSatisfy(\.isHexDigit))
    }

    @Test("the id arrays the batch queries pass to json_each read back as the same ids, whatever their characters")
    func idArrays() throws {
        let ids: Set<String> = ["p-1", "a\"b", "c\\d", "e\u{01}f\u{1F}", "tab\tnew\nline", "ü🙂", ""]
        let db = try DatabaseQueue()
        let read = try db.read { db in
            try String.fetchAll(db, sql: "SELECT value FROM json_each(?)", arguments: [try AppDatabase.jsonArray(ids)])
        }
        #expect(Set(read) == ids)
        #expect(read.count == ids.count)
        #expect(try AppDatabase.jsonArray([]) == "[]")
    }

    @Test("a silent device next to a working one gets its own routine device task, once")
    func silentDevice() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.upsertDevice(Device(id: "s2", kind: .scale, patientID: "p2"), actor: "test")
        let now = Date()
        _ = try db.startEpisode(patientID: "p2", startDate: LocalDate(now.addingTimeInterval(-10 * 86_400), in: TimeZone(identifier: "Europe/Berlin")!),
                                practitioner: "Dr. A", actor: "test")
        // The scale last weighed 5 days ago; the cuff measured an hour ago.
        let scaleMS = Int64(now.addingTimeInterval(-5 * 86_400).timeIntervalSince1970 * 1000)
        _ = try await db.ingest([message("s2", #"{"type":"body_weight","value":80,"unit":"kg","measured_at":\#(scaleMS)}"#,
                                         receivedAt: now.addingTimeInterval(-5 * 86_400 + 60)),
                                 bp(120, 80, at: now.addingTimeInterval(-3_600))], pipeline: pipeline)
        let s = try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 3, now: now)
        #expect(s.noDataTasks == 0)
        #expect(s.silentDeviceTasks == 1)
        let task = try #require(try db.tasks(patientID: "p2").first)
        #expect(task.kind == .device)
        #expect(task.priority == .routine)
        #expect(task.reason == "Device s2 (scale) has sent no data for 5 days; the patient's other devices still send")
        #expect(try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 3, now: now.addingTimeInterval(3_600)).silentDeviceTasks == 0)
    }

    @Test("average and count rules open tasks through ingest, merged with the condition's limits")
    func averageAndCount() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let rules = IngestPipeline(
            thresholds: .clinicalDefaults,
            alerts: AlertPolicy(programRules: [
                .hypertension: [TrendRule(id: "sbp_mean_7d", kind: .average, type: .systolicBP, direction: .high,
                                          windowSeconds: 7 * 86_400, bound: 150, minimumCount: 3)],
                .diabetes: [TrendRule(id: "lows_7d", kind: .count, type: .glucose, direction: .low,
                                      windowSeconds: 7 * 86_400, bound: 80, minimumCount: 3)],
            ]))
        // Systolic 148, 152, 155: below every limit; the mean (151.67) is ≥ 150 at the third.
        for (i, v) in [148.0, 152, 155].enumerated() {
            _ = try await db.ingest([systolic(v, minutesAgo: Double(3 - i) * 60)], pipeline: rules)
        }
        let bp = try db.tasks(patientID: "p2")
        #expect(bp.count == 1)
        #expect(bp[0].kind == .trend)
        #expect(bp[0].vital == "blood_pressure")
        #expect(bp[0].reason == "Systolic blood pressure mean 151.7 mmHg over 7 days; rule sbp_mean_7d: Systolic blood pressure mean over 7 days ≥ 150 mmHg")
        // Glucose 78, 120, 75, 79 mg/dL: above the 70 limit, but the third reading below 80 completes the count.
        for (i, v) in [78.0, 120, 75].enumerated() { _ = try await db.ingest([glucose(v, minutesAgo: Double(100 - i))], pipeline: rules) }
        #expect(try db.tasks(patientID: "p1").isEmpty)
        _ = try await db.ingest([glucose(79, minutesAgo: 90)], pipeline: rules)
        let lows = try db.tasks(patientID: "p1")
        #expect(lows.count == 1)
        #expect(lows[0].reason == "3 Glucose readings below 80 mg/dL within 7 days; rule lows_7d: 3 Glucose readings < 80 mg/dL within 7 days")
    }

    @Test("a LO or HI marker joins the open threshold task of its condition without stopping ingest; it keeps its readings")
    func markerJoinsThresholdTask() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ms = Int64((Date().timeIntervalSince1970 - 600) * 1000)
        // 50 mg/dL (below the critical 54), then the meter shows LO, in one message: the commit
        // failed on the tasks' CHECK (a threshold task without a latest reading) and no batch after it
        // was stored.
        let both = message("g1", #"{"readings":[{"type":"glucose","value":50,"unit":"mg/dL","measured_at":\#(ms)},{"type":"glucose","value":"LO","unit":"mg/dL","measured_at":\#(ms + 300_000)}]}"#)
        let s = try await db.ingest([both], pipeline: pipeline)
        #expect(s.readingsStored == 1)
        var task = try #require(try db.tasks(patientID: "p1").first)
        #expect(try db.tasks(patientID: "p1").count == 1)
        #expect(task.kind == .threshold && task.priority == .critical && task.direction == .low)
        #expect(task.latest?.summary == "Glucose 50 mg/dL")
        let loAt = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(ms + 300_000) / 1000))
        #expect(task.reason.hasSuffix("; then Glucose below the meter's range (LO) at \(loAt)"))
        // Acknowledged, then LO again: worse than any value, so the task is open again and escalates anew.
        _ = try db.acknowledgeTask(id: task.id, by: "nurse.a")
        let again = message("g1", #"{"type":"glucose","value":"LO","unit":"mg/dL","measured_at":\#(ms + 360_000)}"#)
        _ = try await db.ingest([again], pipeline: pipeline)
        task = try #require(try db.task(id: task.id)?.task)
        #expect(task.status == .open)
        #expect(task.nextEscalationAt != nil)
        #expect(task.occurrences == 3)
        // 300 mg/dL (warning), then HI: the task is raised to critical and keeps its reading.
        let high = message("g1", #"{"type":"glucose","value":300,"unit":"mg/dL","measured_at":\#(ms + 400_000)}"#)
        let hi = message("g1", #"{"type":"glucose","value":"HI","unit":"mg/dL","measured_at":\#(ms + 420_000)}"#)
        _ = try await db.ingest([high], pipeline: pipeline)
        _ = try await db.ingest([hi], pipeline: pipeline)
        let raised = try #require(try db.tasks(patientID: "p1").first { $0.direction == .high })
        #expect(raised.kind == .threshold && raised.priority == .critical && raised.status == .open)
        #expect(raised.latest?.summary == "Glucose 300 mg/dL")
        // Ingest goes on.
        #expect(try await db.ingest([glucose(120, minutesAgo: 1)], pipeline: pipeline).readingsStored == 1)
    }

    @Test("F22: a meter handed over an hour ago whose clock reads 2024-01-01: its 45 mg/dL is refused and opens a critical clock task")
    func clockBeforeBinding() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.upsertDevice(Device(id: "g9", kind: .glucometer, patientID: "p1"), actor: "test", from: Date().addingTimeInterval(-3_600))
        let received = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded(.down) / 1000)
        let s = try await db.ingest(
            [message("g9", #"{"type":"glucose","value":45,"unit":"mg/dL","measured_at":"2024-01-01T00:00:00Z"}"#, receivedAt: received)],
            pipeline: pipeline)
        #expect(s.deadLetters == [.beforeBinding: 1])
        #expect(s.readingsStored == 0)
        let task = try #require(try db.tasks(patientID: "p1").first)
        #expect(task.vital == "clock:g9" && task.kind == .device && task.priority == .critical && task.status == .open)
        #expect(task.nextEscalationAt != nil)
        #expect(task.reason.contains("measured at 2024-01-01T00:00:00Z, before the device's first binding to a patient"))
        #expect(task.reason.hasSuffix("Glucose 45 mg/dL below critical limit 54 mg/dL"))
        // A normal value measured before the binding: the same task, no higher priority.
        _ = try await db.ingest(
            [message("g9", #"{"type":"glucose","value":110,"unit":"mg/dL","measured_at":"2024-01-01T01:00:00Z"}"#)], pipeline: pipeline)
        #expect(try db.tasks(patientID: "p1").count == 1)
        #expect(try db.tasks(patientID: "p1").first?.occurrences == 2)
    }

    @Test("an acknowledged task that gets clearly worse is open again: 182/96 acknowledged, then 230/135")
    func acknowledgedThenWorse() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([bp(182, 96, at: Date().addingTimeInterval(-3_600))], pipeline: pipeline)
        let task = try #require(try db.tasks(patientID: "p2").first)
        _ = try db.acknowledgeTask(id: task.id, by: "nurse.a")
        // 186/100: 186/180 = 1.033, not 10 % past the acknowledged 182/180 = 1.011 (1.112): stays acknowledged.
        _ = try await db.ingest([bp(186, 100, at: Date().addingTimeInterval(-3_000))], pipeline: pipeline)
        #expect(try db.task(id: task.id)?.task.status == .acknowledged)
        // 230/135: 230/180 = 1.278 ≥ 1.112, compared with what was acknowledged (182/96), not with 186/100.
        _ = try await db.ingest([bp(230, 135, at: Date().addingTimeInterval(-2_400))], pipeline: pipeline)
        let worse = try #require(try db.task(id: task.id)?.task)
        #expect(worse.status == .open)
        #expect(worse.nextEscalationAt != nil)
        #expect(worse.reason == "Worse since acknowledged (worst then: Blood pressure 182/96 mmHg): "
            + "Systolic blood pressure 230 mmHg at or above critical limit 180 mmHg; Diastolic blood pressure 135 mmHg at or above critical limit 120 mmHg")
        #expect(try db.tasks(patientID: "p2").count == 1)
    }

    @Test("an implausible value is a dead letter and a routine device task that names it; a repeat adds nothing")
    func implausibleValue() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ms = Int64((Date().timeIntervalSince1970 - 120) * 1000)
        let high = message("g1", #"{"type":"glucose","value":650,"unit":"mg/dL","measured_at":\#(ms)}"#)
        let s = try await db.ingest([high], pipeline: pipeline)
        #expect(s.readingsStored == 0)
        #expect(s.deadLetters == [.implausibleValue: 1])
        var task = try #require(try db.tasks(patientID: "p1").first)
        #expect(task.kind == .device && task.priority == .routine && task.vital == "value:g1")
        #expect(task.reason == "Device g1 sent Glucose 650 mg/dL, outside what home devices measure (glucose outside plausible range 10–600 mg/dL); "
            + "not stored or evaluated: check the device and its unit setting with the patient, and re-measure")
        // The same message again (a redelivery): no new occurrence.
        _ = try await db.ingest([high], pipeline: pipeline)
        #expect(try db.tasks(patientID: "p1").first?.occurrences == 1)
        // 110 "mmol/L" (1,982 mg/dL, F20) joins the same task, which now names it.
        let mmol = message("g1", #"{"type":"glucose","value":110,"unit":"mmol/L","measured_at":\#(ms + 60_000)}"#)
        _ = try await db.ingest([mmol], pipeline: pipeline)
        task = try #require(try db.tasks(patientID: "p1").first)
        #expect(try db.tasks(patientID: "p1").count == 1)
        #expect(task.occurrences == 2)
        #expect(task.reason.hasPrefix("Device g1 sent Glucose 110 mmol/L, outside"))
    }

    @Test("a meter's HI is a critical task of its vital; an error code a routine device task; a repeat adds nothing")
    func deviceProblems() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ms = Int64((Date().timeIntervalSince1970 - 120) * 1000)
        let hi = message("g1", #"{"type":"glucose","value":"HI","unit":"mg/dL","measured_at":\#(ms)}"#)
        let s = try await db.ingest([hi], pipeline: pipeline)
        #expect(s.readingsStored == 0)
        #expect(s.deadLetters == [.outOfMeterRange: 1])
        var tasks = try db.tasks(patientID: "p1")
        #expect(tasks.count == 1)
        #expect(tasks[0].kind == .device)
        #expect(tasks[0].vital == "glucose" && tasks[0].direction == .high && tasks[0].priority == .critical)
        #expect(tasks[0].reason == "Glucose above the measuring range of device g1 (the device showed HI instead of a value); re-measure or check by other means")
        // The same message again (a redelivery): one event, one task, no new occurrence.
        _ = try await db.ingest([hi], pipeline: pipeline)
        #expect(try db.tasks(patientID: "p1").first?.occurrences == 1)
        // A high reading of the same condition joins that task.
        _ = try await db.ingest([glucose(420, minutesAgo: 1)], pipeline: pipeline)
        tasks = try db.tasks(patientID: "p1")
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 2)
        // An error code (SFLOAT NaN, 2047) is a routine task for the device, not for the patient's glucose.
        let err = message("g1", #"{"type":"glucose","value":2047,"unit":"mg/dL","measured_at":\#(ms + 60_000)}"#)
        _ = try await db.ingest([err], pipeline: pipeline)
        let device = try #require(try db.tasks(patientID: "p1").first { $0.vital == "device:g1" })
        #expect(device.priority == .routine)
        #expect(device.kind == .device)
        // A Tenovi battery report of 12 %: a routine task once a day while it stays at or below 15 %.
        let battery = #"{"metric":"battery_percentage","hwi_device_id":"g1","value_1":"12","timestamp":"2026-11-28T10:00:00Z"}"#
        _ = try await db.ingest([IncomingMessage(topic: "vendors/tenovi", deviceID: nil, payload: Array(battery.utf8), receivedAt: Date(),
                                                 format: .tenovi, matchedSubscription: true)], pipeline: pipeline)
        #expect(try await db.openRoutineTasks(rules: BillingRules(), lowBatteryPercent: 15, now: Date()).lowBatteryTasks == 1)
        #expect(try await db.openRoutineTasks(rules: BillingRules(), lowBatteryPercent: 15, now: Date()).lowBatteryTasks == 0)
        let low = try #require(try db.tasks(patientID: "p1").first { $0.vital == "battery:g1" })
        #expect(low.reason == "Device g1 (glucometer) battery at 12 %; replace or charge it before it stops sending")
    }
}

@Suite("task notes and the task writer")
struct TaskWriterTests {
    @Test("notes are an append-only history: ack, a note without a status change, resolve; none overwrites another")
    func notes() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(45, minutesAgo: 5)], pipeline: pipeline)
        let task = try #require(try db.tasks().first)
        _ = try db.acknowledgeTask(id: task.id, by: "nurse.a", note: "calling the patient")
        let noted = try db.noteTask(id: task.id, by: "nurse.a", text: "no answer; will try at 14:00")
        #expect(noted.status == .acknowledged)
        _ = try db.resolveTask(id: task.id, by: "nurse.b", note: "ate, 110 mg/dL on re-check")
        #expect(try db.taskNotes(id: task.id).map(\.text) == [
            "calling the patient", "no answer; will try at 14:00", "ate, 110 mg/dL on re-check"])
        #expect(try db.taskNotes(id: task.id).map(\.author) == ["nurse.a", "nurse.a", "nurse.b"])
        #expect(throws: (any Error).self) { try db.writer.write { try $0.execute(sql: "UPDATE task_notes SET text = 'x'") } }
        #expect(throws: (any Error).self) { try db.writer.write { try $0.execute(sql: "DELETE FROM task_notes") } }
        #expect(throws: TaskError.self) { try db.noteTask(id: task.id, by: "nurse.a", text: " ") }
        #expect(throws: TaskError.self) { try db.noteTask(id: 999, by: "nurse.a", text: "x") }
        // Each change counted a version: opened 1 (+ confirmation pending), ack 2, resolve 3.
        #expect(try db.task(id: task.id)?.task.version == 3)
    }

    @Test("the outbox body carries the latest and worst readings with their measurement times")
    func outboxReadings() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.openDeliveryChannel("mqtt")
        let at = Date(timeIntervalSince1970: 1_772_434_800)  // 2026-03-02T07:00:00Z
        let body = #"{"type":"glucose","value":45,"unit":"mg/dL","measured_at":"2026-03-02T07:00:00Z"}"#
        _ = try await db.ingest([message("g1", body, receivedAt: at.addingTimeInterval(2))], pipeline: pipeline)
        let event = try #require(try await db.pendingEvents(channel: "mqtt", limit: 1).first)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(event.body.utf8)) as? [String: Any])
        let task = try #require(json["task"] as? [String: Any])
        let latest = try #require(task["latest"] as? [String: Any])
        #expect(latest["summary"] as? String == "Glucose 45 mg/dL")
        #expect(latest["measured_at"] as? String == "2026-03-02T07:00:00.000Z")
        #expect((task["worst"] as? [String: Any])?["summary"] as? String == "Glucose 45 mg/dL")
        #expect(json["at"] as? String == "2026-03-02T07:00:02.000Z")
        #expect(task["version"] as? Int == 1)
    }
}

@Suite("outbox times")
struct OutboxTimeTests {
    @Test("event times are UTC with the stored milliseconds (the format style truncates .120 to .119)")
    func isoMilliseconds() {
        let expected: [(Int64, String)] = [
            (0, "1970-01-01T00:00:00.000Z"), (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_772_434_800_120, "2026-03-02T07:00:00.120Z"), (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
            (1_709_164_800_001, "2024-02-29T00:00:00.001Z"), (-1, "1969-12-31T23:59:59.999Z"),
        ]
        for (ms, text) in expected {
            #expect(AppDatabase.isoMilliseconds(Date(timeIntervalSince1970: Double(ms) / 1000)) == text)
        }
    }
}

@Suite("the task writer and the caseload")
struct TaskWriterCaseloadTests {
    @Test("a new task goes to the patient's care manager; claim, reassign and reopen are versioned task events in the outbox")
    func ownerAndEvents() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/v.sqlite")
        try db.openDeliveryChannel("test", now: Date(timeIntervalSince1970: 0))
        for name in ["ana", "ben"] {
            try db.addUser(username: name, displayName: name.capitalized, role: .careManager,
                           passwordHash: "$2b$12$" + String(repeating: "a", count: 53), actor: "admin")
        }
        try db.upsertPatient(Patient(id: "p1", timezone: "UTC", programs: [.hypertension]), actor: "test")
        try db.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p1"), actor: "test")
        _ = try db.assignCareManager(patientID: "p1", username: "ana", actor: "admin")
        _ = try await db.ingest([systolic(185, minutesAgo: 2)], pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        var task = try #require(try db.tasks().first)
        #expect(task.owner == "ana")
        #expect(task.version == 1)

        // Ben claims at version 1 and wins; Ana, still looking at version 1, is told who has it.
        try await db.claimTask(id: task.id, expectedVersion: 1, by: "ben", at: Date())
        await #expect(throws: TaskOwnershipError.self) {
            try await db.claimTask(id: task.id, expectedVersion: 1, by: "ana", at: Date())
        }
        do {
            try await db.claimTask(id: task.id, expectedVersion: 1, by: "ana", at: Date())
        } catch let e as TaskOwnershipError {
            #expect(e.code == .versionConflict)
            #expect(e.owner == "ben" && e.ownerName == "Ben")
        }
        try await db.resolve(taskID: task.id, by: "ben", disposition: .contactedPatient, note: "called", time: nil, at: Date())
        task = try #require(try db.task(id: task.id)?.task)
        #expect(task.status == .resolved && task.disposition == .contactedPatient && task.version == 3)
        try await db.reopenTask(id: task.id, expectedVersion: 3, by: "ana", note: "not reached after all", at: Date())
        task = try #require(try db.task(id: task.id)?.task)
        #expect(task.status == .acknowledged && task.disposition == nil && task.owner == "ben" && task.version == 4)

        let events = try await db.pendingEvents(channel: "test", limit: 100)
        let kinds = events.compactMap { e -> String? in
            let json = try? JSONSerialization.jsonObject(with: Data(e.body.utf8)) as? [String: Any]
            return json?["event"] as? String
        }
        #expect(kinds == ["opened", "assigned", "resolved", "reopened"])
        let last = try #require(events.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] })
        let body = try #require(last["task"] as? [String: Any])
        #expect(body["owner"] as? String == "ben")
        #expect(body["version"] as? Int == 4)
        #expect(try db.taskNotes(id: task.id).map(\.text) == ["called", "not reached after all"])
    }
}
