import Foundation
import VitalsDomain

/// Whether a rule (a limit or a trend rule) is active for a patient: a rule becomes active when a
/// reading breaches it and clears only on recovery (hysteresis, `failure-modes.md` F13).
public struct AlertState: Sendable, Hashable {
    public var active: Bool
    /// The measurement time of the reading that activated or cleared it.
    public var since: Date
    /// The level it was activated at.
    public var level: ThresholdLevel?

    public init(active: Bool, since: Date, level: ThresholdLevel?) {
        self.active = active
        self.since = since
        self.level = level
    }
}

/// A reading just stored, waiting for the rules.
public struct NewReading: Sendable, Hashable {
    /// `readings.id`.
    public var readingID: Int64
    public var observation: Observation
    /// When vitalsd received its message.
    public var receivedAt: Date
    /// Index of its message in the batch: readings of one message measured at one instant form one
    /// occurrence (a cuff's systolic and diastolic make one blood-pressure occurrence).
    public var message: Int
    /// Position in the batch; breaks ties between equal measurement times.
    public var order: Int

    public init(readingID: Int64, observation: Observation, receivedAt: Date, message: Int, order: Int) {
        self.readingID = readingID
        self.observation = observation
        self.receivedAt = receivedAt
        self.message = message
        self.order = order
    }
}

/// A reading stored before this batch, as the rules need it: trend windows and re-measurements.
public struct StoredValue: Sendable, Hashable {
    public var readingID: Int64
    public var type: VitalType
    public var measuredAt: Date
    /// In the type's canonical unit.
    public var value: Double

    public init(readingID: Int64, type: VitalType, measuredAt: Date, value: Double) {
        self.readingID = readingID
        self.type = type
        self.measuredAt = measuredAt
        self.value = value
    }
}

/// A device event recorded for the first time (an error code, a meter's HI/LO marker).
public struct DeviceProblem: Sendable, Hashable {
    /// `device_events.id`.
    public var eventID: Int64
    public var event: DeviceEvent
    /// When its message was received.
    public var receivedAt: Date

    public init(eventID: Int64, event: DeviceEvent, receivedAt: Date) {
        self.eventID = eventID
        self.event = event
        self.receivedAt = receivedAt
    }
}

/// Readings refused because the device's clock is wrong (before 2000-01-02, or ahead of the receive
/// time by more than the allowed skew), kept only to tell a person: their values as received.
public struct ClockProblem: Sendable, Hashable {
    public var deviceID: String
    /// The refused readings, with the receive time as their time.
    public var observations: [Observation]
    public var receivedAt: Date
    /// What was wrong with the time, e.g. "measured_at is before 2000-01-02 …".
    public var detail: String

    public init(deviceID: String, observations: [Observation], receivedAt: Date, detail: String) {
        self.deviceID = deviceID
        self.observations = observations
        self.receivedAt = receivedAt
        self.detail = detail
    }
}

/// Readings of one message refused as implausible (outside what home devices measure: a unit
/// mix-up, an error code, or a real extreme beyond the device's range). They are not stored or
/// evaluated; a routine device task names them so that a person looks (clinical safety review).
public struct ImplausibleValues: Sendable, Hashable {
    public var deviceID: String
    /// Each value as received, e.g. "Glucose 650 mg/dL".
    public var values: [String]
    /// Why, e.g. "glucose outside plausible range 10–600 mg/dL".
    public var detail: String
    public var receivedAt: Date

    public init(deviceID: String, values: [String], detail: String, receivedAt: Date) {
        self.deviceID = deviceID
        self.values = values
        self.detail = detail
        self.receivedAt = receivedAt
    }
}

/// What the rules need to know about one patient, read once per batch before any reading is
/// evaluated (F15: a restart, reload or reconnect never re-raises what was raised).
public struct PatientSnapshot: Sendable, Hashable {
    public var patientID: String
    public var programs: [Program]
    /// The patient's own limits (`vitalsd threshold set`), by slot.
    public var thresholdOverrides: [ThresholdSlot: Double]
    /// The patient's changes to trend rules, by rule id.
    public var ruleOverrides: [String: RuleOverride]
    /// Each rule's state, by rule key (`limit:glucose:low`, `trend:weight_gain_7d`).
    public var states: [String: AlertState]
    /// The patient's unresolved tasks, the tasks still waiting for a re-measurement, and the latest
    /// task of each condition (resolved or not).
    public var tasks: [CareTask]
    /// Readings stored before this batch that a rule may look at: the trend windows before the
    /// batch's readings and the confirmation windows after them. Nil when not read (a patient
    /// without trend rules for the batch's types): a rule that needs it then asks for it
    /// (``AlertDecision/needsHistory``) and the caller evaluates again with it.
    public var history: [StoredValue]?
    /// The patient's monitoring pauses (hospital stay, travel), each from its start to its end or
    /// the moment it was resumed: while one runs, readings are stored and shown but raise no task.
    public var pauses: [DateInterval] = []

    public init(
        patientID: String, programs: [Program], thresholdOverrides: [ThresholdSlot: Double] = [:],
        ruleOverrides: [String: RuleOverride] = [:], states: [String: AlertState] = [:], tasks: [CareTask] = [],
        history: [StoredValue]? = []
    ) {
        self.patientID = patientID
        self.programs = programs
        self.thresholdOverrides = thresholdOverrides
        self.ruleOverrides = ruleOverrides
        self.states = states
        self.tasks = tasks
        self.history = history
    }
}

/// The clinical configuration the rules apply: limits by program and the alert policy.
public struct AlertingPolicy: Sendable, Hashable {
    public var thresholds: ThresholdPolicy
    public var alerts: AlertPolicy

    public init(thresholds: ThresholdPolicy, alerts: AlertPolicy = .clinicalDefaults) {
        self.thresholds = thresholds
        self.alerts = alerts
    }

    /// The limits in force for a patient and type (patient's own, then programs, then defaults).
    public func limits(for type: VitalType, programs: [Program], overrides: [ThresholdSlot: Double]) -> ThresholdLimits {
        thresholds.effectiveLimits(for: type, programs: programs, overrides: overrides).limits
    }

    /// The trend rules in force for a patient, with their changes applied: a rule switched off is
    /// left out, another bound replaces the configured one.
    public func trendRules(programs: [Program], overrides: [String: RuleOverride]) -> [TrendRule] {
        alerts.rules(for: programs).compactMap { rule in
            guard let o = overrides[rule.id] else { return rule }
            if o.disabled { return nil }
            var r = rule
            if let bound = o.bound { r.bound = bound }
            return r
        }
    }
}

extension AlertingPolicy {
    /// The stored readings the rules need around a batch, for the storage to read into each
    /// ``PatientSnapshot/history``: the longest trend window of the patients' rules for the batch's
    /// vital types before its earliest reading, the confirmation window after its latest.
    ///
    /// - Parameters:
    ///   - snapshots: the patients' snapshots (programs and rule changes read).
    ///   - readings: the batch's new readings by patient.
    ///   - history: the patients whose readings are wanted whatever their rules (a decision that
    ///     ``AlertDecision/needsHistory``); nil: those with trend rules for the batch's types.
    /// - Returns: the patients to read for and the span (inclusive), or nil when none is needed:
    ///   the others' history stays nil.
    public func historyRequest(
        snapshots: [String: PatientSnapshot], readings: [String: [NewReading]], history: Set<String>?
    ) -> (patients: Set<String>, from: Date, to: Date)? {
        let types = Set(readings.values.joined().map(\.observation.type))
        var windows: [String: Double] = [:]
        for (id, snapshot) in snapshots {
            let window = trendRules(programs: snapshot.programs, overrides: snapshot.ruleOverrides)
                .filter { types.contains($0.type) }.map(\.windowSeconds).max()
            if history?.contains(id) ?? (window != nil) { windows[id] = window ?? 0 }
        }
        let wanted = readings.filter { windows[$0.key] != nil }
        let times = wanted.values.joined().map(\.observation.measuredAt)
        guard let first = times.min(), let last = times.max() else { return nil }
        let window = windows.values.max() ?? 0
        return (Set(wanted.keys), first.addingTimeInterval(-window), last.addingTimeInterval(alerts.confirmationWindowSeconds))
    }
}

/// What the rules decided for one patient's batch.
public struct AlertDecision: Sendable, Hashable {
    /// Task changes, in the order they are to be applied.
    public var changes: [TaskChange] = []
    /// Rules whose state changed, with their new state.
    public var states: [String: AlertState] = [:]
    /// Tasks opened, by priority.
    public var opened: [TaskPriority: Int] = [:]
    /// Tasks raised to a higher priority, by the priority they reached.
    public var raised: [TaskPriority: Int] = [:]
    /// Existing tasks that got a new occurrence.
    public var updated = 0
    /// Breaches that opened nothing: their condition was still active and its task resolved within
    /// the re-alert window (F13).
    public var suppressed = 0
    /// Moments of late readings whose breaches went to a `late_data` review task.
    public var lateBreaches = 0
    /// The snapshot had no ``PatientSnapshot/history`` and a rule needed it (a critical task opened
    /// and its re-measurement may already be stored): evaluate again with the history; these
    /// changes must not be applied.
    public var needsHistory = false

    public init() {}
}
