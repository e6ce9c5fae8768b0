import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// What the clinical rules need to run inside a batch's transaction on PostgreSQL.
public struct BatchAlerting: Sendable {
    /// Limits by program and the alert policy (the daemon's configuration).
    public var policy: AlertingPolicy
    /// The batch's time, as the rules see it (an injected clock in tests).
    public var now: Date
    /// Part of each task event's `event_id` (``TaskEventMessage/eventID(_:incarnation:)``).
    public var incarnation: String

    /// - Parameters: as the properties.
    public init(policy: AlertingPolicy, now: Date, incarnation: String) {
        self.policy = policy
        self.now = now
        self.incarnation = incarnation
    }
}

/// What the rules did with a batch's new readings.
public struct AlertingOutcome: Sendable, Hashable {
    /// Tasks opened, by priority.
    public var opened: [TaskPriority: Int] = [:]
    /// Tasks raised to a higher priority, by the priority reached.
    public var raised: [TaskPriority: Int] = [:]
    /// Existing tasks that got a new occurrence.
    public var updated = 0
    /// Breaches that opened nothing (condition still active, its task resolved within the re-alert window).
    public var suppressed = 0
    /// Moments of late readings sent to a late-data review task.
    public var lateBreaches = 0

    /// An outcome with nothing done.
    public init() {}

    mutating func add(_ decision: AlertDecision) {
        opened.merge(decision.opened, uniquingKeysWith: +)
        raised.merge(decision.raised, uniquingKeysWith: +)
        updated += decision.updated
        suppressed += decision.suppressed
        lateBreaches += decision.lateBreaches
    }
}

/// What a batch gives a person to review besides its readings, by patient: device events (error
/// codes, HI/LO), readings refused for a wrong device time, and readings refused as implausible.
struct ReviewProblems {
    var device: [String: [DeviceProblem]] = [:]
    var clock: [String: [ClockProblem]] = [:]
    var implausible: [String: [ImplausibleValues]] = [:]

    var isEmpty: Bool { device.isEmpty && clock.isEmpty && implausible.isEmpty }
    var patients: Set<String> { Set(device.keys).union(clock.keys).union(implausible.keys) }

    /// Adds the rejected readings whose dead letters are new: one clock problem and one set of
    /// implausible values per message (its last rejection's detail), as the SQLite ingest gathers
    /// them, for the patient who has the device now.
    mutating func add(
        _ rejected: [(message: Int, deviceID: String, rejection: Rejection)], messages: [ReceivedMessage],
        patient: (String) -> String?
    ) {
        var clock: [Int: ClockProblem] = [:], implausible: [Int: ImplausibleValues] = [:]
        var patients: [Int: String] = [:]
        for r in rejected {
            guard let patientID = patient(r.deviceID) else { continue }
            patients[r.message] = patientID
            let receivedAt = messages[r.message].receivedAt
            if let o = r.rejection.clockObservation {
                var p = clock[r.message] ?? ClockProblem(deviceID: r.deviceID, observations: [], receivedAt: receivedAt, detail: "")
                p.observations.append(o)
                p.detail = r.rejection.detail
                clock[r.message] = p
            }
            if let value = r.rejection.rejectedValue {
                var p = implausible[r.message] ?? ImplausibleValues(deviceID: r.deviceID, values: [], detail: "", receivedAt: receivedAt)
                p.values.append(value)
                p.detail = r.rejection.detail
                implausible[r.message] = p
            }
        }
        for (message, problem) in clock.sorted(by: { $0.key < $1.key }) { self.clock[patients[message]!, default: []].append(problem) }
        for (message, problem) in implausible.sorted(by: { $0.key < $1.key }) {
            self.implausible[patients[message]!, default: []].append(problem)
        }
    }
}

/// The rules on PostgreSQL: the twin of the SQLite ingest's evaluation. Per batch it reads each
/// patient's snapshot once (programs, own limits, rule changes, pauses, alert states, the tasks the
/// rules may touch, and the readings of the trend and confirmation windows), asks the pure
/// ``AlertEngine``, and applies its decision through ``PostgresTaskWriter``, all in the batch's
/// transaction.
enum PostgresAlerting {
    /// Evaluates `readings` (the batch's new readings, by patient) and applies the decisions.
    /// - Parameter problems: device events and rejected readings to review, raised once each.
    static func evaluate(
        _ readings: [String: [NewReading]], problems: ReviewProblems = ReviewProblems(), alerting: BatchAlerting,
        connection: PostgresConnection, logger: Logger
    ) async throws -> AlertingOutcome {
        var outcome = AlertingOutcome()
        let concerned = Set(readings.keys).union(problems.patients)
        guard !concerned.isEmpty else { return outcome }
        let programs = try await Self.programs(Array(concerned), connection, logger)
        let snapshots = try await Self.snapshots(connection, patients: programs, readings: readings, policy: alerting.policy, logger: logger)
        var changes: [TaskChange] = []
        for patientID in concerned.sorted() {
            guard let snapshot = snapshots[patientID] else { continue }
            let batch = readings[patientID] ?? []
            func evaluate(_ snapshot: PatientSnapshot) -> AlertDecision {
                AlertEngine.evaluate(
                    readings: batch, deviceProblems: problems.device[patientID] ?? [], clockProblems: problems.clock[patientID] ?? [],
                    implausibleValues: problems.implausible[patientID] ?? [], snapshot: snapshot, policy: alerting.policy,
                    now: alerting.now)
            }
            var decision = evaluate(snapshot)
            if decision.needsHistory {
                // Rare (a critical task opened): read the patient's readings around the batch and decide again.
                let full = try await Self.snapshots(
                    connection, patients: [patientID: programs[patientID] ?? []], readings: [patientID: batch],
                    policy: alerting.policy, history: [patientID], logger: logger)
                decision = evaluate(full[patientID] ?? snapshot)
            }
            try await storeAlertStates(connection, patientID: patientID, decision.states, logger: logger)
            // The patients' changes touch different tasks: applied together after the loop, so that
            // their events take three statements per batch rather than three per patient.
            changes += decision.changes
            outcome.add(decision)
        }
        try await PostgresTaskWriter.apply(connection, changes, incarnation: alerting.incarnation, logger: logger)
        return outcome
    }

    /// Each patient's programs, sorted by name as the SQLite ingest reads them.
    static func programs(_ patientIDs: [String], _ connection: PostgresConnection, _ logger: Logger) async throws -> [String: [Program]] {
        var result = Dictionary(uniqueKeysWithValues: patientIDs.map { ($0, [Program]()) })
        let rows = try await connection.query("""
            SELECT patient_id, program FROM patient_programs WHERE patient_id = ANY(\(patientIDs)::text[])
            ORDER BY patient_id, program
            """, logger: logger).collected()
        for row in rows {
            let (patient, name) = try row.decode((String, String).self)
            if let program = Program(rawValue: name) { result[patient, default: []].append(program) }
        }
        return result
    }

    /// The snapshots of `patients` (see the SQLite ingest's `snapshots` for what each part is for).
    /// - Parameter history: the patients whose stored readings around the batch are read; nil: those
    ///   with trend rules for the batch's vital types.
    static func snapshots(
        _ connection: PostgresConnection, patients: [String: [Program]], readings: [String: [NewReading]], policy: AlertingPolicy,
        history: Set<String>? = nil, logger: Logger
    ) async throws -> [String: PatientSnapshot] {
        let ids = Array(patients.keys)
        var result: [String: PatientSnapshot] = [:]
        for (id, programs) in patients { result[id] = PatientSnapshot(patientID: id, programs: programs) }
        for row in try await connection.query("""
            SELECT patient_id, type, level, direction, limit_value FROM patient_thresholds WHERE patient_id = ANY(\(ids)::text[])
            """, logger: logger).collected() {
            let (patient, type, level, direction, limit) = try row.decode((String, String, String, String, Double).self)
            guard let type = VitalType(rawValue: type), let level = ThresholdLevel(rawValue: level),
                  let direction = ThresholdDirection(rawValue: direction) else { continue }
            result[patient]?.thresholdOverrides[ThresholdSlot(type: type, level: level, direction: direction)] = limit
        }
        for row in try await connection.query("""
            SELECT patient_id, rule_id, bound, disabled FROM patient_rule_overrides WHERE patient_id = ANY(\(ids)::text[])
            """, logger: logger).collected() {
            let (patient, rule, bound, disabled) = try row.decode((String, String, Double?, Int).self)
            result[patient]?.ruleOverrides[rule] = RuleOverride(bound: bound, disabled: disabled != 0)
        }
        for row in try await connection.query("""
            SELECT patient_id, starts_at, least(ends_at, coalesce(closed_at, ends_at)) FROM monitoring_pauses
            WHERE patient_id = ANY(\(ids)::text[])
            """, logger: logger).collected() {
            let (patient, start, end) = try row.decode((String, Int64, Int64).self)
            if end > start {
                result[patient]?.pauses.append(DateInterval(start: dateFromEpochMilliseconds(start), end: dateFromEpochMilliseconds(end)))
            }
        }
        for row in try await connection.query("""
            SELECT patient_id, rule, active, level, since FROM alert_states WHERE patient_id = ANY(\(ids)::text[])
            """, logger: logger).collected() {
            let (patient, rule, active, level, since) = try row.decode((String, String, Int, String?, Int64).self)
            result[patient]?.states[rule] = AlertState(
                active: active != 0, since: dateFromEpochMilliseconds(since), level: level.flatMap(ThresholdLevel.init(rawValue:)))
        }
        var taskQuery = PostgresQuery(unsafeSQL: """
            SELECT \(PostgresTaskWriter.taskColumns) FROM tasks WHERE patient_id = ANY($1::text[])
            AND (status <> 'resolved' OR confirmation = 'pending'
                 OR id IN (SELECT max(id) FROM tasks WHERE patient_id = ANY($1::text[]) GROUP BY patient_id, vital, direction))
            ORDER BY id
            """)
        taskQuery.binds.append(ids)
        for row in try await connection.query(taskQuery, logger: logger).collected() {
            let task = try PostgresTaskWriter.task(row)
            result[task.patientID]?.tasks.append(task)
        }
        // Readings stored before the batch around its times (AlertingPolicy.historyRequest).
        for id in result.keys { result[id]?.history = nil }
        guard let request = policy.historyRequest(snapshots: result, readings: readings, history: history) else { return result }
        for id in request.patients { result[id]?.history = [] }
        let batchIDs = Set(readings.values.joined().map(\.readingID))
        let from = epochMilliseconds(request.from), to = epochMilliseconds(request.to)
        for row in try await connection.query("""
            SELECT patient_id, id, type, measured_at, canonical_value FROM readings
            WHERE patient_id = ANY(\(Array(request.patients))::text[]) AND measured_at >= \(from) AND measured_at <= \(to)
            ORDER BY patient_id, measured_at, id
            """, logger: logger).collected() {
            let (patient, readingID, type, measuredAt, value) = try row.decode((String, Int64, String, Int64, Double).self)
            guard !batchIDs.contains(readingID), let type = VitalType(rawValue: type) else { continue }
            result[patient]?.history?.append(
                StoredValue(readingID: readingID, type: type, measuredAt: dateFromEpochMilliseconds(measuredAt), value: value))
        }
        return result
    }

    /// Writes the rule states the engine changed.
    static func storeAlertStates(
        _ connection: PostgresConnection, patientID: String, _ states: [String: AlertState], logger: Logger
    ) async throws {
        for (rule, s) in states.sorted(by: { $0.key < $1.key }) {
            try await connection.query("""
                INSERT INTO alert_states (patient_id, rule, active, level, since)
                VALUES (\(patientID), \(rule), \(s.active ? 1 : 0), \(s.level?.rawValue), \(epochMilliseconds(s.since)))
                ON CONFLICT (patient_id, rule) DO UPDATE SET active = excluded.active,
                    level = coalesce(excluded.level, alert_states.level), since = excluded.since
                """, logger: logger)
        }
    }
}
