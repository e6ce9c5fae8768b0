import Foundation
import Testing
import VitalsAlerting
import VitalsDomain

/// Systolic critical at 180 mmHg, clearing only below 170 (the F13 test input).
private let hysteresis = AlertingPolicy(thresholds: ThresholdPolicy(
    defaults: [.systolicBP: ThresholdLimits(criticalHigh: 180, recoveryHigh: 170)]))

@Suite("alert engine: readings in, task changes out")
struct AlertEngineTests {
    @Test("F13: 179, 181, 179, 182, 178, 181 around 180 with recovery 170 make one task; below 170 clears")
    func hysteresisAroundLimit() {
        var l = Ledger(programs: [.hypertension], policy: hysteresis)
        for (i, v) in [179.0, 181, 179, 182].enumerated() {
            l.ingest([reading(.systolicBP, v, at: t0 + minutes(Double(i)))])
        }
        #expect(l.all.count == 1)
        #expect(l.all[0].occurrences == 2)  // 181 and 182
        l.resolve(1, at: t0 + minutes(5))
        var suppressed = 0
        for (i, v) in [178.0, 181].enumerated() {
            suppressed += l.ingest([reading(.systolicBP, v, at: t0 + minutes(10 + Double(i)))]).suppressed
        }
        #expect(l.all.count == 1)
        #expect(suppressed == 1)
        // The suppressed breach shows on the resolved task.
        #expect(l.tasks[1]!.suppressedBreaches == 1)
        #expect(l.tasks[1]!.lastSuppressedAt == t0 + minutes(11))
        l.ingest([reading(.systolicBP, 165, at: t0 + minutes(20))])
        l.ingest([reading(.systolicBP, 183, at: t0 + minutes(21))])
        #expect(l.all.count == 2)
        #expect(l.open.count == 1)
    }

    @Test("a hovering warning is one task; after its resolve another warning is suppressed, a critical opens anew")
    func hoveringAndWorse() {
        var l = Ledger(programs: [.hypertension], policy: AlertingPolicy(thresholds: ThresholdPolicy(
            defaults: [.systolicBP: ThresholdLimits(criticalHigh: 180, warningHigh: 160, recoveryHigh: 150)])))
        for (i, v) in [161.0, 158, 162, 159, 163].enumerated() { l.ingest([reading(.systolicBP, v, at: t0 + minutes(Double(i)))]) }
        #expect(l.all.count == 1)
        #expect(l.all[0].occurrences == 3)
        l.resolve(1, at: t0 + minutes(6))
        #expect(l.ingest([reading(.systolicBP, 164, at: t0 + minutes(10))]).suppressed == 1)
        l.ingest([reading(.systolicBP, 185, at: t0 + minutes(11))])
        #expect(l.open.count == 1)
        #expect(l.open[0].priority == .critical)
    }

    @Test("F14: two devices breach in the same millisecond in one batch: one task with two occurrences")
    func sameMillisecond() {
        var l = Ledger(programs: [.diabetes])
        let d = l.ingest([reading(.glucose, 45, at: t0, device: "g1"), reading(.glucose, 47, at: t0, device: "g2")])
        #expect(d.opened == [.critical: 1])
        #expect(d.updated == 1)
        #expect(l.all.count == 1)
        #expect(l.all[0].occurrences == 2)
    }

    @Test("F15: readings received more than 24 h late go to one late-data review task and change no rule state")
    func lateData() {
        var l = Ledger(programs: [.diabetes])
        let received = t0 + 30 * 3_600
        let d = l.ingest([reading(.glucose, 300, at: t0), reading(.glucose, 40, at: t0 + minutes(5))], receivedAt: received)
        #expect(d.lateBreaches == 2)
        #expect(d.opened == [.warning: 1])
        #expect(l.all.map(\.kind) == [.lateData])
        #expect(l.all[0].occurrences == 2)
        #expect(l.states.isEmpty)
        #expect(l.all[0].reason.hasPrefix("Readings received more than 24 h after they were measured breached rules; review them. First: Glucose 300 mg/dL"))
        // The 40 mg/dL is critical (limit 54): the review task becomes critical and escalates after 30 min.
        #expect(d.raised == [.critical: 1])
        #expect(l.all[0].priority == .critical)
        #expect(l.all[0].status == .open)
        #expect(l.all[0].nextEscalationAt == received + 1_800)
        #expect(l.all[0].worst?.summary == "Glucose 40 mg/dL")
        #expect(l.all[0].reason.contains("critical: Glucose 40 mg/dL measured at 2026-03-02T10:05:00Z"))
    }

    @Test("F22: a device clock reset to a plausible past date: its critical value opens a critical review task at once")
    func clockResetToPastDate() {
        var l = Ledger(programs: [.hypertension])
        // The cuff's clock jumped back to 2024-01-01 after a battery change; the reading is current.
        let measured = Date(timeIntervalSince1970: 1_704_067_200)
        let d = l.ingest([reading(.systolicBP, 192, at: measured)], receivedAt: t0)
        #expect(d.opened == [.critical: 1])
        #expect(l.all.map(\.kind) == [.lateData])
        #expect(l.all[0].nextEscalationAt == t0 + 1_800)
        #expect(l.all[0].confirmation == nil)
        #expect(l.states.isEmpty)
        // A late warning alone stays a warning.
        var w = Ledger(programs: [.hypertension])
        #expect(w.ingest([reading(.systolicBP, 165, at: measured)], receivedAt: t0).opened == [.warning: 1])
        #expect(w.all[0].nextEscalationAt == nil)
    }

    @Test("issue 5: a task shows its latest and its worst reading with their measurement times")
    func latestAndWorst() {
        var l = Ledger(programs: [.hypertension])
        // 165 → 170 → 178 → 176 mmHg: warning (≥ 160) each time.
        let values: [Double] = [165, 170, 178, 176]
        for (i, v) in values.enumerated() {
            l.ingest([reading(.systolicBP, v, at: t0 - 18 * 3_600 + Double(i) * 3 * 3_600)], receivedAt: t0)
        }
        let t = l.all[0]
        #expect(t.occurrences == 4)
        #expect(t.reason == "Systolic blood pressure 165 mmHg at or above warning limit 160 mmHg")
        #expect(t.latest?.summary == "Systolic blood pressure 176 mmHg")
        #expect(t.latest?.measuredAt == t0 - 9 * 3_600)
        #expect(t.worst?.summary == "Systolic blood pressure 178 mmHg")
        #expect(t.worst?.measuredAt == t0 - 12 * 3_600)
    }

    @Test("a blood-pressure task shows both halves: a systolic breach with its diastolic, and the reverse")
    func bloodPressurePair() {
        var l = Ledger(programs: [.hypertension])
        l.ingest([reading(.systolicBP, 184, at: t0), reading(.diastolicBP, 92, at: t0)], sameMessage: true)
        #expect(l.all.count == 1)
        #expect(l.all[0].latest?.summary == "Blood pressure 184/92 mmHg")
        #expect(l.all[0].reason == "Systolic blood pressure 184 mmHg at or above critical limit 180 mmHg")
        // A diastolic breach (122 ≥ 120) with a normal systolic, from another cuff at the same instant:
        // the first cuff's values are not mixed in.
        l.ingest([reading(.systolicBP, 150, at: t0 + 60, device: "d2"), reading(.diastolicBP, 122, at: t0 + 60, device: "d2"),
                  reading(.systolicBP, 186, at: t0 + 60, device: "d1")], sameMessage: true)
        #expect(l.all[0].latest?.summary == "Blood pressure 150/122 mmHg, Systolic blood pressure 186 mmHg")
        // A systolic sent alone keeps its own name.
        l.ingest([reading(.systolicBP, 188, at: t0 + 120)])
        #expect(l.all[0].latest?.summary == "Systolic blood pressure 188 mmHg")
    }

    @Test("issue 4: after a resolve, 262 is suppressed but shown on the task; 399 is clearly worse and opens a new task")
    func worseAfterResolve() {
        var l = Ledger(programs: [.diabetes])
        l.ingest([reading(.glucose, 260, at: t0)])
        l.resolve(1, at: t0 + minutes(10))
        let a = l.ingest([reading(.glucose, 262, at: t0 + minutes(30))])
        #expect(a.suppressed == 1)
        #expect(l.all.count == 1)
        #expect(l.tasks[1]!.suppressedBreaches == 1)
        #expect(l.tasks[1]!.latest?.summary == "Glucose 262 mg/dL")
        // 399 / 260 is 53 % further past the limit than what the resolver saw (more than 10 %).
        let b = l.ingest([reading(.glucose, 399, at: t0 + minutes(40))])
        #expect(b.opened == [.warning: 1])
        #expect(l.open.count == 1)
        #expect(l.open[0].reason == "Worse than when task #1 was resolved (worst then: Glucose 260 mg/dL): Glucose 399 mg/dL at or above warning limit 250 mg/dL")
        // 286 is exactly 10 % above 260: the boundary counts as clearly worse.
        var m = Ledger(programs: [.diabetes])
        m.ingest([reading(.glucose, 260, at: t0)])
        m.resolve(1, at: t0 + minutes(10))
        #expect(m.ingest([reading(.glucose, 285, at: t0 + minutes(30))]).suppressed == 1)
        #expect(m.ingest([reading(.glucose, 286.1, at: t0 + minutes(31))]).opened == [.warning: 1])
    }

    @Test("a worse reading raises a warning task to critical and reopens it when acknowledged")
    func raiseToCritical() {
        var l = Ledger(programs: [.diabetes])
        l.ingest([reading(.glucose, 65, at: t0)])
        l.apply(try! TaskActions.acknowledge(l.tasks[1]!, by: "nurse.a", note: nil, at: t0 + minutes(1)))
        let d = l.ingest([reading(.glucose, 50, at: t0 + minutes(5))])
        #expect(d.raised == [.critical: 1])
        let t = l.tasks[1]!
        #expect(t.priority == .critical)
        #expect(t.status == .open)
        #expect(t.confirmation == .pending)
        #expect(t.nextEscalationAt == t0 + minutes(5) + 5 + minutes(30))
        #expect(l.events(of: 1) == ["opened", "acknowledged", "priority_raised"])
    }

    @Test("confirmation: a re-measurement within 15 min confirms (still critical) or not; none: not_repeated at 15 min")
    func confirmation() {
        var l = Ledger(programs: [.hypertension])
        l.ingest([reading(.systolicBP, 185, at: t0), reading(.diastolicBP, 125, at: t0)], sameMessage: true)
        #expect(l.tasks[1]!.confirmation == .pending)
        l.ingest([reading(.systolicBP, 183, at: t0 + 120), reading(.diastolicBP, 118, at: t0 + 120)], sameMessage: true)
        #expect(l.tasks[1]!.confirmation == .confirmed)  // 183 mmHg is still ≥ 180
        l.resolve(1, at: t0 + 300)
        l.ingest([reading(.systolicBP, 120, at: t0 + 600), reading(.diastolicBP, 80, at: t0 + 600)], sameMessage: true)
        l.ingest([reading(.systolicBP, 190, at: t0 + 1_200), reading(.diastolicBP, 100, at: t0 + 1_200)], sameMessage: true)
        l.ingest([reading(.systolicBP, 165, at: t0 + 1_380), reading(.diastolicBP, 95, at: t0 + 1_380)], sameMessage: true)
        #expect(l.open[0].confirmation == .notConfirmed)
        l.resolve(l.open[0].id, at: t0 + 1_400)
        l.ingest([reading(.systolicBP, 120, at: t0 + 1_500)])
        l.ingest([reading(.systolicBP, 181, at: t0 + 1_800)])
        let third = l.open[0]
        #expect(TimerRules.expiredConfirmations(Array(l.tasks.values), now: t0 + 1_800 + 899).isEmpty)
        let expired = TimerRules.expiredConfirmations(Array(l.tasks.values), now: t0 + 1_800 + 901)
        #expect(expired.count == 1)
        l.apply(expired)
        #expect(l.tasks[third.id]!.confirmation == .notRepeated)
    }

    @Test("issue 6: a re-measurement measured after the crisis but received before it settles the confirmation")
    func confirmationByMeasurementTime() {
        var l = Ledger(programs: [.hypertension])
        let now = t0 + minutes(30)
        l.ingest([reading(.systolicBP, 122, at: t0), reading(.diastolicBP, 78, at: t0)], receivedAt: now, sameMessage: true)
        l.ingest([reading(.systolicBP, 124, at: t0 + minutes(10)), reading(.diastolicBP, 79, at: t0 + minutes(10))],
                 receivedAt: now, sameMessage: true)
        // The delayed crisis, measured at −25 min.
        l.ingest([reading(.systolicBP, 188, at: t0 + minutes(5)), reading(.diastolicBP, 122, at: t0 + minutes(5))],
                 receivedAt: now + 1, sameMessage: true)
        let t = l.open[0]
        #expect(t.priority == .critical)
        #expect(t.confirmation == .notConfirmed)
        #expect(TimerRules.expiredConfirmations(Array(l.tasks.values), now: now + 3_600).isEmpty)
        // Out of order within one batch, too.
        var m = Ledger(programs: [.hypertension])
        m.ingest([reading(.systolicBP, 188, at: t0 + minutes(5)), reading(.systolicBP, 124, at: t0 + minutes(10))], receivedAt: now)
        #expect(m.open[0].confirmation == .notConfirmed)
    }

    @Test("without the stored readings a new critical task asks for them; a warning does not")
    func asksForHistory() {
        var l = Ledger(programs: [.diabetes])
        var snapshot = l.snapshot
        snapshot.history = nil
        let warning = NewReading(readingID: 1, observation: reading(.glucose, 65, at: t0), receivedAt: t0, message: 0, order: 0)
        #expect(!AlertEngine.evaluate(readings: [warning], snapshot: snapshot, policy: defaults, now: t0).needsHistory)
        let critical = NewReading(readingID: 2, observation: reading(.glucose, 45, at: t0), receivedAt: t0, message: 0, order: 0)
        #expect(AlertEngine.evaluate(readings: [critical], snapshot: snapshot, policy: defaults, now: t0).needsHistory)
        l.ingest([reading(.glucose, 45, at: t0)])
        #expect(!l.last.needsHistory)
    }

    @Test("escalation: after 30 min unacknowledged, then every 30 min until acknowledged; never twice for one step")
    func escalation() {
        var l = Ledger(programs: [.diabetes])
        l.ingest([reading(.glucose, 45, at: t0)], receivedAt: t0)
        l.ingest([reading(.glucose, 300, at: t0 + 1)], receivedAt: t0 + 1)  // a warning never escalates
        let policy = defaults.alerts
        func run(_ m: Double) -> Int {
            let changes = TimerRules.escalations(Array(l.tasks.values), policy: policy, now: t0 + minutes(m))
            l.apply(changes)
            return changes.count
        }
        #expect(run(29) == 0)
        #expect(run(31) == 1)
        #expect(run(31) == 0)
        #expect(run(60) == 0)
        #expect(run(62) == 1)
        #expect(l.tasks[1]!.escalationLevel == 2)
        l.apply(try! TaskActions.acknowledge(l.tasks[1]!, by: "nurse.a", note: nil, at: t0 + minutes(70)))
        #expect(run(200) == 0)
        #expect(l.events(of: 1).filter { $0 == "escalated" }.count == 2)
        #expect(l.tasks[2]!.escalationLevel == 0)
    }

    @Test("heart failure: 2.5 kg over 5 days with a missed day opens one weight-gain task")
    func heartFailureWeights() {
        var l = Ledger(programs: [.heartFailure])
        for (day, kg) in [(0.0, 80.0), (1, 80.5), (2, 81.0), (4, 82.0), (5, 82.5)] {
            l.ingest([reading(.bodyWeight, kg, at: t0 + day * 86_400)])
        }
        #expect(l.all.count == 1)
        #expect(l.all[0].kind == .trend)
        #expect(l.all[0].vital == "body_weight")
        #expect(l.all[0].priority == .warning)
        #expect(l.all[0].reason == "Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days")
        // With the patient's bound at 3 kg the same rise opens nothing.
        var m = Ledger(programs: [.heartFailure])
        m.ruleOverrides["weight_gain_7d"] = RuleOverride(bound: 3, disabled: false)
        for (day, kg) in [(0.0, 80.0), (1, 80.5), (2, 81.0), (4, 82.0), (5, 82.5)] {
            m.ingest([reading(.bodyWeight, kg, at: t0 + day * 86_400)])
        }
        #expect(m.all.isEmpty)
    }

    @Test("average and count rules open trend tasks merged with the condition")
    func averageAndCount() {
        let policy = AlertingPolicy(thresholds: .clinicalDefaults, alerts: AlertPolicy(programRules: [
            .hypertension: [TrendRule(id: "sbp_mean_7d", kind: .average, type: .systolicBP, direction: .high,
                                      windowSeconds: 7 * 86_400, bound: 150, minimumCount: 3)],
            .diabetes: [TrendRule(id: "lows_7d", kind: .count, type: .glucose, direction: .low,
                                  windowSeconds: 7 * 86_400, bound: 80, minimumCount: 3)],
        ]))
        var l = Ledger(programs: [.hypertension], policy: policy)
        for (i, v) in [148.0, 152, 155].enumerated() { l.ingest([reading(.systolicBP, v, at: t0 + Double(i) * 3_600)]) }
        #expect(l.all.count == 1)
        #expect(l.all[0].reason == "Systolic blood pressure mean 151.7 mmHg over 7 days; rule sbp_mean_7d: Systolic blood pressure mean over 7 days ≥ 150 mmHg")
        var g = Ledger(programs: [.diabetes], policy: policy)
        for (i, v) in [78.0, 120, 75].enumerated() { g.ingest([reading(.glucose, v, at: t0 + minutes(Double(i)))]) }
        #expect(g.all.isEmpty)
        g.ingest([reading(.glucose, 79, at: t0 + minutes(10))])
        #expect(g.all.count == 1)
        #expect(g.all[0].reason == "3 Glucose readings below 80 mg/dL within 7 days; rule lows_7d: 3 Glucose readings < 80 mg/dL within 7 days")
    }

    @Test("a meter's LO received 30 h after it was measured is still critical, and says it came late")
    func lateMarker() {
        let l = Ledger(programs: [.diabetes])
        let lo = DeviceEvent(deviceID: "g1", kind: .belowRange, type: .glucose, measuredAt: t0 - 30 * 3_600, code: "LO")
        let d = AlertEngine.evaluate(readings: [], deviceProblems: [DeviceProblem(eventID: 3, event: lo, receivedAt: t0)],
                                     snapshot: l.snapshot, policy: defaults, now: t0)
        #expect(d.opened == [.critical: 1])
        guard case .open(let t, _) = d.changes.first else { Issue.record("no task opened"); return }
        #expect(t.reason.hasSuffix("re-measure or check by other means (received late, measured 2026-03-01T04:00:00Z; if the device's clock is wrong, it is current)"))
        #expect(t.nextEscalationAt == t0 + 1_800)
    }

    @Test("a meter's HI is a critical task of its vital that a high reading joins; an error code a routine device task")
    func deviceProblems() {
        var l = Ledger(programs: [.diabetes])
        let hi = DeviceEvent(deviceID: "g1", kind: .aboveRange, type: .glucose, measuredAt: t0, code: "HI")
        let d = AlertEngine.evaluate(readings: [], deviceProblems: [DeviceProblem(eventID: 7, event: hi, receivedAt: t0)],
                                     snapshot: l.snapshot, policy: defaults, now: t0)
        l.apply(d.changes)
        #expect(d.opened == [.critical: 1])
        #expect(l.all[0].vital == "glucose" && l.all[0].direction == .high && l.all[0].kind == .device)
        #expect(l.all[0].reason == "Glucose above the measuring range of device g1 (the device showed HI instead of a value); re-measure or check by other means")
        l.ingest([reading(.glucose, 420, at: t0 + 60)])
        #expect(l.all.count == 1)
        #expect(l.all[0].occurrences == 2)
        let err = DeviceEvent(deviceID: "g1", kind: .deviceError, type: .glucose, measuredAt: t0 + 120, code: "2047")
        let e = AlertEngine.evaluate(readings: [], deviceProblems: [DeviceProblem(eventID: 8, event: err, receivedAt: t0 + 120)],
                                     snapshot: l.snapshot, policy: defaults, now: t0 + 120)
        l.apply(e.changes)
        let device = l.all.first { $0.vital == "device:g1" }
        #expect(device?.priority == .routine)
        #expect(device?.conditionKey == "event 8")
    }

    @Test("a LO marker joins a critical low task and keeps its readings; acknowledged, a clearly worse value opens it again")
    func markerAndWorseAfterAcknowledgement() {
        var l = Ledger(programs: [.diabetes])
        l.ingest([reading(.glucose, 50, at: t0)])
        let lo = DeviceEvent(deviceID: "g1", kind: .belowRange, type: .glucose, measuredAt: t0 + 60, code: "LO")
        l.apply(AlertEngine.evaluate(readings: [], deviceProblems: [DeviceProblem(eventID: 9, event: lo, receivedAt: t0 + 65)],
                                     snapshot: l.snapshot, policy: defaults, now: t0 + 65).changes)
        #expect(l.all.count == 1)
        #expect(l.all[0].latest?.readingID == 1)
        #expect(l.all[0].reason.hasSuffix("; then Glucose below the meter's range (LO) at 2026-03-02T10:01:00Z"))
        // Acknowledged at 50 mg/dL (severity 54/50 = 1.08): 48 (1.125 < 1.08 × 1.1 = 1.188) leaves it
        // acknowledged; 45 (1.2) opens it again, compared with what was acknowledged, not with 48.
        l.apply(try! TaskActions.acknowledge(l.tasks[1]!, by: "nurse.a", note: nil, at: t0 + 300))
        #expect(l.tasks[1]!.acknowledgedWorst?.summary == "Glucose 50 mg/dL")
        l.ingest([reading(.glucose, 48, at: t0 + 600)], now: t0 + 605)
        #expect(l.tasks[1]!.status == .acknowledged)
        l.ingest([reading(.glucose, 45, at: t0 + 1_200)], now: t0 + 1_205)
        #expect(l.tasks[1]!.status == .open)
        #expect(l.tasks[1]!.nextEscalationAt == t0 + 1_205 + minutes(30))
        #expect(l.tasks[1]!.reason == "Worse since acknowledged (worst then: Glucose 50 mg/dL): Glucose 45 mg/dL below critical limit 54 mg/dL")
        #expect(l.events.last?.event.detail == "critical, worse: open again")
    }

    @Test("implausible values: one routine task per device naming them; a later message adds an occurrence")
    func implausible() {
        var l = Ledger(programs: [.copd])
        let first = ImplausibleValues(deviceID: "ox1", values: ["SpO2 85 %"], detail: "spo2 outside plausible range 50–100 %", receivedAt: t0)
        var d = AlertEngine.evaluate(readings: [], implausibleValues: [first], snapshot: l.snapshot, policy: defaults, now: t0)
        l.apply(d.changes)
        #expect(d.opened == [.routine: 1])
        #expect(l.all[0].vital == "value:ox1" && l.all[0].kind == .device && l.all[0].nextEscalationAt == nil)
        #expect(l.all[0].conditionKey == "implausible ox1 1772445600000")
        #expect(l.all[0].reason == "Device ox1 sent SpO2 85 %, outside what home devices measure (spo2 outside plausible range 50–100 %); "
            + "not stored or evaluated: check the device and its unit setting with the patient, and re-measure")
        let second = ImplausibleValues(deviceID: "ox1", values: ["SpO2 84 %"], detail: "spo2 outside plausible range 50–100 %", receivedAt: t0 + 60)
        d = AlertEngine.evaluate(readings: [], implausibleValues: [second], snapshot: l.snapshot, policy: defaults, now: t0 + 60)
        l.apply(d.changes)
        #expect(l.all.count == 1)
        #expect(l.all[0].occurrences == 2)
        #expect(l.all[0].reason.hasPrefix("Device ox1 sent SpO2 84 %"))
    }

    @Test("issue 3: glucose 41 from a device whose clock reads 2000-01-01 opens a critical clock task naming the value")
    func wrongClock() {
        var l = Ledger(programs: [.diabetes])
        var o = reading(.glucose, 41, at: t0)
        o.timeSource = .receivedAt
        let problem = ClockProblem(deviceID: "g1", observations: [o], receivedAt: t0, detail: "measured_at is before 2000-01-02")
        let d = AlertEngine.evaluate(readings: [], clockProblems: [problem], snapshot: l.snapshot, policy: defaults, now: t0)
        l.apply(d.changes)
        let t = try! #require(l.all.first)
        #expect(t.priority == .critical)
        #expect(t.kind == .device)
        #expect(t.vital == "clock:g1")
        #expect(t.nextEscalationAt == t0 + minutes(30))
        #expect(t.reason == "Device g1's clock is wrong (measured_at is before 2000-01-02); its readings are refused until the clock is set. Worst value, received 2026-03-02T10:00:00Z: Glucose 41 mg/dL below critical limit 54 mg/dL")
        // Normal values with a wrong clock: a routine task that still names them.
        var m = Ledger(programs: [.diabetes])
        let normal = ClockProblem(deviceID: "g1", observations: [reading(.glucose, 110, at: t0)], receivedAt: t0, detail: "x")
        m.apply(AlertEngine.evaluate(readings: [], clockProblems: [normal], snapshot: m.snapshot, policy: defaults, now: t0).changes)
        #expect(m.all[0].priority == .routine)
        #expect(m.all[0].reason.hasSuffix("Values, received 2026-03-02T10:00:00Z: Glucose 110 mg/dL"))
    }

    @Test("F16: a new reading clears the stale flag of the patient's open tasks")
    func staleClears() {
        var l = Ledger(programs: [.diabetes])
        l.ingest([reading(.glucose, 45, at: t0)])
        l.tasks[1]!.dataStale = true
        let d = l.ingest([reading(.glucose, 45, at: t0 + 86_400)])
        #expect(l.tasks[1]!.dataStale == false)
        #expect(d.changes.count == 2)  // the flag, then the occurrence
    }
}

@Suite("routine rules and task actions")
struct RoutineRuleTests {
    let utc = TimeZone(identifier: "UTC")!

    func snapshot(start: LocalDate, days: Int, today: Bool, last: Date?, devices: [AdherenceSnapshot.DeviceActivity] = [],
                  unresolved: [CareTask] = [], keys: Set<String> = [], now: Date) -> AdherenceSnapshot {
        let period = BillingRules().devicePeriods(episodeStart: start, episodeEnd: nil, through: LocalDate(now, in: utc)).last
        return AdherenceSnapshot(patientID: "p1", timeZone: utc, episodeID: 4, episodeStart: start, period: period,
                                 dataDaysSoFar: days, todayHasData: today, lastReadingAt: last, devices: devices,
                                 raisedKeys: keys, unresolved: unresolved)
    }

    @Test("days of data: the minimum (16) out of reach opens one task per period; reachable opens none")
    func daysOfData() {
        // Period 1: 2026-03-01..2026-03-30; on 2026-03-20 (10 days left after today) with 5 days so far:
        // 5 + 10 + 1 (today) = 16 is still reachable; with 4 it is not.
        let now = Date(timeIntervalSince1970: 1_773_997_200)  // 2026-03-20T09:00:00Z
        let start = LocalDate("2026-03-01")!
        #expect(RoutineRules.evaluate(snapshot(start: start, days: 5, today: false, last: now - 3_600, now: now),
                                      settings: .init(), now: now).isEmpty)
        let changes = RoutineRules.evaluate(snapshot(start: start, days: 4, today: false, last: now - 3_600, now: now),
                                            settings: .init(), now: now)
        guard case .open(let t, _) = changes.first else { Issue.record("no task"); return }
        #expect(t.kind == .daysOfData)
        #expect(t.conditionKey == "episode 4 period 1")
        #expect(t.reason == "Days of data: 16 can no longer be reached in period 1 (2026-03-01 to 2026-03-30): 4 so far, 10 days left")
        // A lower configured minimum (12) is reachable with the same 4 days.
        #expect(RoutineRules.evaluate(snapshot(start: start, days: 4, today: false, last: now - 3_600, now: now),
                                      settings: .init(minimumDays: 12), now: now).isEmpty)
        // Raised once, ever.
        #expect(RoutineRules.evaluate(snapshot(start: start, days: 4, today: false, last: now - 3_600, keys: ["episode 4 period 1"], now: now),
                                      settings: .init(), now: now).isEmpty)
    }

    @Test("no data: 4 silent days open one no-data task and flag the open high task stale; the hour does not matter")
    func noData() {
        let start = LocalDate("2026-03-01")!
        var open = CareTask(patientID: "p1", kind: .threshold, vital: "glucose", direction: .high, priority: .critical,
                            reason: "x", now: t0)
        open.id = 9
        open.version = 3
        for hour in [0.5, 2.5, 7.5, 23.5] {
            // The last reading at 07:00 UTC on 2026-03-02; now 4 days later at any hour of that day.
            let last = Date(timeIntervalSince1970: 1_772_434_800)
            let now = last + 4 * 86_400 - 7 * 3_600 + hour * 3_600
            let changes = RoutineRules.evaluate(snapshot(start: start, days: 2, today: false, last: last, unresolved: [open], now: now),
                                                settings: .init(minimumDays: 2, noDataDays: 3), now: now)
            guard case .open(let t, _) = changes.first, case .update(_, let stale, let e) = changes.last else {
                Issue.record("expected a task and a stale flag at \(hour) h"); continue
            }
            #expect(t.kind == .noData)
            #expect(t.reason.hasPrefix("No device data for \(hour < 7 ? 3 : 4) days since the last reading on 2026-03-02"))
            #expect(stale.dataStale && stale.version == 4)
            #expect(e?.kind == .dataStale)
        }
    }

    @Test("a silent device next to a working one gets its own routine task, once; a low battery one a day")
    func silentDeviceAndBattery() {
        let now = t0 + 10 * 86_400
        let devices = [AdherenceSnapshot.DeviceActivity(deviceID: "s2", kind: "scale", lastReadingAt: now - 5 * 86_400),
                       AdherenceSnapshot.DeviceActivity(deviceID: "c1", kind: "bp_cuff", lastReadingAt: now - 3_600)]
        let changes = RoutineRules.evaluate(snapshot(start: LocalDate("2026-03-01")!, days: 9, today: true, last: now - 3_600,
                                                     devices: devices, now: now), settings: .init(minimumDays: 2), now: now)
        guard case .open(let t, _) = changes.first else { Issue.record("no task"); return }
        #expect(changes.count == 1)
        #expect(t.reason == "Device s2 (scale) has sent no data for 5 days; the patient's other devices still send")
        let battery = RoutineRules.lowBattery(LowBattery(deviceID: "g1", patientID: "p1", kind: "glucometer", percent: 12,
                                                         raisedKeys: [], unresolved: []), now: now)
        guard case .open(let b, _) = battery.first else { Issue.record("no battery task"); return }
        #expect(b.reason == "Device g1 (glucometer) battery at 12 %; replace or charge it before it stops sending")
        #expect(RoutineRules.lowBattery(LowBattery(deviceID: "g1", patientID: "p1", kind: "glucometer", percent: 12,
                                                   raisedKeys: [b.conditionKey!], unresolved: []), now: now).isEmpty)
    }

    @Test("acknowledge, resolve and note: status rules, notes kept apart, versions counted")
    func actions() throws {
        var t = CareTask(patientID: "p1", kind: .threshold, vital: "glucose", direction: .low, priority: .critical, reason: "x", now: t0)
        t.id = 3
        t.version = 1
        t.nextEscalationAt = t0 + minutes(30)
        let ack = try TaskActions.acknowledge(t, by: "nurse.a", note: "called the patient", at: t0 + 60)
        guard case .update(_, let acked, let event) = ack[0], case .note(_, let note) = ack[1] else { Issue.record("shape"); return }
        #expect(acked.status == .acknowledged && acked.nextEscalationAt == nil && acked.version == 2)
        #expect(event?.actor == "nurse.a")
        #expect(note.text == "called the patient")
        #expect(throws: TaskError.self) { try TaskActions.acknowledge(acked, by: "nurse.b", note: nil, at: t0 + 120) }
        #expect(throws: TaskError.self) { try TaskActions.resolve(acked, by: " ", note: nil, at: t0 + 120) }
        let only = try TaskActions.note(acked, by: "nurse.b", text: "no answer", at: t0 + 180)
        #expect(only.count == 1)
        #expect(throws: TaskError.self) { try TaskActions.note(acked, by: "nurse.b", text: "  ", at: t0 + 180) }
    }
}
