import Foundation

/// The state of a task in the care manager's queue: `open` → `acknowledged` → `resolved`.
/// Vocabulary follows FHIR Task status where it fits (`requested`/`accepted`/`completed`).
public enum TaskStatus: String, Sendable, CaseIterable, Codable, Hashable {
    case open
    case acknowledged
    case resolved

    /// The FHIR R4 Task status: `requested`, `accepted` or `completed`.
    public var fhirStatus: String {
        switch self {
        case .open: "requested"
        case .acknowledged: "accepted"
        case .resolved: "completed"
        }
    }
}

/// How urgent a task is: `critical` (red flag, act now), `warning` (yellow flag, review), `routine`
/// (timers: adherence, silent devices). The one priority type of tasks; ordered routine < warning < critical.
public enum TaskPriority: String, Sendable, CaseIterable, Codable, Hashable, Comparable {
    case routine
    case warning
    case critical

    /// The priority of a threshold or trend breach of `level`.
    public init(_ level: ThresholdLevel) {
        self = level == .critical ? .critical : .warning
    }

    /// The FHIR R4 Task priority: `stat`, `urgent` or `routine`.
    public var fhirPriority: String {
        switch self {
        case .critical: "stat"
        case .warning: "urgent"
        case .routine: "routine"
        }
    }

    private var rank: Int {
        switch self {
        case .routine: 0
        case .warning: 1
        case .critical: 2
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// What raised a task.
public enum TaskKind: String, Sendable, CaseIterable, Codable, Hashable {
    /// A reading breached a threshold.
    case threshold
    /// A trend rule breached: change, average or count over a window.
    case trend
    /// Late readings (device memory, a backlog) breached rules; one review task per patient.
    case lateData = "late_data"
    /// 16 days of data can no longer be reached in the current device period.
    case daysOfData = "days_of_data"
    /// The patient's devices have sent nothing for the configured number of days.
    case noData = "no_data"
    /// A device reported a problem: an error code, a value beyond the meter's range, a low battery, a wrong clock.
    case device

    /// Whether a task of this kind rests on stored readings (its first and latest reading ids are
    /// required by the schema): `threshold`, `trend` and `late_data`.
    public var restsOnReadings: Bool { self == .threshold || self == .trend || self == .lateData }
}

/// What happened to a task, as recorded in `task_events` and delivered to other systems.
public enum TaskEventKind: String, Sendable, CaseIterable, Codable, Hashable {
    case opened
    /// A further breach of the condition (an occurrence), or a late reading added to a review task.
    case updated
    /// A worse breach raised the priority to `critical`; the task is `open` again.
    case priorityRaised = "priority_raised"
    case escalated
    case acknowledged
    case resolved
    /// The condition's rule cleared (a reading past the recovery bound).
    case recovered
    /// A re-measurement settled (or the window closed on) a critical task's confirmation.
    case confirmation
    /// The patient's devices fell silent while the task was unresolved.
    case dataStale = "data_stale"
    /// A person claimed the task, or gave it to someone (detail: the new owner's user name, or `none`).
    case assigned
    /// A person reopened a resolved task (it becomes `acknowledged`).
    case reopened
}

/// Why a task was resolved, chosen from a fixed list when resolving in the workspace (the
/// dispositions care-management platforms record; `workspace-and-interop.md`).
public enum TaskDisposition: String, Sendable, Hashable, Codable, CaseIterable {
    case contactedPatient = "contacted_patient"
    case advisedEmergencyCare = "advised_emergency_care"
    case notifiedProvider = "notified_provider"
    case medicationAdjustedByProvider = "medication_adjusted_by_provider"
    case deviceProblem = "device_problem"
    case notActionable = "not_actionable"

    /// The words a care manager reads in the list.
    public var label: String {
        switch self {
        case .contactedPatient: "Contacted patient"
        case .advisedEmergencyCare: "Advised emergency care"
        case .notifiedProvider: "Notified provider"
        case .medicationAdjustedByProvider: "Medication adjusted by provider"
        case .deviceProblem: "Device problem"
        case .notActionable: "Not actionable"
        }
    }
}

/// One reading a task points at, with what a care manager needs to judge it without opening it:
/// the values and when they were measured.
public struct TaskReading: Sendable, Hashable, Codable {
    /// The stored reading (`readings.id`), when there is one (a meter's HI marker has none).
    public var readingID: Int64?
    /// The values, e.g. "Systolic blood pressure 178 mmHg" or "Glucose 41 mg/dL".
    public var summary: String
    /// When the device measured it (not when it arrived).
    public var measuredAt: Date
    /// How far past its limit the reading lies, for comparing two readings of one condition: the
    /// value divided by the limit (high) or the limit divided by the value (low); 1 at the limit.
    public var severity: Double
    /// The level of the breach it showed; nil for a reading that breached no limit or rule.
    public var level: ThresholdLevel?

    public init(readingID: Int64?, summary: String, measuredAt: Date, severity: Double, level: ThresholdLevel? = nil) {
        self.readingID = readingID
        self.summary = summary
        self.measuredAt = measuredAt
        self.severity = severity
        self.level = level
    }

    enum CodingKeys: String, CodingKey {
        case readingID = "reading_id"
        case summary
        case measuredAt = "measured_at"
        case severity
        case level
    }
}

/// A task in the care manager's queue: one condition (patient, vital, direction) while unresolved.
///
/// The same value is the engine's working copy and the stored row: ``VitalsAlerting`` decides the
/// next value of a task, and storage writes it (`AppDatabase.apply`).
public struct CareTask: Sendable, Hashable, Codable {
    /// The row id; 0 for a task the writer has not inserted yet.
    public var id: Int64
    public var patientID: String
    public var kind: TaskKind
    /// `blood_pressure`, `glucose`, `spo2`, … (``VitalType/taskVital``); `days_of_data`, `no_data`,
    /// `late_data`, `device:<id>`, `battery:<id>` or `clock:<id>` for the other kinds.
    public var vital: String
    public var direction: ThresholdDirection
    public var priority: TaskPriority
    public var status: TaskStatus
    /// Why it was raised, e.g. "Glucose 48 mg/dL below critical limit 54 mg/dL".
    public var reason: String
    /// For timer tasks: the key that lets the condition in at most once, ever.
    public var conditionKey: String?
    /// The reading that opened it (reading tasks only).
    public var firstReadingID: Int64?
    /// The latest reading of the condition, by measurement time.
    public var latest: TaskReading?
    /// The worst reading of the condition while the task was unresolved (the highest level, then
    /// the farthest past its limit).
    public var worst: TaskReading?
    /// Messages whose readings breached this condition while the task was unresolved.
    public var occurrences: Int
    public var openedAt: Date
    public var updatedAt: Date
    public var acknowledgedAt: Date?
    public var acknowledgedBy: String?
    public var resolvedAt: Date?
    public var resolvedBy: String?
    /// Times the task was escalated for lack of acknowledgement (0: never).
    public var escalationLevel: Int
    public var escalatedAt: Date?
    /// When the next escalation is due; set only on an open critical task.
    public var nextEscalationAt: Date?
    /// Who the last escalation reached: a user name, or `role:<role>` for everyone of a role
    /// (``TimerRules/escalations(_:policy:careManagers:now:)``); nil before the first.
    public var escalatedTo: String?
    /// The worst reading when a person last acknowledged the task: a later reading clearly worse than
    /// it (``AlertPolicy/realertWorseningPercent``) puts the task back to `open`. Compared with this
    /// and not the current worst, so that values creeping down by less than the margin each time still
    /// reopen it once they are clearly worse than what the person saw.
    public var acknowledgedWorst: TaskReading?
    /// For a `critical` task: whether a re-measurement confirmed it.
    public var confirmation: Confirmation?
    /// When a pending confirmation's window ends.
    public var confirmationDueAt: Date?
    /// The patient's devices went silent while the task was unresolved: its readings are stale.
    public var dataStale: Bool
    /// Breaches of the condition after the task was resolved that opened nothing (suppressed, F13).
    public var suppressedBreaches: Int
    /// The measurement time of the last suppressed breach.
    public var lastSuppressedAt: Date?
    /// Incremented by the writer on every update; a change made from a stale copy is refused.
    public var version: Int
    /// The user name of who has the task (claimed, assigned, or the patient's care manager when it
    /// opened); nil: unassigned.
    public var owner: String?
    /// Why a resolved task was closed, when resolved with one (the workspace requires it).
    public var disposition: TaskDisposition?

    /// A new, unsaved task (id 0, version 0) opened at `now`.
    public init(
        patientID: String, kind: TaskKind, vital: String, direction: ThresholdDirection, priority: TaskPriority,
        reason: String, now: Date, conditionKey: String? = nil
    ) {
        self.id = 0
        self.patientID = patientID
        self.kind = kind
        self.vital = vital
        self.direction = direction
        self.priority = priority
        self.status = .open
        self.reason = reason
        self.conditionKey = conditionKey
        self.occurrences = 1
        self.openedAt = now
        self.updatedAt = now
        self.escalationLevel = 0
        self.dataStale = false
        self.suppressedBreaches = 0
        self.version = 0
    }

    /// The condition this task is kept for.
    public var condition: TaskCondition { TaskCondition(patientID: patientID, vital: vital, direction: direction) }

    /// The last reading's id (reading tasks).
    public var lastReadingID: Int64? { latest?.readingID }

    enum CodingKeys: String, CodingKey {
        case id, kind, vital, direction, priority, status, reason, occurrences, latest, worst, confirmation, version, owner
        case disposition
        case patientID = "patient_id"
        case conditionKey = "condition_key"
        case firstReadingID = "first_reading_id"
        case openedAt = "opened_at"
        case updatedAt = "updated_at"
        case acknowledgedAt = "acknowledged_at"
        case acknowledgedBy = "acknowledged_by"
        case resolvedAt = "resolved_at"
        case resolvedBy = "resolved_by"
        case escalationLevel = "escalation_level"
        case escalatedAt = "escalated_at"
        case nextEscalationAt = "next_escalation_at"
        case escalatedTo = "escalated_to"
        case confirmationDueAt = "confirmation_due_at"
        case dataStale = "data_stale"
        case suppressedBreaches = "suppressed_breaches"
        case lastSuppressedAt = "last_suppressed_at"
    }
}

/// Names a task in a list of changes: a stored one by id, or one opened earlier in the same list.
public enum TaskRef: Sendable, Hashable {
    case stored(Int64)
    /// A task opened by this list of changes; a condition gets at most one new task per list.
    case new(TaskCondition)
}

/// One entry of a task's history, written with the change that caused it.
public struct TaskEventRecord: Sendable, Hashable {
    public var kind: TaskEventKind
    public var at: Date
    /// `vitalsd` for the rules and timers, else the person.
    public var actor: String
    /// The reading that caused it, if any.
    public var readingID: Int64?
    public var detail: String?

    public init(_ kind: TaskEventKind, at: Date, actor: String = "vitalsd", readingID: Int64? = nil, detail: String? = nil) {
        self.kind = kind
        self.at = at
        self.actor = actor
        self.readingID = readingID
        self.detail = detail
    }
}

/// One change in a task's history (`task_events`).
public struct TaskEvent: Sendable, Hashable, Codable {
    public var at: Date
    /// `opened`, `updated`, `priority_raised`, `acknowledged`, `resolved`, `escalated`, `recovered`,
    /// `confirmation`, `data_stale`.
    public var event: String
    public var actor: String
    public var readingID: Int64?
    public var detail: String?

    public init(at: Date, event: String, actor: String, readingID: Int64?, detail: String?) {
        self.at = at
        self.event = event
        self.actor = actor
        self.readingID = readingID
        self.detail = detail
    }
}

/// A note a person added to a task: append-only history (`task_notes`).
public struct TaskNote: Sendable, Hashable, Codable {
    /// The stored note's id (`task_notes.id`); nil for a note not written yet.
    public var id: Int64?
    public var at: Date
    /// The user name (workspace) or `--by` name (command line) of who wrote it.
    public var author: String
    public var text: String

    public init(id: Int64? = nil, at: Date, author: String, text: String) {
        self.id = id
        self.at = at
        self.author = author
        self.text = text
    }
}

/// A change to the task queue, as decided by the rules (``VitalsAlerting``) or a person's action,
/// applied by the one task writer in storage.
///
/// Each change carries the task's whole next value, so the writer never decides anything: it
/// inserts or updates the row, appends the event (and its outbox copy) and the note. An update
/// names the version it was decided from; the writer refuses it if the row has moved on.
public enum TaskChange: Sendable, Hashable {
    /// Insert a new task (its `id` is ignored) with its first event.
    case open(CareTask, TaskEventRecord)
    /// Replace a task's fields; the event, if any, is appended to its history.
    case update(TaskRef, CareTask, TaskEventRecord?)
    /// Append a note to a task's history; the task itself does not change.
    case note(TaskRef, TaskNote)

    /// The task the change concerns.
    public var ref: TaskRef {
        switch self {
        case .open(let task, _): .new(task.condition)
        case .update(let ref, _, _), .note(let ref, _): ref
        }
    }
}

/// A task change that cannot be made, with a code a caller can branch on (an exit code, an HTTP status).
public struct TaskError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Why the change was refused.
    public enum Code: String, Sendable, Hashable {
        /// No task (or patient) with that id.
        case notFound = "not_found"
        /// The task's status does not allow the change (acknowledging a resolved task).
        case wrongStatus = "wrong_status"
        /// A required field is missing or empty (`--by`, the note's text).
        case invalid
        /// The task changed since it was read (another person acted first).
        case conflict
    }

    public var code: Code
    public var description: String

    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    /// A refusal without a more specific code (``Code/invalid``).
    public init(_ description: String) {
        self.init(.invalid, description)
    }
}

/// A clinician's change to one trend rule for one patient.
public struct RuleOverride: Sendable, Hashable {
    /// Another bound, in the rule's canonical unit; nil keeps the configured one.
    public var bound: Double?
    /// The rule is off for this patient.
    public var disabled: Bool
    public init(bound: Double?, disabled: Bool) {
        self.bound = bound
        self.disabled = disabled
    }
}
