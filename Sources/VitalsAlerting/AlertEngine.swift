import Foundation
import VitalsDomain

/// The clinical rules applied to a patient's new readings: state and readings in, task changes out.
/// No I/O and no clock: the caller passes the snapshot it read and `now`, and applies what comes back.
///
/// - Readings are evaluated in measurement-time order, also when a batch brings them out of order.
/// - Limits and trend rules keep a state per rule (``AlertState``): a rule becomes active when a
///   reading breaches it and clears only on recovery (below `recovery_high`, F13).
/// - A condition (patient, vital, direction) has at most one unresolved task (F14); a breach adds
///   an occurrence to it, and a worse one raises it to `critical` and puts it back to `open`.
///   Without one, a breach opens a task when a rule has just become active, when its level is above
///   that of the condition's last task, or when that task was resolved more than
///   ``AlertPolicy/realertAfterSeconds`` ago. Otherwise it is suppressed and counted on the resolved
///   task, unless it is clearly worse (``AlertPolicy/realertWorseningPercent``) than the worst
///   reading that task showed the care manager who resolved it: then it opens a new task.
/// - Breaches of late readings (received more than ``AlertPolicy/lateAfterSeconds`` after they were
///   measured, F15) go to one `late_data` review task per patient and change no rule state; it is
///   critical (and escalates) once one of them is critical, since a reset device clock makes current
///   values look late (F22).
/// - A `critical` task waits ``AlertPolicy/confirmationWindowSeconds`` for a re-measurement, also one
///   measured after it but received before it (issue: confirmation by measurement time), and is
///   escalated after ``AlertPolicy/escalationAfterSeconds`` unless acknowledged (``TimerRules``).
/// - While the patient's monitoring is paused (``PatientSnapshot/pauses``), and for readings measured
///   during a pause, the rules raise and change nothing: the readings are only stored.
public struct AlertEngine {
    /// Evaluates one patient's new readings, new device events and refused readings of a device
    /// with a wrong clock.
    ///
    /// - Parameters:
    ///   - readings: readings of `snapshot.patientID` stored in this batch.
    ///   - deviceProblems: device events of this patient recorded for the first time.
    ///   - clockProblems: messages of this patient's devices refused for a wrong device clock.
    ///   - implausibleValues: readings of this patient's devices refused as implausible.
    ///   - snapshot: the patient's state before the batch.
    ///   - policy: limits and alert rules.
    ///   - now: the time the batch is evaluated (from the daemon's clock).
    /// - Returns: the task changes and rule states to store, and counts for metrics.
    public static func evaluate(
        readings: [NewReading], deviceProblems: [DeviceProblem] = [], clockProblems: [ClockProblem] = [],
        implausibleValues: [ImplausibleValues] = [],
        snapshot: PatientSnapshot, policy: AlertingPolicy, now: Date
    ) -> AlertDecision {
        var engine = AlertEngine(snapshot: snapshot, policy: policy, now: now, batch: readings)
        // A paused patient (issue 14, item 7): nothing evaluated while a pause runs, and nothing
        // measured during one, so that no task opens or changes and no rule changes state.
        func paused(_ instant: Date) -> Bool { snapshot.pauses.contains { $0.start <= instant && instant < $0.end } }
        if paused(now) { return engine.decision }
        engine.evaluate(readings.filter { !paused($0.observation.measuredAt) })
        for problem in deviceProblems where !paused(problem.event.measuredAt ?? problem.receivedAt) { engine.raise(problem) }
        for problem in clockProblems { engine.raise(problem) }
        for problem in implausibleValues { engine.raise(problem) }
        return engine.decision
    }

    // MARK: Working state

    let patientID: String
    let programs: [Program]
    let overrides: [ThresholdSlot: Double]
    let policy: AlertingPolicy
    let now: Date
    let rules: [TrendRule]
    var states: [String: AlertState]
    var tasks: [TaskRef: CareTask] = [:]
    var unresolved: [TaskCondition: TaskRef] = [:]
    var lastTask: [TaskCondition: TaskRef] = [:]
    /// Readings stored before the batch plus the batch's own, by type.
    var values: [VitalType: [StoredValue]] = [:]
    let historyIDs: Set<Int64>
    let historyLoaded: Bool
    var limitsCache: [VitalType: ThresholdLimits] = [:]
    var staleCleared = false
    var decision = AlertDecision()

    init(snapshot: PatientSnapshot, policy: AlertingPolicy, now: Date, batch: [NewReading]) {
        patientID = snapshot.patientID
        programs = snapshot.programs
        overrides = snapshot.thresholdOverrides
        self.policy = policy
        self.now = now
        rules = policy.trendRules(programs: snapshot.programs, overrides: snapshot.ruleOverrides)
        states = snapshot.states
        for task in snapshot.tasks.sorted(by: { $0.id < $1.id }) {
            let ref = TaskRef.stored(task.id)
            tasks[ref] = task
            if task.status != .resolved { unresolved[task.condition] = ref }
            lastTask[task.condition] = ref
        }
        historyLoaded = snapshot.history != nil
        historyIDs = Set((snapshot.history ?? []).map(\.readingID))
        for v in snapshot.history ?? [] { values[v.type, default: []].append(v) }
        for r in batch where !historyIDs.contains(r.readingID) {
            let o = r.observation
            values[o.type, default: []].append(
                StoredValue(readingID: r.readingID, type: o.type, measuredAt: o.measuredAt, value: o.canonicalValue))
        }
    }

    mutating func limits(_ type: VitalType) -> ThresholdLimits {
        if let cached = limitsCache[type] { return cached }
        let l = policy.limits(for: type, programs: programs, overrides: overrides)
        limitsCache[type] = l
        return l
    }

    // MARK: Readings

    /// The breaches of one condition at one instant.
    struct Group {
        var condition: TaskCondition
        var kind: TaskKind
        var level: ThresholdLevel
        var reasons: [(ThresholdLevel, String)] = []
        var newlyActive = false
        var rules: [String] = []
        /// The breaching readings' values, in the order found.
        var values: [String] = []
        var firstReadingID: Int64
        var measuredAt: Date
        var severity: Double

        var reason: String { reasons.sorted { $0.0 > $1.0 }.map(\.1).joined(separator: "; ") }

        var reading: TaskReading {
            TaskReading(readingID: firstReadingID, summary: values.joined(separator: ", "), measuredAt: measuredAt,
                        severity: severity, level: level)
        }
    }

    mutating func evaluate(_ readings: [NewReading]) {
        let sorted = readings.sorted {
            ($0.observation.measuredAt, $0.order) < ($1.observation.measuredAt, $1.order)
        }
        var i = 0
        while i < sorted.count {
            var j = i + 1
            while j < sorted.count && sorted[j].message == sorted[i].message
                && sorted[j].observation.measuredAt == sorted[i].observation.measuredAt {
                j += 1
            }
            moment(Array(sorted[i..<j]))
            i = j
        }
    }

    mutating func moment(_ entries: [NewReading]) {
        let late = entries.contains { policy.alerts.isLate(measuredAt: $0.observation.measuredAt, receivedAt: $0.receivedAt) }
        if !late && !staleCleared {
            staleCleared = true
            clearStale()
        }
        if !late { checkConfirmations(entries) }

        var groups: [Group] = []
        func add(_ condition: TaskCondition, _ kind: TaskKind, _ level: ThresholdLevel, _ reason: String, _ entry: NewReading,
                 severity: Double, newly: Bool, rule: String) {
            let o = entry.observation
            let value = Self.describe(o, in: entries)
            if let k = groups.firstIndex(where: { $0.condition == condition }) {
                if (level, severity) > (groups[k].level, groups[k].severity) {
                    groups[k].level = level
                    groups[k].severity = severity
                }
                groups[k].reasons.append((level, reason))
                groups[k].newlyActive = groups[k].newlyActive || newly
                groups[k].rules.append(rule)
                if !groups[k].values.contains(value) { groups[k].values.append(value) }
                if kind == .threshold { groups[k].kind = .threshold }
            } else {
                groups.append(Group(
                    condition: condition, kind: kind, level: level, reasons: [(level, reason)], newlyActive: newly,
                    rules: [rule], values: [value], firstReadingID: entry.readingID, measuredAt: o.measuredAt,
                    severity: severity))
            }
        }

        for entry in entries {
            let o = entry.observation
            let limits = limits(o.type)
            let breach = ThresholdEvaluator.evaluate(o, against: limits)
            for direction in ThresholdDirection.allCases {
                let rule = Self.limitRule[o.type]![direction == .high ? 0 : 1]
                let condition = TaskCondition(patientID: patientID, vital: o.type.taskVital, direction: direction)
                if let breach, breach.direction == direction {
                    let newly = late ? false : activate(rule, level: breach.level, at: o.measuredAt)
                    add(condition, .threshold, breach.level, breach.reason, entry, severity: Self.severity(breach),
                        newly: newly, rule: rule)
                } else if !late, ThresholdEvaluator.recovers(o.canonicalValue, direction: direction, limits: limits) {
                    recover(rule, condition: condition, at: o.measuredAt, readingID: entry.readingID)
                }
            }
            for rule in rules where rule.type == o.type {
                if !historyLoaded { decision.needsHistory = true }
                let key = "trend:\(rule.id)"
                let condition = TaskCondition(patientID: patientID, vital: rule.type.taskVital, direction: rule.direction)
                let window = (values[o.type] ?? []).map { WindowReading(measuredAt: $0.measuredAt, value: $0.value) }
                if let trend = TrendEvaluator.evaluate(rule, o, window: window) {
                    let newly = late ? false : activate(key, level: rule.level, at: o.measuredAt)
                    add(condition, .trend, rule.level, trend.reason, entry, severity: Self.severity(trend), newly: newly, rule: key)
                } else if !late {
                    recover(key, condition: condition, at: o.measuredAt, readingID: entry.readingID)
                }
            }
        }
        guard !groups.isEmpty else { return }
        if late {
            lateDataTask(groups)
            return
        }
        for group in groups { apply(group) }
    }

    /// The state key of each limit rule, by type, high then low: `limit:glucose:high`.
    static let limitRule: [VitalType: [String]] = Dictionary(uniqueKeysWithValues: VitalType.allCases.map { type in
        (type, [ThresholdDirection.high, .low].map { "limit:\(type.rawValue):\($0.rawValue)" })
    })

    /// "Systolic blood pressure 178 mmHg": a reading's value for a task's latest/worst.
    static func describe(_ o: Observation) -> String {
        "\(o.type.displayName) \(Observation.format(o.canonicalValue)) \(o.type.canonicalUnit.display)"
    }

    /// A reading's value for a task's latest/worst, with the other half of a blood pressure that the
    /// same device measured at the same instant: "Blood pressure 182/95 mmHg", so that a care manager
    /// sees the diastolic of a systolic breach (and the reverse) without opening the chart.
    static func describe(_ o: Observation, in moment: [NewReading]) -> String {
        let other: VitalType
        switch o.type {
        case .systolicBP: other = .diastolicBP
        case .diastolicBP: other = .systolicBP
        default: return describe(o)
        }
        guard let companion = moment.first(where: { $0.observation.type == other && $0.observation.deviceID == o.deviceID })?.observation
        else { return describe(o) }
        let (sys, dia) = o.type == .systolicBP ? (o, companion) : (companion, o)
        return "Blood pressure \(Observation.format(sys.canonicalValue))/\(Observation.format(dia.canonicalValue)) \(o.type.canonicalUnit.display)"
    }

    /// How far past its limit a breach lies: value ÷ limit (high), limit ÷ value (low).
    static func severity(_ b: Breach) -> Double {
        let v = b.observation.canonicalValue
        guard v > 0, b.limit > 0 else { return 1 }
        return b.direction == .high ? v / b.limit : b.limit / v
    }

    static func severity(_ t: TrendBreach) -> Double {
        let bound = t.rule.kind == .count ? Double(t.rule.minimumCount) : t.rule.bound
        guard bound > 0, t.measured > 0 else { return 1 }
        return t.rule.direction == .low && t.rule.kind == .average ? bound / t.measured : t.measured / bound
    }

    // MARK: State

    /// Marks a rule active. - Returns: true when it was not active before (a new condition).
    mutating func activate(_ rule: String, level: ThresholdLevel, at: Date) -> Bool {
        if let s = states[rule] {
            if s.active { return false }
            // A reading older than the recovery it follows is history: it raises, but does not reactivate.
            if at < s.since { return true }
        }
        let state = AlertState(active: true, since: at, level: level)
        states[rule] = state
        decision.states[rule] = state
        return true
    }

    /// Clears an active rule, and tells the condition's unresolved task.
    mutating func recover(_ rule: String, condition: TaskCondition, at: Date, readingID: Int64) {
        guard var s = states[rule], s.active, at >= s.since else { return }
        s.active = false
        s.since = at
        states[rule] = s
        decision.states[rule] = s
        if let ref = unresolved[condition], let task = tasks[ref] {
            update(ref, task, TaskEventRecord(.recovered, at: now, readingID: readingID, detail: rule))
        }
    }

    // MARK: Tasks

    /// Records the next value of a task (version + 1) and the change that writes it.
    mutating func update(_ ref: TaskRef, _ task: CareTask, _ event: TaskEventRecord?) {
        var t = task
        t.version += 1
        tasks[ref] = t
        decision.changes.append(.update(ref, t, event))
    }

    /// Opens a task for its condition; it becomes the condition's unresolved and latest task.
    mutating func open(_ task: CareTask, _ event: TaskEventRecord) {
        var t = task
        t.version = 1
        let ref = TaskRef.new(t.condition)
        tasks[ref] = t
        unresolved[t.condition] = ref
        lastTask[t.condition] = ref
        decision.changes.append(.open(t, event))
        decision.opened[t.priority, default: 0] += 1
    }

    /// A new reading: the patient's open tasks no longer rest on stale data (F16).
    mutating func clearStale() {
        for (_, ref) in unresolved.sorted(by: { $0.key.vital < $1.key.vital || ($0.key.vital == $1.key.vital && $0.key.direction.rawValue < $1.key.direction.rawValue) }) {
            guard var t = tasks[ref], t.dataStale else { continue }
            t.dataStale = false
            update(ref, t, nil)
        }
    }

    mutating func apply(_ group: Group) {
        let c = group.condition
        let priority = TaskPriority(group.level)
        if let ref = unresolved[c], var t = tasks[ref] {
            t.occurrences += 1
            t.updatedAt = now
            let acknowledgedWorst = t.acknowledgedWorst ?? t.worst
            if group.measuredAt >= (t.latest?.measuredAt ?? .distantPast) { t.latest = group.reading }
            if Self.isWorse(group.reading, than: t.worst) { t.worst = group.reading }
            if t.status == .acknowledged, priority == t.priority, let shown = acknowledgedWorst, clearlyWorse(group, than: shown) {
                // Clearly worse than anything the task showed when it was acknowledged (the same
                // measure as the re-alert after a resolution): back to open, escalated again if critical.
                t.reason = "Worse since acknowledged (worst then: \(shown.summary)): \(group.reason)"
                reopenWorse(&t)
                update(ref, t, TaskEventRecord(.updated, at: now, readingID: group.firstReadingID, detail: "\(group.level.rawValue), worse: open again"))
                decision.updated += 1
                return
            }
            if priority > t.priority && priority == .critical {
                t.priority = .critical
                t.status = .open
                t.reason = group.reason
                scheduleCritical(&t, measuredAt: group.measuredAt)
                update(ref, t, TaskEventRecord(.priorityRaised, at: now, readingID: group.firstReadingID, detail: group.level.rawValue))
                decision.raised[.critical, default: 0] += 1
                settleAtOpen(ref)
            } else {
                update(ref, t, TaskEventRecord(.updated, at: now, readingID: group.firstReadingID, detail: group.level.rawValue))
            }
            decision.updated += 1
            return
        }
        var reason = group.reason
        if !group.newlyActive, let ref = lastTask[c], var last = tasks[ref] {
            let resolvedAt = last.resolvedAt ?? now
            let quiet = now.timeIntervalSince(resolvedAt) < policy.alerts.realertAfterSeconds
            if quiet && priority <= last.priority {
                guard let shown = last.worst, clearlyWorse(group, than: shown) else {
                    // Suppressed (F13): visible on the resolved task, counted per rule.
                    decision.suppressed += 1
                    last.suppressedBreaches += 1
                    last.lastSuppressedAt = max(last.lastSuppressedAt ?? .distantPast, group.measuredAt)
                    if group.measuredAt >= (last.latest?.measuredAt ?? .distantPast) { last.latest = group.reading }
                    update(ref, last, nil)
                    return
                }
                reason = "Worse than when task #\(last.id) was resolved (worst then: \(shown.summary)): \(reason)"
            }
        }
        var t = CareTask(patientID: patientID, kind: group.kind, vital: c.vital, direction: c.direction, priority: priority,
                         reason: reason, now: now)
        t.firstReadingID = group.firstReadingID
        t.latest = group.reading
        t.worst = group.reading
        if priority == .critical { scheduleCritical(&t, measuredAt: group.measuredAt) }
        open(t, TaskEventRecord(.opened, at: now, readingID: group.firstReadingID, detail: group.level.rawValue))
        if priority == .critical { settleAtOpen(.new(c)) }
    }

    /// An acknowledged task that got clearly worse goes back to `open`, so that the worklist shows it
    /// again; a critical one waits for acknowledgement (and escalates) anew.
    func reopenWorse(_ t: inout CareTask) {
        t.status = .open
        t.acknowledgedWorst = nil
        if t.priority == .critical { t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds) }
    }

    /// A new critical task (or one raised to critical) waits for acknowledgement and for a re-measurement.
    func scheduleCritical(_ t: inout CareTask, measuredAt: Date) {
        t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds)
        t.confirmation = .pending
        t.confirmationDueAt = measuredAt.addingTimeInterval(policy.alerts.confirmationWindowSeconds)
    }

    /// Whether a breach is clearly worse than the worst reading a resolved task showed: a higher
    /// level, or the same level at least ``AlertPolicy/realertWorseningPercent`` further past the limit.
    func clearlyWorse(_ group: Group, than shown: TaskReading) -> Bool {
        if let level = shown.level, group.level != level { return group.level > level }
        return group.severity >= shown.severity * (1 + policy.alerts.realertWorseningPercent / 100)
    }

    static func isWorse(_ a: TaskReading, than b: TaskReading?) -> Bool {
        guard let b else { return true }
        let la = a.level ?? .warning
        let lb = b.level ?? .warning
        return la != lb ? la > lb : a.severity > b.severity
    }

    /// Gathers the breaches of late readings into the patient's one `late_data` review task.
    ///
    /// Its priority is `warning`, or `critical` as soon as one late breach is critical: a critical
    /// value that nobody saw is shown at the top and escalates, whatever its age, because a device
    /// whose clock was reset to a plausible past date (F22) sends current values that only look late,
    /// and an old one still calls for a call to the patient. Late readings change no rule state (F15).
    mutating func lateDataTask(_ groups: [Group]) {
        let hours = Observation.format(policy.alerts.lateAfterSeconds / 3_600)
        let first = groups[0]
        let worst = groups.dropFirst().reduce(first) { Self.isWorse($1.reading, than: $0.reading) ? $1 : $0 }
        let critical = worst.level == .critical
        let criticalNote = "; critical: \(worst.reading.summary) measured at \(Self.iso(worst.measuredAt)), "
            + "received late (if the device's clock is wrong, it is current): call the patient"
        let condition = TaskCondition(patientID: patientID, vital: "late_data", direction: .high)
        decision.lateBreaches += 1
        if let ref = unresolved[condition], var t = tasks[ref] {
            t.occurrences += 1
            t.updatedAt = now
            if first.measuredAt >= (t.latest?.measuredAt ?? .distantPast) { t.latest = first.reading }
            if Self.isWorse(worst.reading, than: t.worst) { t.worst = worst.reading }
            if critical && t.priority < .critical {
                t.priority = .critical
                t.status = .open
                t.reason += criticalNote
                t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds)
                update(ref, t, TaskEventRecord(.priorityRaised, at: now, readingID: worst.firstReadingID, detail: "late_data critical"))
                decision.raised[.critical, default: 0] += 1
            } else {
                update(ref, t, TaskEventRecord(.updated, at: now, readingID: first.firstReadingID, detail: "late_data"))
            }
            decision.updated += 1
            return
        }
        var t = CareTask(
            patientID: patientID, kind: .lateData, vital: condition.vital, direction: .high, priority: critical ? .critical : .warning,
            reason: "Readings received more than \(hours) h after they were measured breached rules; review them. First: \(first.reason)"
                + (critical ? criticalNote : ""),
            now: now)
        t.firstReadingID = first.firstReadingID
        t.latest = first.reading
        t.worst = worst.reading
        // No confirmation: the re-measurement window of a late reading has passed.
        if critical { t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds) }
        open(t, TaskEventRecord(.opened, at: now, readingID: first.firstReadingID, detail: "late_data"))
    }

    /// Settles the patient's pending confirmations that these readings fall within: a
    /// re-measurement still at the critical level confirms, one below it does not.
    mutating func checkConfirmations(_ entries: [NewReading]) {
        let window = policy.alerts.confirmationWindowSeconds
        for (ref, task) in tasks.sorted(by: { $0.value.id < $1.value.id }) where task.confirmation == .pending {
            guard let due = task.confirmationDueAt else { continue }
            let repeats = entries.filter {
                let at = $0.observation.measuredAt
                return $0.observation.type.taskVital == task.vital && at > due.addingTimeInterval(-window) && at <= due
            }
            guard let first = repeats.first else { continue }
            let confirmed = repeats.contains { isCritical($0.observation.type, $0.observation.canonicalValue, task.direction) }
            settle(ref, confirmed: confirmed, readingID: first.readingID)
        }
    }

    /// A critical task just opened (or raised) may already have its re-measurement stored: one
    /// measured after it within the window but received before it (issue: confirmation by measurement time).
    mutating func settleAtOpen(_ ref: TaskRef) {
        guard let task = tasks[ref], task.confirmation == .pending, let due = task.confirmationDueAt else { return }
        guard historyLoaded else {
            decision.needsHistory = true
            return
        }
        let start = due.addingTimeInterval(-policy.alerts.confirmationWindowSeconds)
        let repeats = values.values.joined().filter {
            historyIDs.contains($0.readingID) && $0.type.taskVital == task.vital && $0.measuredAt > start && $0.measuredAt <= due
        }.sorted { ($0.measuredAt, $0.readingID) < ($1.measuredAt, $1.readingID) }
        guard let first = repeats.first else { return }
        let confirmed = repeats.contains { isCritical($0.type, $0.value, task.direction) }
        settle(ref, confirmed: confirmed, readingID: first.readingID)
    }

    mutating func isCritical(_ type: VitalType, _ value: Double, _ direction: ThresholdDirection) -> Bool {
        guard let limit = limits(type)[.critical, direction] else { return false }
        return direction == .high ? value >= limit : value < limit
    }

    mutating func settle(_ ref: TaskRef, confirmed: Bool, readingID: Int64) {
        guard var t = tasks[ref] else { return }
        let result: Confirmation = confirmed ? .confirmed : .notConfirmed
        t.confirmation = result
        t.confirmationDueAt = nil
        t.updatedAt = now
        update(ref, t, TaskEventRecord(.confirmation, at: now, readingID: readingID, detail: result.rawValue))
    }

    // MARK: Device problems

    /// Turns a device event into a task.
    ///
    /// - A meter's HI or LO marker (`above_range`, `below_range`) for a known vital is a `critical`
    ///   task of that vital's condition (glucose above the meter's range is above any limit): it joins
    ///   an unresolved glucose-high task, raising it to `critical`, or opens one. Late, it is still
    ///   critical, as a late critical reading is (a value nobody saw, or a clock that is wrong); its
    ///   reason says it was received late.
    /// - An error code, or a marker for an unknown vital, is a `routine` task for the device
    ///   (`device:<id>`, `high`), one unresolved per device; repeats add occurrences.
    mutating func raise(_ problem: DeviceProblem) {
        let e = problem.event
        let late = e.measuredAt.map { policy.alerts.isLate(measuredAt: $0, receivedAt: problem.receivedAt) } ?? false
        let vital: String
        let direction: ThresholdDirection
        let priority: TaskPriority
        let reason: String
        var latest: TaskReading?
        if let type = e.type, e.kind != .deviceError {
            let above = e.kind == .aboveRange
            vital = type.taskVital
            direction = above ? .high : .low
            priority = .critical
            reason = "\(type.displayName) \(above ? "above" : "below") the measuring range of device \(e.deviceID) "
                + "(the device showed \(above ? "HI" : "LO") instead of a value); re-measure or check by other means"
                + (late ? " (received late, measured \(Self.iso(e.measuredAt ?? problem.receivedAt)); if the device's clock is wrong, it is current)" : "")
            latest = TaskReading(
                readingID: nil, summary: "\(type.displayName) \(above ? "above" : "below") the meter's range (\(above ? "HI" : "LO"))",
                measuredAt: e.measuredAt ?? problem.receivedAt, severity: 1, level: nil)
        } else {
            vital = "device:\(e.deviceID)"
            direction = .high
            priority = .routine
            reason = "Device \(e.deviceID) reported an error (\(e.code))\(e.type.map { " while measuring \($0.displayName.lowercased())" } ?? ""); check the device with the patient"
        }
        let condition = TaskCondition(patientID: patientID, vital: vital, direction: direction)
        if let ref = unresolved[condition], var t = tasks[ref] {
            t.occurrences += 1
            t.updatedAt = now
            if let latest {
                if t.kind.restsOnReadings {
                    // A threshold or trend task keeps its readings (the schema requires them, and the
                    // chart links them); the marker, past any value, is named in the reason once.
                    let note = "; then \(latest.summary) at \(Self.iso(latest.measuredAt))"
                    if !t.reason.contains(latest.summary) { t.reason += note }
                } else if latest.measuredAt >= (t.latest?.measuredAt ?? .distantPast) {
                    t.latest = latest
                }
            }
            var event = TaskEventKind.updated
            var detail = e.kind.rawValue
            if priority == .critical && t.priority != .critical {
                t.status = .open
                t.reason = reason
                t.priority = .critical
                t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds)
                event = .priorityRaised
                decision.raised[.critical, default: 0] += 1
            } else if priority == .critical && t.status == .acknowledged {
                // Beyond the meter's range is worse than the values the task was acknowledged with.
                reopenWorse(&t)
                detail += ", worse: open again"
            } else if priority == .warning && t.priority == .routine {
                t.priority = .warning
                decision.raised[.warning, default: 0] += 1
            }
            update(ref, t, TaskEventRecord(event, at: now, detail: detail))
            decision.updated += 1
            return
        }
        var t = CareTask(patientID: patientID, kind: .device, vital: vital, direction: direction, priority: priority,
                         reason: reason, now: now, conditionKey: "event \(problem.eventID)")
        t.latest = latest
        if priority == .critical { t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds) }
        open(t, TaskEventRecord(.opened, at: now, detail: e.kind.rawValue))
    }

    /// Values refused as implausible: one routine `device` task per device (`value:<id>`) that names
    /// them; a further message adds an occurrence and names its values instead.
    mutating func raise(_ problem: ImplausibleValues) {
        let condition = TaskCondition(patientID: patientID, vital: "value:\(problem.deviceID)", direction: .high)
        let reason = "Device \(problem.deviceID) sent \(problem.values.joined(separator: ", ")), outside what home devices measure "
            + "(\(problem.detail)); not stored or evaluated: check the device and its unit setting with the patient, and re-measure"
        if let ref = unresolved[condition], var t = tasks[ref] {
            t.occurrences += 1
            t.updatedAt = now
            t.reason = reason
            update(ref, t, TaskEventRecord(.updated, at: now, detail: "implausible_value"))
            decision.updated += 1
            return
        }
        let t = CareTask(patientID: patientID, kind: .device, vital: condition.vital, direction: .high, priority: .routine,
                         reason: reason, now: now,
                         conditionKey: "implausible \(problem.deviceID) \(Int64((problem.receivedAt.timeIntervalSince1970 * 1000).rounded()))")
        open(t, TaskEventRecord(.opened, at: now, detail: "implausible_value"))
    }

    /// A device whose clock is wrong sent readings that were refused (their time is unknown): one
    /// `device` task per device (`clock:<id>`), naming the worst value received. Its priority is that
    /// of the worst breach among the values (critical pages and escalates), else `routine`.
    mutating func raise(_ problem: ClockProblem) {
        var worst: (level: ThresholdLevel, severity: Double, breach: Breach)?
        for o in problem.observations {
            guard let b = ThresholdEvaluator.evaluate(o, against: limits(o.type)) else { continue }
            let s = Self.severity(b)
            if worst == nil || (b.level, s) > (worst!.level, worst!.severity) { worst = (b.level, s, b) }
        }
        let priority = worst.map { TaskPriority($0.level) } ?? .routine
        let shown = worst.map { Self.describe($0.breach.observation) }
            ?? problem.observations.map(Self.describe).joined(separator: ", ")
        let reading = TaskReading(readingID: nil, summary: shown, measuredAt: problem.receivedAt,
                                  severity: worst?.severity ?? 0, level: worst?.level)
        let when = "received \(Self.iso(problem.receivedAt))"
        let reason = "Device \(problem.deviceID)'s clock is wrong (\(problem.detail)); its readings are refused until the clock is set. "
            + (worst.map { "Worst value, \(when): \($0.breach.reason)" } ?? "Values, \(when): \(shown)")
        let condition = TaskCondition(patientID: patientID, vital: "clock:\(problem.deviceID)", direction: .high)
        if let ref = unresolved[condition], var t = tasks[ref] {
            t.occurrences += 1
            t.updatedAt = now
            t.latest = reading
            var event = TaskEventKind.updated
            if Self.isWorse(reading, than: t.worst) {
                t.worst = reading
                t.reason = reason
            }
            if priority > t.priority {
                if priority == .critical {
                    t.status = .open
                    t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds)
                    event = .priorityRaised
                }
                t.priority = priority
                decision.raised[priority, default: 0] += 1
            }
            update(ref, t, TaskEventRecord(event, at: now, detail: "clock_wrong"))
            decision.updated += 1
            return
        }
        var t = CareTask(patientID: patientID, kind: .device, vital: condition.vital, direction: .high, priority: priority,
                         reason: reason, now: now,
                         conditionKey: "clock \(problem.deviceID) \(Int64((problem.receivedAt.timeIntervalSince1970 * 1000).rounded()))")
        t.latest = reading
        t.worst = reading
        if priority == .critical { t.nextEscalationAt = now.addingTimeInterval(policy.alerts.escalationAfterSeconds) }
        open(t, TaskEventRecord(.opened, at: now, detail: "clock_wrong"))
    }

    /// An instant as `2026-11-28T13:10:05Z`.
    static func iso(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }
}
