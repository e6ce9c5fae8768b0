import Foundation
import VitalsDomain

/// The time-based alert rules, run on a timer even when no message arrives. Pure: tasks and `now` in,
/// task changes out.
public enum TimerRules {
    /// Escalates each `open` `critical` task whose escalation time has come: `escalation_level` rises
    /// by one, `escalated_at` is set, an `escalated` event is written, and the next escalation is
    /// scheduled ``AlertPolicy/escalationRepeat(after:)`` seconds later. The schedule is a field of
    /// the task, so a restart neither forgets nor repeats an escalation.
    ///
    /// The escalation reaches a person (issue 13, item 8), named in `escalated_to` and the event's
    /// detail: the first one the task's owner, or without one the patient's care manager (or, with
    /// neither, the backup); later ones ``AlertPolicy/escalationBackup`` (a user, or `role:<role>`),
    /// or whom the first reached when no backup is configured.
    ///
    /// - Parameters:
    ///   - tasks: tasks with a `nextEscalationAt` (others are ignored).
    ///   - careManagers: the active care manager of each task's patient, by patient id.
    /// - Returns: one update per escalated task, earliest due first.
    public static func escalations(
        _ tasks: [CareTask], policy: AlertPolicy, careManagers: [String: String] = [:], now: Date
    ) -> [TaskChange] {
        tasks.filter { ($0.nextEscalationAt ?? .distantFuture) <= now && $0.status == .open }
            .sorted { ($0.nextEscalationAt!, $0.id) < ($1.nextEscalationAt!, $1.id) }
            .map { task in
                var t = task
                t.escalationLevel += 1
                t.escalatedAt = now
                t.nextEscalationAt = now.addingTimeInterval(policy.escalationRepeat(after: t.escalationLevel))
                let first = t.owner ?? careManagers[t.patientID]
                t.escalatedTo = t.escalationLevel == 1
                    ? first ?? policy.escalationBackup?.target
                    : policy.escalationBackup?.target ?? t.escalatedTo ?? first
                t.updatedAt = now
                t.version += 1
                let detail = "level \(t.escalationLevel)" + (t.escalatedTo.map { " to \($0)" } ?? ", nobody to reach")
                return .update(.stored(t.id), t, TaskEventRecord(.escalated, at: now, detail: detail))
            }
    }

    /// Closes each pending confirmation whose window has passed without a re-measurement: `not_repeated`.
    public static func expiredConfirmations(_ tasks: [CareTask], now: Date) -> [TaskChange] {
        tasks.filter { $0.confirmation == .pending && ($0.confirmationDueAt ?? .distantFuture) < now }
            .sorted { $0.id < $1.id }
            .map { task in
                var t = task
                t.confirmation = .notRepeated
                t.confirmationDueAt = nil
                t.updatedAt = now
                t.version += 1
                return .update(.stored(t.id), t, TaskEventRecord(.confirmation, at: now, detail: Confirmation.notRepeated.rawValue))
            }
    }
}

/// One patient with an open RPM episode, as the routine (adherence) rules see it.
public struct AdherenceSnapshot: Sendable, Hashable {
    public struct DeviceActivity: Sendable, Hashable {
        public var deviceID: String
        /// `bp_cuff`, `scale`, …
        public var kind: String
        /// The device's last transmitted (not manual) reading, by measurement time.
        public var lastReadingAt: Date?

        public init(deviceID: String, kind: String, lastReadingAt: Date?) {
            self.deviceID = deviceID
            self.kind = kind
            self.lastReadingAt = lastReadingAt
        }
    }

    public var patientID: String
    public var timeZone: TimeZone
    public var episodeID: Int64
    public var episodeStart: LocalDate
    /// The current device period and its days of data so far, if the episode has started.
    public var period: DevicePeriod?
    public var dataDaysSoFar: Int
    /// Whether today (in the patient's zone) already has data.
    public var todayHasData: Bool
    /// The patient's last transmitted reading, by measurement time.
    public var lastReadingAt: Date?
    public var devices: [DeviceActivity]
    /// Condition keys of the patient's tasks ever raised (a timer condition is raised once, ever).
    public var raisedKeys: Set<String>
    /// The patient's unresolved tasks.
    public var unresolved: [CareTask]
    /// The patient's monitoring is paused now (hospital stay, travel): no routine task is owed.
    public var paused = false

    public init(
        patientID: String, timeZone: TimeZone, episodeID: Int64, episodeStart: LocalDate, period: DevicePeriod?,
        dataDaysSoFar: Int, todayHasData: Bool, lastReadingAt: Date?, devices: [DeviceActivity], raisedKeys: Set<String>,
        unresolved: [CareTask]
    ) {
        self.patientID = patientID
        self.timeZone = timeZone
        self.episodeID = episodeID
        self.episodeStart = episodeStart
        self.period = period
        self.dataDaysSoFar = dataDaysSoFar
        self.todayHasData = todayHasData
        self.lastReadingAt = lastReadingAt
        self.devices = devices
        self.raisedKeys = raisedKeys
        self.unresolved = unresolved
    }
}

/// A device whose latest battery report is at or below the limit.
public struct LowBattery: Sendable, Hashable {
    public var deviceID: String
    public var patientID: String
    public var kind: String
    /// Percent.
    public var percent: Double
    public var raisedKeys: Set<String>
    public var unresolved: [CareTask]

    public init(deviceID: String, patientID: String, kind: String, percent: Double, raisedKeys: Set<String>, unresolved: [CareTask]) {
        self.deviceID = deviceID
        self.patientID = patientID
        self.kind = kind
        self.percent = percent
        self.raisedKeys = raisedKeys
        self.unresolved = unresolved
    }
}

/// What one run of the routine checks opened.
public struct RoutineSummary: Sendable, Hashable {
    public var daysOfDataTasks = 0
    public var noDataTasks = 0
    /// `device` tasks for one silent device of a patient whose other devices still send.
    public var silentDeviceTasks = 0
    /// `device` tasks for a battery at or below the limit.
    public var lowBatteryTasks = 0

    public init() {}

    /// Counts the tasks that ``RoutineRules/evaluate(_:settings:now:)``'s `changes` open, by kind.
    public mutating func count(_ changes: [TaskChange]) {
        for case .open(let task, _) in changes {
            switch task.kind {
            case .daysOfData: daysOfDataTasks += 1
            case .noData: noDataTasks += 1
            case .device: silentDeviceTasks += 1
            default: break
            }
        }
    }

    /// Tasks opened in all.
    public var total: Int { daysOfDataTasks + noDataTasks + silentDeviceTasks + lowBatteryTasks }
}

/// The routine rules: adherence and device follow-up, raised by a timer. Each condition has a key
/// that the rules raise at most once, ever (restarts never repeat them).
public enum RoutineRules {
    /// The settings of the routine rules.
    public struct Settings: Sendable, Hashable {
        /// Days of data a device period needs for CPT 99454 (16, `clinical-and-billing.md` §2.2).
        public var minimumDays: Int
        /// Days of silence that make a `no_data` task (`adherence.no_data_days`, default 3).
        public var noDataDays: Int

        public init(minimumDays: Int = 16, noDataDays: Int = 3) {
            self.minimumDays = minimumDays
            self.noDataDays = noDataDays
        }
    }

    /// Whether `minimum` days of data can still be reached in a period: the days so far, the days
    /// left after today, and today unless it already has data
    /// (`days_with_data + days_remaining >= minimum`, `clinical-and-billing.md` §3.2).
    public static func reachable(_ minimum: Int, dataDays: Int, daysLeft: Int, todayHasData: Bool) -> Bool {
        BillingProgress.reachable(minimum, dataDays: dataDays, daysLeft: daysLeft, todayHasData: todayHasData)
    }

    /// The routine tasks one patient owes:
    /// - one `days_of_data` task per device period once ``Settings/minimumDays`` can no longer be reached;
    /// - one `no_data` task per silence once the patient's devices have sent nothing for
    ///   ``Settings/noDataDays`` days (since the last reading, or the episode start if none), which
    ///   also flags the patient's unresolved reading tasks as resting on stale data (F16);
    /// - otherwise one `device` task per silence of a single device while the others still send.
    ///
    /// Nothing while the patient's monitoring is paused (``AdherenceSnapshot/paused``): a patient in
    /// hospital sends nothing, and no one is to call them about it.
    public static func evaluate(_ p: AdherenceSnapshot, settings: Settings, now: Date) -> [TaskChange] {
        guard !p.paused else { return [] }
        var changes: [TaskChange] = []
        var unresolved = Set(p.unresolved.map(\.condition))
        var raised = p.raisedKeys
        func open(_ kind: TaskKind, vital: String, key: String, reason: String) -> Bool {
            let condition = TaskCondition(patientID: p.patientID, vital: vital, direction: .low)
            guard !raised.contains(key), !unresolved.contains(condition) else { return false }
            raised.insert(key)
            unresolved.insert(condition)
            var t = CareTask(patientID: p.patientID, kind: kind, vital: vital, direction: .low, priority: .routine,
                             reason: reason, now: now, conditionKey: key)
            t.version = 1
            changes.append(.open(t, TaskEventRecord(.opened, at: now, detail: kind.rawValue)))
            return true
        }
        let today = LocalDate(now, in: p.timeZone)
        if let period = p.period {
            let daysLeft = period.end.days(since: today)
            if !reachable(settings.minimumDays, dataDays: p.dataDaysSoFar, daysLeft: daysLeft, todayHasData: p.todayHasData) {
                _ = open(.daysOfData, vital: "days_of_data", key: "episode \(p.episodeID) period \(period.number)",
                         reason: "Days of data: \(settings.minimumDays) can no longer be reached in period \(period.number) (\(period.start) to \(period.end)): \(p.dataDaysSoFar) so far, \(daysLeft) days left")
            }
        }
        let since = p.lastReadingAt ?? p.episodeStart.start(in: p.timeZone)
        let silentDays = now.timeIntervalSince(since) / 86_400
        if silentDays >= Double(settings.noDataDays) {
            let lastMS = p.lastReadingAt.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) }
            let what = p.lastReadingAt.map { "since the last reading on \(LocalDate($0, in: p.timeZone))" }
                ?? "since the episode started on \(p.episodeStart)"
            let key = lastMS.map { "silent after \($0)" } ?? "silent from episode \(p.episodeID) start"
            if open(.noData, vital: "no_data", key: key, reason: "No device data for \(Int(silentDays)) days \(what)") {
                for task in p.unresolved.sorted(by: { $0.id < $1.id })
                where [.threshold, .trend].contains(task.kind) && !task.dataStale {
                    var t = task
                    t.dataStale = true
                    t.updatedAt = now
                    t.version += 1
                    changes.append(.update(.stored(t.id), t, TaskEventRecord(.dataStale, at: now, detail: "no_data")))
                }
            }
            return changes
        }
        // The patient still sends, but one of their devices may have gone quiet (a dead scale next
        // to a working cuff): one device task per silence.
        for device in p.devices.sorted(by: { $0.deviceID < $1.deviceID }) {
            let since = device.lastReadingAt ?? p.episodeStart.start(in: p.timeZone)
            let days = now.timeIntervalSince(since) / 86_400
            guard days >= Double(settings.noDataDays) else { continue }
            let last = device.lastReadingAt.map { "silent after \(Int64(($0.timeIntervalSince1970 * 1000).rounded()))" }
            let key = "device \(device.deviceID) " + (last ?? "silent from episode \(p.episodeID) start")
            _ = open(.device, vital: "device:\(device.deviceID)", key: key,
                     reason: "Device \(device.deviceID) (\(device.kind)) has sent no data for \(Int(days)) days; the patient's other devices still send")
        }
        return changes
    }

    /// One routine `device` task a day (UTC) while a device's battery stays at or below the limit
    /// (`adherence.low_battery_percent`).
    public static func lowBattery(_ b: LowBattery, now: Date) -> [TaskChange] {
        let day = LocalDate(now, in: TimeZone(identifier: "UTC")!)
        let key = "battery \(b.deviceID) low on \(day)"
        let condition = TaskCondition(patientID: b.patientID, vital: "battery:\(b.deviceID)", direction: .low)
        guard !b.raisedKeys.contains(key), !b.unresolved.contains(where: { $0.condition == condition }) else { return [] }
        var t = CareTask(
            patientID: b.patientID, kind: .device, vital: condition.vital, direction: .low, priority: .routine,
            reason: "Device \(b.deviceID) (\(b.kind)) battery at \(Observation.format(b.percent)) %; replace or charge it before it stops sending",
            now: now, conditionKey: key)
        t.version = 1
        return [.open(t, TaskEventRecord(.opened, at: now, detail: TaskKind.device.rawValue))]
    }
}

/// What one run of the alert timers changed.
public struct AlertTimerSummary: Sendable, Hashable {
    /// Tasks escalated in this run.
    public var escalated = 0
    /// Tasks escalated in this run, by the level they reached (1 for the first escalation).
    public var escalatedByLevel: [Int: Int] = [:]
    /// Ids of the tasks escalated in this run to nobody: no owner, no active care manager of the
    /// patient, and no `alerts.escalation_backup_*` (or a backup that is not enabled).
    public var unreached: [Int64] = []
    /// Pending confirmations closed as `not_repeated`.
    public var notRepeated = 0
    public init() {}

    /// The summary of a run that applied `escalations` (``TimerRules/escalations(_:policy:careManagers:now:)``)
    /// and `expired` (``TimerRules/expiredConfirmations(_:now:)``).
    public init(escalations: [TaskChange], expired: [TaskChange]) {
        escalated = escalations.count
        for case .update(_, let task, _) in escalations {
            escalatedByLevel[task.escalationLevel, default: 0] += 1
            if task.escalatedTo == nil { unreached.append(task.id) }
        }
        notRepeated = expired.count
    }
}
