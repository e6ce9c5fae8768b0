import Foundation
import VitalsDomain
import VitalsStore

/// How a task reads on the worklist and the task page: the words, the latest value against the limit
/// in force, the badges and the sparkline. Pure: values in, text out.
struct TaskPresentation {
    let entry: WorklistEntry
    let thresholds: ThresholdPolicy
    let window: SparklineWindow
    let now: Date

    var task: CareTask { entry.task }

    static func priorityLabel(_ p: TaskPriority) -> String {
        switch p {
        case .critical: "Critical"
        case .warning: "Warning"
        case .routine: "Routine"
        }
    }

    static func statusLabel(_ s: TaskStatus) -> String {
        switch s {
        case .open: "Open"
        case .acknowledged: "Acknowledged"
        case .resolved: "Resolved"
        }
    }

    /// `Blood pressure high`, `Glucose low`, `No data`, `Device cuff-7`, `Battery low, cuff-7`,
    /// `Device clock wrong, cuff-7`, `Implausible value, cuff-7`.
    static func condition(vital: String, direction: ThresholdDirection) -> String {
        switch vital {
        case "blood_pressure": return "Blood pressure \(direction.rawValue)"
        case "late_data": return "Late data to review"
        case "no_data": return "No data"
        case "days_of_data": return "Days of data at risk"
        default:
            if vital.hasPrefix("device:") { return "Device " + vital.dropFirst("device:".count) }
            if vital.hasPrefix("battery:") { return "Battery low, " + vital.dropFirst("battery:".count) }
            if vital.hasPrefix("clock:") { return "Device clock wrong, " + vital.dropFirst("clock:".count) }
            if vital.hasPrefix("value:") { return "Implausible value, " + vital.dropFirst("value:".count) }
            if let type = VitalType(rawValue: vital) { return "\(type.displayName) \(direction.rawValue)" }
            return vital
        }
    }

    /// The re-measurement state as the task page says it.
    static func remeasurement(_ c: Confirmation?) -> String? {
        switch c {
        case .pending: "pending: a re-measurement within 15 minutes will confirm or not"
        case .confirmed: "confirmed: the re-measurement was still critical"
        case .notConfirmed: "not confirmed: the re-measurement was below the critical limit"
        case .notRepeated: "not repeated within 15 minutes"
        case nil: nil
        }
    }

    static func confirmation(_ c: Confirmation?) -> String? {
        switch c {
        case .pending: "re-measurement pending"
        case .confirmed: "confirmed by re-measurement"
        case .notConfirmed: "not confirmed by re-measurement"
        case .notRepeated: "not re-measured"
        case nil: nil
        }
    }

    /// The limit level that goes with the task's priority.
    private var level: ThresholdLevel { task.priority == .warning ? .warning : .critical }

    private func limit(_ type: VitalType) -> Double? {
        thresholds.effectiveLimits(for: type, programs: entry.programs, overrides: entry.overrides).limits[level, task.direction]
    }

    /// The type the sparkline shows: for blood pressure, the pressure whose latest value is past its
    /// limit (systolic when both or neither are).
    var primaryType: VitalType? {
        let types = entry.types
        guard types.count > 1 else { return types.first }
        for type in types {
            if let value = entry.latest.first(where: { $0.type == type })?.value, let l = limit(type),
               task.direction == .high ? value >= l : value < l {
                return type
            }
        }
        return types.first
    }

    /// The latest value as read, e.g. `185/125 mmHg`, `48 mg/dL`, `HI`; and beneath it, the limit in
    /// force or why there is none, e.g. `critical ≥ 180/120`.
    var valueAndLimit: (value: String, limit: String) {
        let types = entry.types
        let op = task.direction == .high ? "≥" : "<"
        switch task.kind {
        case .threshold, .trend:
            let readings = types.compactMap { type in entry.latest.first { $0.type == type } }
            guard !readings.isEmpty, let unit = types.first?.canonicalUnit.display else { return ("—", "") }
            let value = readings.map { Observation.format($0.value) }.joined(separator: "/") + " " + unit
            if task.kind == .trend { return (value, "trend: " + Self.short(task.reason)) }
            let limits = readings.map { limit($0.type).map(Observation.format) ?? "–" }
            return (value, "\(level.rawValue) \(op) \(limits.joined(separator: "/"))")
        case .device where !types.isEmpty:
            return (task.direction == .high ? "HI" : "LO", "beyond the meter's range")
        default:
            return ("—", Self.short(task.reason))
        }
    }

    /// The reason cut to about 70 characters, on a word boundary.
    static func short(_ text: String) -> String {
        guard text.count > 70 else { return text }
        let cut = text.prefix(70)
        return (cut.lastIndex(of: " ").map { String(cut[..<$0]) } ?? String(cut)) + "…"
    }

    /// Badges: stale data, late data, device problems.
    var badges: [[String: String]] {
        var result: [[String: String]] = []
        if task.dataStale {
            result.append(["kind": "stale", "label": "stale data",
                           "help": "The patient's devices have sent nothing since these readings: they may be out of date."])
        }
        if entry.lateData || task.kind == .lateData {
            result.append(["kind": "late", "label": "late data",
                           "help": "Readings arrived more than a day after they were measured; they are in a late-data review task."])
        }
        let devices = entry.deviceProblems - (task.kind == .device ? 1 : 0)
        if devices > 0 {
            result.append(["kind": "device", "label": devices == 1 ? "device problem" : "\(devices) device problems",
                           "help": "Unresolved device tasks for this patient: an error code, a low battery, a silent device "
                               + "or a value beyond the meter's range."])
        }
        return result
    }

    /// `in 12 min`, `due now`, `escalated ×2 · next in 30 min`, `escalated ×1`, or `—`.
    var escalation: (text: String, due: Bool) {
        let level = task.escalationLevel > 0
            ? "escalated ×\(task.escalationLevel)" + (task.escalatedTo.map { " to \($0.replacingOccurrences(of: "role:", with: "every "))" } ?? "")
            : nil
        guard let next = entry.nextEscalationAt else { return (level ?? "—", false) }
        let seconds = next.timeIntervalSince(now)
        let when = seconds <= 0 ? "due now" : Pages.inTime(seconds)
        return ((level.map { "\($0) · next " } ?? "") + when, seconds <= 5 * 60)
    }

    /// The sparkline SVG of the primary type, with its limit, or nil without readings.
    func sparkline(width: Int = 112, height: Int = 28) -> String? {
        guard let type = primaryType, let buckets = entry.history[type] else { return nil }
        let l = task.kind == .threshold ? limit(type) : nil
        let label = "\(type.displayName), last \(Int(window.seconds / 86_400)) days"
            + (l.map { ", limit \(Observation.format($0)) \(type.canonicalUnit.display)" } ?? "")
        let readingTask = task.kind == .threshold || task.kind == .trend
        return Sparkline.svg(buckets, count: window.buckets, limit: l, label: label,
                             gap: max(1, Int(Double(window.buckets) * 86_400 / window.seconds)),
                             mark: readingTask ? task.direction : nil, width: width, height: height)
    }

    /// The row of the worklist table.
    func row(pages: Pages) -> [String: Any] {
        let (value, limit) = valueAndLimit
        let escalation = escalation
        var row: [String: Any] = [
            "id": task.id, "version": task.version, "priority": task.priority.rawValue,
            "priorityLabel": Self.priorityLabel(task.priority),
            "patientName": entry.patientName ?? task.patientID, "patientID": task.patientID,
            "condition": Self.condition(vital: task.vital, direction: task.direction), "badges": badges,
            "value": value, "limit": limit, "sparkline": sparkline() ?? "",
            "occurrences": task.occurrences, "statusLabel": Self.statusLabel(task.status),
            "escalation": escalation.text, "escalationDue": escalation.due, "escalated": task.escalationLevel > 0,
            "owner": entry.ownerName ?? task.owner ?? "Unassigned",
            "openedISO": Pages.iso(task.openedAt), "openedLocal": pages.local(task.openedAt),
            "openedAgo": Pages.ago(task.openedAt, now: now),
        ]
        if let confirmation = Self.confirmation(task.confirmation) { row["confirmation"] = confirmation }
        return row
    }
}
