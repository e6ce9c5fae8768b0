/// One reading outside its limits.
public struct Breach: Sendable, Hashable {
    /// The reading that breached.
    public var observation: Observation
    /// High or low.
    public var direction: ThresholdDirection
    /// The most severe level breached; becomes the task's priority.
    public var level: ThresholdLevel
    /// The limit breached, in the canonical unit.
    public var limit: Double

    /// A sentence for the care manager, e.g. "Glucose 48 mg/dL below critical limit 54 mg/dL".
    /// When the device reported another unit, both are shown:
    /// "Glucose 2.7 mmol/L (48.65 mg/dL) below critical limit 54 mg/dL".
    public var reason: String {
        let type = observation.type
        let canonical = type.canonicalUnit
        var shown = "\(Observation.format(observation.canonicalValue)) \(canonical.display)"
        if let received = UCUMUnit(spelling: observation.unit), received != canonical {
            shown = "\(Observation.format(observation.value)) \(received.display) (\(shown))"
        }
        let relation = direction == .high ? "at or above" : "below"
        return "\(type.displayName) \(shown) \(relation) \(level.rawValue) limit \(Observation.format(limit)) \(canonical.display)"
    }
}

/// Compares readings with limits. Pure: no I/O, no clock.
public enum ThresholdEvaluator {
    /// The breach of `observation` against `limits`, if any.
    ///
    /// High limits are inclusive (≥), low limits exclusive (<); the critical level is checked before
    /// the warning level, so a reading gets the most severe level it reaches. Values are compared in
    /// the canonical unit, unrounded beyond 10⁻⁶.
    public static func evaluate(_ observation: Observation, against limits: ThresholdLimits) -> Breach? {
        let v = observation.canonicalValue
        for level in [ThresholdLevel.critical, .warning] {
            if let high = limits[level, .high], v >= high {
                return Breach(observation: observation, direction: .high, level: level, limit: high)
            }
            if let low = limits[level, .low], v < low {
                return Breach(observation: observation, direction: .low, level: level, limit: low)
            }
        }
        return nil
    }
}

/// The condition a task is kept for: one patient, one vital, one direction.
///
/// The database holds at most one unresolved task per condition.
public struct TaskCondition: Sendable, Hashable {
    public var patientID: String
    /// ``VitalType/taskVital``: `blood_pressure` for both pressures, otherwise the type name.
    public var vital: String
    public var direction: ThresholdDirection

    public init(patientID: String, vital: String, direction: ThresholdDirection) {
        self.patientID = patientID
        self.vital = vital
        self.direction = direction
    }
}

/// The breaches of one message that belong to one condition, merged into one task occurrence.
///
/// A cuff reading of 185/125 mmHg breaches both pressures; the care manager gets one task
/// with priority `critical` and a reason naming both.
public struct ConditionBreach: Sendable, Hashable {
    public var condition: TaskCondition
    public var breaches: [Breach]

    /// The most severe level among the breaches.
    public var level: ThresholdLevel { breaches.map(\.level).max() ?? .warning }

    /// The reasons of the breaches, most severe first, joined by "; ".
    public var reason: String {
        breaches.sorted { $0.level > $1.level }.map(\.reason).joined(separator: "; ")
    }

    /// Groups breaches by condition, keeping the order in which conditions first appear.
    public static func group(_ breaches: [Breach], patientID: String) -> [ConditionBreach] {
        var order: [TaskCondition] = []
        var byCondition: [TaskCondition: [Breach]] = [:]
        for b in breaches {
            let c = TaskCondition(patientID: patientID, vital: b.observation.type.taskVital, direction: b.direction)
            if byCondition[c] == nil { order.append(c) }
            byCondition[c, default: []].append(b)
        }
        return order.map { ConditionBreach(condition: $0, breaches: byCondition[$0]!) }
    }
}
