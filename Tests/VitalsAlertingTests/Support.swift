import Foundation
import VitalsAlerting
import VitalsDomain

/// A fixed start for every test: 2026-03-02T10:00:00Z (a Monday, away from any DST change).
let t0 = Date(timeIntervalSince1970: 1_772_445_600)

/// The clinical default limits and alert policy.
let defaults = AlertingPolicy(thresholds: .clinicalDefaults)

/// A patient's tasks and rule states kept in memory, changed only by applying what the rules return:
/// what storage does, without SQLite. Ids are given in insertion order from 1.
struct Ledger {
    var patientID: String
    var programs: [Program]
    var policy: AlertingPolicy
    var states: [String: AlertState] = [:]
    var tasks: [Int64: CareTask] = [:]
    var history: [StoredValue] = []
    var thresholdOverrides: [ThresholdSlot: Double] = [:]
    var ruleOverrides: [String: RuleOverride] = [:]
    /// Monitoring pauses of the patient.
    var pauses: [DateInterval] = []
    var nextReading: Int64 = 1
    var events: [(task: Int64, event: TaskEventRecord)] = []
    var notes: [(task: Int64, note: TaskNote)] = []
    var last = AlertDecision()

    init(patient: String = "p1", programs: [Program], policy: AlertingPolicy = defaults) {
        patientID = patient
        self.programs = programs
        self.policy = policy
    }

    var snapshot: PatientSnapshot {
        var s = PatientSnapshot(
            patientID: patientID, programs: programs, thresholdOverrides: thresholdOverrides, ruleOverrides: ruleOverrides,
            states: states, tasks: Array(tasks.values), history: history)
        s.pauses = pauses
        return s
    }

    /// Applies changes as the task writer does; checks versions, and what the schema's CHECK
    /// constraints check: a threshold, trend or late-data task names its first and latest readings.
    mutating func apply(_ changes: [TaskChange]) {
        var ids: [TaskRef: Int64] = [:]
        for change in changes {
            if case .open(let t, _) = change { precondition(!t.kind.restsOnReadings || (t.firstReadingID != nil && t.latest?.readingID != nil)) }
            if case .update(_, let t, _) = change { precondition(!t.kind.restsOnReadings || (t.firstReadingID != nil && t.latest?.readingID != nil)) }
            switch change {
            case .open(var t, let e):
                t.id = Int64(tasks.count + 1)
                precondition(t.version == 1, "a new task starts at version 1")
                tasks[t.id] = t
                ids[change.ref] = t.id
                events.append((t.id, e))
            case .update(let ref, var t, let e):
                let id: Int64
                switch ref {
                case .stored(let s): id = s
                case .new: id = ids[ref]!
                }
                t.id = id
                precondition(tasks[id]!.version == t.version - 1, "an update names the version it was decided from")
                tasks[id] = t
                if let e { events.append((id, e)) }
            case .note(let ref, let n):
                guard case .stored(let id) = ref else { fatalError() }
                notes.append((id, n))
            }
        }
    }

    /// Evaluates new readings (each a message of its own unless grouped) received at `receivedAt`.
    @discardableResult
    mutating func ingest(_ observations: [Observation], receivedAt: Date? = nil, now: Date? = nil, sameMessage: Bool = false) -> AlertDecision {
        var batch: [NewReading] = []
        for (i, o) in observations.enumerated() {
            batch.append(NewReading(readingID: nextReading, observation: o, receivedAt: receivedAt ?? o.measuredAt.addingTimeInterval(5),
                                    message: sameMessage ? 0 : i, order: i))
            nextReading += 1
        }
        let time = now ?? batch.map(\.receivedAt).max() ?? t0
        let decision = AlertEngine.evaluate(readings: batch, snapshot: snapshot, policy: policy, now: time)
        apply(decision.changes)
        for (rule, s) in decision.states { states[rule] = s }
        history += batch.map {
            StoredValue(readingID: $0.readingID, type: $0.observation.type, measuredAt: $0.observation.measuredAt,
                        value: $0.observation.canonicalValue)
        }
        last = decision
        return decision
    }

    mutating func resolve(_ id: Int64, at: Date) {
        apply(try! TaskActions.resolve(tasks[id]!, by: "nurse.a", note: nil, at: at))
    }

    var open: [CareTask] { tasks.values.filter { $0.status != .resolved }.sorted { $0.id < $1.id } }
    var all: [CareTask] { tasks.values.sorted { $0.id < $1.id } }
    func events(of id: Int64) -> [String] { events.filter { $0.task == id }.map(\.event.kind.rawValue) }
}

func reading(_ type: VitalType, _ value: Double, at: Date, device: String = "d1") -> Observation {
    Observation(deviceID: device, type: type, value: value, unit: type.canonicalUnit.rawValue, canonicalValue: value, measuredAt: at)
}

func minutes(_ m: Double) -> TimeInterval { m * 60 }
