/// An RPM program a patient is enrolled in. Programs select default thresholds.
public enum Program: String, Sendable, CaseIterable, Codable, Hashable {
    case hypertension
    case diabetes
    case heartFailure = "heart_failure"
    case copd
}

/// How urgent a breach is; also the task's priority.
///
/// `critical` is a red flag (act now), `warning` a yellow flag (review).
public enum ThresholdLevel: String, Sendable, CaseIterable, Codable, Hashable, Comparable {
    case warning
    case critical

    public static func < (a: Self, b: Self) -> Bool { a == .warning && b == .critical }
}

/// Which side of the normal range a breach lies on.
public enum ThresholdDirection: String, Sendable, CaseIterable, Codable, Hashable {
    case high
    case low
}

/// The four limits of one vital type, in its canonical unit. A `nil` limit is not checked.
///
/// High limits are inclusive (a value ≥ the limit breaches); low limits are exclusive
/// (a value < the limit breaches). So glucose 54 mg/dL is not below a critical limit of 54,
/// and systolic 180 mmHg is at a critical limit of 180.
public struct ThresholdLimits: Sendable, Hashable, Codable {
    public var criticalHigh: Double?
    public var warningHigh: Double?
    public var warningLow: Double?
    public var criticalLow: Double?
    /// A high condition clears only below this value (hysteresis, `failure-modes.md` F13); nil: below
    /// the lowest high limit. Never above the lowest high limit.
    public var recoveryHigh: Double?
    /// A low condition clears only at or above this value; nil: at or above the highest low limit.
    public var recoveryLow: Double?
    /// Where the values come from (guideline, clinician order). Shown by `vitalsd threshold list`.
    public var source: String?

    public init(
        criticalHigh: Double? = nil, warningHigh: Double? = nil, warningLow: Double? = nil,
        criticalLow: Double? = nil, recoveryHigh: Double? = nil, recoveryLow: Double? = nil, source: String? = nil
    ) {
        self.recoveryHigh = recoveryHigh
        self.recoveryLow = recoveryLow
        self.criticalHigh = criticalHigh
        self.warningHigh = warningHigh
        self.warningLow = warningLow
        self.criticalLow = criticalLow
        self.source = source
    }

    enum CodingKeys: String, CodingKey {
        case criticalHigh = "critical_high"
        case warningHigh = "warning_high"
        case warningLow = "warning_low"
        case criticalLow = "critical_low"
        case recoveryHigh = "recovery_high"
        case recoveryLow = "recovery_low"
        case source
    }

    /// The limit for one level and direction.
    public subscript(level: ThresholdLevel, direction: ThresholdDirection) -> Double? {
        get {
            switch (level, direction) {
            case (.critical, .high): criticalHigh
            case (.warning, .high): warningHigh
            case (.warning, .low): warningLow
            case (.critical, .low): criticalLow
            }
        }
        set {
            switch (level, direction) {
            case (.critical, .high): criticalHigh = newValue
            case (.warning, .high): warningHigh = newValue
            case (.warning, .low): warningLow = newValue
            case (.critical, .low): criticalLow = newValue
            }
        }
    }

    /// Why these limits cannot work together, or nil when they can: they must be ordered
    /// critical_low ≤ warning_low < warning_high ≤ critical_high, or a level could never be reached
    /// or a condition never clear.
    public var orderingProblem: String? {
        if let ch = criticalHigh, let wh = warningHigh, wh > ch { return "warning_high must not exceed critical_high" }
        if let cl = criticalLow, let wl = warningLow, wl < cl { return "warning_low must not be below critical_low" }
        let highs = [criticalHigh, warningHigh].compactMap { $0 }
        let lows = [criticalLow, warningLow].compactMap { $0 }
        if let minHigh = highs.min(), let maxLow = lows.max(), maxLow >= minHigh { return "low limits must lie below high limits" }
        if let r = recoveryHigh, let minHigh = highs.min(), r > minHigh { return "recovery_high must not exceed the lowest high limit" }
        if let r = recoveryLow, let maxLow = lows.max(), r < maxLow { return "recovery_low must not be below the highest low limit" }
        if let rh = recoveryHigh, let rl = recoveryLow, rl >= rh { return "recovery_low must lie below recovery_high" }
        return nil
    }

    /// True when no limit is set.
    public var isEmpty: Bool { criticalHigh == nil && warningHigh == nil && warningLow == nil && criticalLow == nil }
}

/// Identifies one limit: a vital type, a level and a direction.
public struct ThresholdSlot: Sendable, Hashable, Codable {
    public var type: VitalType
    public var level: ThresholdLevel
    public var direction: ThresholdDirection

    public init(type: VitalType, level: ThresholdLevel, direction: ThresholdDirection) {
        self.type = type
        self.level = level
        self.direction = direction
    }
}

/// Where an effective limit came from.
public enum ThresholdOrigin: Sendable, Hashable {
    case patient
    case program(Program)
    case defaults
}

/// Program defaults from configuration, combined with a patient's own limits.
///
/// Precedence for each limit (type, level, direction):
/// 1. the patient's own limit, set by a clinician (`vitalsd threshold set`);
/// 2. the limit of one of the patient's programs; when several of their programs set it, the most
///    sensitive wins (the highest low limit, the lowest high limit), so adding a program never hides a flag;
/// 3. the default for every patient.
public struct ThresholdPolicy: Sendable, Hashable {
    /// Limits for every patient, by type.
    public var defaults: [VitalType: ThresholdLimits]
    /// Limits that a program sets instead of the defaults.
    public var programs: [Program: [VitalType: ThresholdLimits]]

    public init(defaults: [VitalType: ThresholdLimits] = [:], programs: [Program: [VitalType: ThresholdLimits]] = [:]) {
        self.defaults = defaults
        self.programs = programs
    }

    /// The limits in force for one patient and type, in the canonical unit.
    ///
    /// - Parameters:
    ///   - type: the vital type.
    ///   - programs: the patient's programs.
    ///   - overrides: the patient's own limits, by slot.
    public func effectiveLimits(
        for type: VitalType, programs patientPrograms: [Program], overrides: [ThresholdSlot: Double]
    ) -> (limits: ThresholdLimits, origins: [ThresholdSlot: ThresholdOrigin]) {
        var result = ThresholdLimits()
        var origins: [ThresholdSlot: ThresholdOrigin] = [:]
        for level in ThresholdLevel.allCases {
            for direction in ThresholdDirection.allCases {
                let slot = ThresholdSlot(type: type, level: level, direction: direction)
                if let own = overrides[slot] {
                    result[level, direction] = own
                    origins[slot] = .patient
                    continue
                }
                var best: (Double, Program)?
                for program in patientPrograms {
                    guard let v = programs[program]?[type]?[level, direction] else { continue }
                    if let current = best {
                        let moreSensitive = direction == .high ? v < current.0 : v > current.0
                        if moreSensitive { best = (v, program) }
                    } else {
                        best = (v, program)
                    }
                }
                if let (v, program) = best {
                    result[level, direction] = v
                    origins[slot] = .program(program)
                } else if let v = defaults[type]?[level, direction] {
                    result[level, direction] = v
                    origins[slot] = .defaults
                }
            }
        }
        // Recovery bounds come from the programs (the one that keeps a condition active longest) or
        // the defaults; a patient's own limits do not set them.
        let programLimits = patientPrograms.compactMap { programs[$0]?[type] }
        result.recoveryHigh = programLimits.compactMap(\.recoveryHigh).min() ?? defaults[type]?.recoveryHigh
        result.recoveryLow = programLimits.compactMap(\.recoveryLow).max() ?? defaults[type]?.recoveryLow
        return (result, origins)
    }
}
