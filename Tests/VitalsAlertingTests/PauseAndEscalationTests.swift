import Foundation
import Testing
import VitalsAlerting
import VitalsDomain

@Suite("monitoring pauses and whom escalations reach")
struct PauseAndEscalationTests {
    @Test("a paused patient's breaches open and change nothing; after the pause the same breach opens a task")
    func pausedPatient() {
        var l = Ledger(programs: [.diabetes])
        // Paused from t0 for one day.
        l.pauses = [DateInterval(start: t0, end: t0 + 86_400)]
        let during = l.ingest([reading(.glucose, 45, at: t0 + minutes(10))])
        #expect(during.changes.isEmpty)
        #expect(during.states.isEmpty)
        #expect(l.tasks.isEmpty)
        // Measured during the pause, received after it (late upload after a hospital stay): nothing either.
        let late = l.ingest([reading(.glucose, 40, at: t0 + minutes(20))], receivedAt: t0 + 86_400 + 60)
        #expect(late.changes.isEmpty)
        // Measured and evaluated after the pause: a critical low opens a task, as for any patient.
        l.ingest([reading(.glucose, 45, at: t0 + 86_400 + 120)])
        #expect(l.open.count == 1)
        #expect(l.open.first?.priority == .critical)
        // A reading measured before the pause but evaluated while it runs raises nothing.
        var m = Ledger(programs: [.diabetes])
        m.pauses = [DateInterval(start: t0, end: t0 + 3_600)]
        #expect(m.ingest([reading(.glucose, 45, at: t0 - 60)], receivedAt: t0 + 60, now: t0 + 60).changes.isEmpty)
    }

    @Test("a paused patient owes no routine task: 10 silent days and 16 days out of reach open nothing")
    func pausedRoutine() {
        let utc = TimeZone(identifier: "UTC")!
        let start = LocalDate("2026-03-01")!
        let now = Date(timeIntervalSince1970: 1_773_997_200)  // 2026-03-20T09:00:00Z
        var p = AdherenceSnapshot(
            patientID: "p1", timeZone: utc, episodeID: 4, episodeStart: start,
            period: BillingRules().devicePeriods(episodeStart: start, episodeEnd: nil, through: LocalDate(now, in: utc)).last,
            dataDaysSoFar: 2, todayHasData: false, lastReadingAt: now - 10 * 86_400, devices: [], raisedKeys: [], unresolved: [])
        // Not paused: a days-of-data task and a no-data task (2 + 10 + 1 < 16; 10 silent days ≥ 3).
        #expect(RoutineRules.evaluate(p, settings: .init(), now: now).count == 2)
        p.paused = true
        #expect(RoutineRules.evaluate(p, settings: .init(), now: now).isEmpty)
    }

    @Test("the first escalation reaches the owner, or the care manager; later ones the backup user or role")
    func escalationTargets() {
        var policy = defaults
        policy.alerts.escalationBackup = .role("clinician")
        var l = Ledger(programs: [.diabetes], policy: policy)
        l.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        // No owner: the first escalation (30 min) reaches the patient's care manager.
        func run(_ m: Double, careManagers: [String: String] = ["p1": "rn.cara"]) -> [TaskChange] {
            let changes = TimerRules.escalations(Array(l.tasks.values), policy: l.policy.alerts, careManagers: careManagers, now: t0 + minutes(m))
            l.apply(changes)
            return changes
        }
        #expect(run(29).isEmpty)
        #expect(run(30).count == 1)
        #expect(l.tasks[1]!.escalatedTo == "rn.cara")
        #expect(l.events.last?.event.detail == "level 1 to rn.cara")
        // 30 min later: the backup role.
        #expect(run(60).count == 1)
        #expect(l.tasks[1]!.escalationLevel == 2)
        #expect(l.tasks[1]!.escalatedTo == "role:clinician")
        #expect(l.events.last?.event.detail == "level 2 to role:clinician")

        // A task with an owner: the owner first, even when the patient has a care manager; a backup user next.
        policy.alerts.escalationBackup = .user("dr.lee")
        var o = Ledger(programs: [.diabetes], policy: policy)
        o.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        o.tasks[1]!.owner = "rn.owen"
        o.apply(TimerRules.escalations(Array(o.tasks.values), policy: policy.alerts, careManagers: ["p1": "rn.cara"], now: t0 + minutes(30)))
        #expect(o.tasks[1]!.escalatedTo == "rn.owen")
        o.apply(TimerRules.escalations(Array(o.tasks.values), policy: policy.alerts, careManagers: ["p1": "rn.cara"], now: t0 + minutes(60)))
        #expect(o.tasks[1]!.escalatedTo == "dr.lee")

        // Nobody (no owner, no care manager): the backup at once; no backup either: nobody, said so.
        var n = Ledger(programs: [.diabetes], policy: policy)
        n.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        n.apply(TimerRules.escalations(Array(n.tasks.values), policy: policy.alerts, now: t0 + minutes(30)))
        #expect(n.tasks[1]!.escalatedTo == "dr.lee")
        var z = Ledger(programs: [.diabetes])
        z.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        z.apply(TimerRules.escalations(Array(z.tasks.values), policy: defaults.alerts, now: t0 + minutes(30)))
        #expect(z.tasks[1]!.escalatedTo == nil)
        #expect(z.events.last?.event.detail == "level 1, nobody to reach")
        // Without a backup, later escalations stay with whom the first reached.
        var w = Ledger(programs: [.diabetes])
        w.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        w.apply(TimerRules.escalations(Array(w.tasks.values), policy: defaults.alerts, careManagers: ["p1": "rn.cara"], now: t0 + minutes(30)))
        w.apply(TimerRules.escalations(Array(w.tasks.values), policy: defaults.alerts, careManagers: ["p1": "rn.cara"], now: t0 + minutes(60)))
        #expect(w.tasks[1]!.escalationLevel == 2 && w.tasks[1]!.escalatedTo == "rn.cara")
    }
}
