import Foundation

/// The kinds of trend rule: rules over a window of a patient's readings rather than one reading.
///
/// Source: `clinical-and-billing.md` §3.2 (change over a window; average over a window; count of
/// readings in a window, after Validic Inform's "Average reading limit" and "Reading count").
public enum TrendRuleKind: String, Sendable, CaseIterable, Codable, Hashable {
    /// Change from the lowest (direction `high`) or highest (`low`) reading in the window to this one.
    case delta
    /// Mean of the readings in the window, this one included.
    case average
    /// Number of readings in the window, this one included, at or above (`high`) or below (`low`) a value.
    case count
}

/// A rule over a window of one patient's readings of one vital type, evaluated as each reading
/// arrives, in measurement-time order.
///
/// Examples (the heart-failure defaults, `clinical-and-billing.md` §3.1, HFSA/AHA):
/// - `delta`, body weight, window 24 h, high, bound 0.9 kg: a gain of ≥ 2 lb in a day;
/// - `delta`, body weight, window 7 days, high, bound 2.26 kg: a gain of ≥ 5 lb (2.268 kg) in a week;
/// - `average`, systolic, window 7 days, high, bound 150 mmHg, at least 3 readings;
/// - `count`, glucose, window 7 days, low, bound 70 mg/dL, 3 readings: three lows in a week.
///
/// Values are in the type's canonical unit (kg, mm[Hg], mg/dL, %, Cel, /min).
public struct TrendRule: Sendable, Hashable, Codable {
    /// A stable name, unique in the configuration: `weight_gain_7d`. Kept with the alert state, so
    /// renaming a rule starts its state afresh.
    public var id: String
    public var kind: TrendRuleKind
    public var type: VitalType
    /// `high`: a rise, a mean at or above the bound, readings at or above it; `low`: the opposite.
    public var direction: ThresholdDirection
    /// Window length, in seconds, ending at the reading's measurement time.
    public var windowSeconds: Double
    /// `delta`: the change, ≥ 0; `average`: the limit of the mean; `count`: the limit each reading is compared with.
    public var bound: Double
    /// `average`: fewest readings for a mean to count (default 1); `count`: readings needed to breach.
    public var minimumCount: Int
    /// The task priority when it breaches.
    public var level: ThresholdLevel
    /// Where the rule comes from (guideline, clinician order).
    public var source: String?

    public init(
        id: String, kind: TrendRuleKind, type: VitalType, direction: ThresholdDirection, windowSeconds: Double,
        bound: Double, minimumCount: Int = 1, level: ThresholdLevel = .warning, source: String? = nil
    ) {
        self.id = id
        self.kind = kind
        self.type = type
        self.direction = direction
        self.windowSeconds = windowSeconds
        self.bound = bound
        self.minimumCount = minimumCount
        self.level = level
        self.source = source
    }

    /// Why the rule cannot work, or nil when it can.
    public var problem: String? {
        if id.isEmpty || !id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) {
            return "id must be letters, digits, '_' or '-'"
        }
        if !(windowSeconds > 0 && windowSeconds <= 90 * 86_400) { return "window must be between 1 second and 90 days" }
        if !bound.isFinite { return "bound must be a number" }
        if kind == .delta && bound <= 0 { return "a delta bound must be above 0" }
        if minimumCount < 1 || minimumCount > 10_000 { return "minimum count must be between 1 and 10000" }
        return nil
    }

    /// A short description: "weight_gain_7d: body weight rise ≥ 2.26 kg within 7 days".
    public var summary: String {
        let unit = type.canonicalUnit.display
        let window = Self.describe(seconds: windowSeconds)
        switch (kind, direction) {
        case (.delta, .high): return "\(type.displayName) rise ≥ \(Observation.format(bound)) \(unit) within \(window)"
        case (.delta, .low): return "\(type.displayName) fall ≥ \(Observation.format(bound)) \(unit) within \(window)"
        case (.average, .high): return "\(type.displayName) mean over \(window) ≥ \(Observation.format(bound)) \(unit)"
        case (.average, .low): return "\(type.displayName) mean over \(window) < \(Observation.format(bound)) \(unit)"
        case (.count, .high): return "\(minimumCount) \(type.displayName) readings ≥ \(Observation.format(bound)) \(unit) within \(window)"
        case (.count, .low): return "\(minimumCount) \(type.displayName) readings < \(Observation.format(bound)) \(unit) within \(window)"
        }
    }

    static func describe(seconds: Double) -> String {
        if seconds.truncatingRemainder(dividingBy: 86_400) == 0 {
            let d = Int(seconds / 86_400)
            return d == 1 ? "24 h" : "\(d) days"
        }
        if seconds.truncatingRemainder(dividingBy: 3_600) == 0 { return "\(Int(seconds / 3_600)) h" }
        return "\(Int(seconds / 60)) min"
    }
}

/// One earlier reading in a rule's window: when it was measured and its canonical value.
public struct WindowReading: Sendable, Hashable {
    public var measuredAt: Date
    public var value: Double
    public init(measuredAt: Date, value: Double) {
        self.measuredAt = measuredAt
        self.value = value
    }
}

/// A trend rule that a reading breached.
public struct TrendBreach: Sendable, Hashable {
    public var rule: TrendRule
    public var observation: Observation
    /// `delta`: the change (≥ 0); `average`: the mean; `count`: the number of readings.
    public var measured: Double
    /// `delta`: the reading the change is measured from.
    public var baseline: Double?

    /// A sentence for the care manager, e.g.
    /// "Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: rise ≥ 2.26 kg";
    /// from a scale that weighs in pounds, "rose 2.5 kg (5.5 lb)".
    public var reason: String {
        let unit = rule.type.canonicalUnit.display
        let name = rule.type.displayName
        let window = TrendRule.describe(seconds: rule.windowSeconds)
        let what: String
        switch rule.kind {
        case .delta:
            let verb = rule.direction == .high ? "rose" : "fell"
            // A scale that weighs in pounds: the change and the two weights in pounds as well, as the
            // patient reads them and the HF handout counts ("5 lb in a week").
            let inPounds = rule.type == .bodyWeight && UCUMUnit(spelling: observation.unit) == .pound
            func pounds(_ kg: Double) -> String {
                Observation.format(((UCUMUnit.kilogram.convert(kg, to: .pound) ?? kg) * 10).rounded() / 10) + " lb"
            }
            let from = baseline.map {
                inPounds ? " (\(pounds($0)) to \(pounds(observation.canonicalValue)))"
                    : " (\(Observation.format($0)) \(unit) to \(Observation.format(observation.canonicalValue)) \(unit))"
            } ?? ""
            what = "\(name) \(verb) \(Observation.format(measured)) \(unit)\(inPounds ? " (\(pounds(measured)))" : "") within \(window)\(from)"
        case .average:
            what = "\(name) mean \(Observation.format((measured * 10).rounded() / 10)) \(unit) over \(window)"
        case .count:
            what = "\(Int(measured)) \(name) readings \(rule.direction == .high ? "at or above" : "below") \(Observation.format(rule.bound)) \(unit) within \(window)"
        }
        return "\(what); rule \(rule.id): \(rule.summary)"
    }
}

/// Evaluates trend rules. Pure: the caller supplies the window's earlier readings.
public enum TrendEvaluator {
    /// The breach of `rule` by `observation`, given the patient's earlier readings of the rule's type
    /// measured in `[observation.measuredAt − window, observation.measuredAt)`.
    ///
    /// - `delta` high: `value − min(window) ≥ bound`; low: `max(window) − value ≥ bound`. No earlier
    ///   reading, no breach.
    /// - `average`: the mean of the window and this reading, over at least `minimumCount` readings,
    ///   is ≥ bound (high) or < bound (low).
    /// - `count`: this reading is itself ≥ bound (high) or < bound (low), and with it at least
    ///   `minimumCount` readings of the window are; so the rule fires on the reading that completes the count.
    public static func evaluate(_ rule: TrendRule, _ observation: Observation, window: [WindowReading]) -> TrendBreach? {
        guard observation.type == rule.type else { return nil }
        let start = observation.measuredAt.addingTimeInterval(-rule.windowSeconds)
        let earlier = window.filter { $0.measuredAt >= start && $0.measuredAt < observation.measuredAt }.map(\.value)
        let v = observation.canonicalValue
        let epsilon = 1e-9
        switch rule.kind {
        case .delta:
            if rule.direction == .high {
                guard let low = earlier.min(), v - low >= rule.bound - epsilon else { return nil }
                return TrendBreach(rule: rule, observation: observation, measured: round6(v - low), baseline: low)
            } else {
                guard let high = earlier.max(), high - v >= rule.bound - epsilon else { return nil }
                return TrendBreach(rule: rule, observation: observation, measured: round6(high - v), baseline: high)
            }
        case .average:
            let all = earlier + [v]
            guard all.count >= rule.minimumCount else { return nil }
            let mean = all.reduce(0, +) / Double(all.count)
            let breached = rule.direction == .high ? mean >= rule.bound - epsilon : mean < rule.bound
            return breached ? TrendBreach(rule: rule, observation: observation, measured: mean, baseline: nil) : nil
        case .count:
            func counts(_ x: Double) -> Bool { rule.direction == .high ? x >= rule.bound : x < rule.bound }
            guard counts(v) else { return nil }
            let n = earlier.filter(counts).count + 1
            return n >= rule.minimumCount ? TrendBreach(rule: rule, observation: observation, measured: Double(n), baseline: nil) : nil
        }
    }

    private static func round6(_ x: Double) -> Double { (x * 1_000_000).rounded() / 1_000_000 }
}

/// Who a critical task's later escalations reach when nobody acknowledges it: one user, or every
/// user of a role (their worklists show it on top).
public enum EscalationBackup: Sendable, Hashable {
    case user(String)
    /// `care_manager`, `clinician` or `admin`.
    case role(String)

    /// As stored in a task's `escalated_to`: the user name, or `role:<role>`.
    public var target: String {
        switch self {
        case .user(let name): name
        case .role(let role): "role:" + role
        }
    }
}

/// Alerting rules beyond single-reading limits: trends, recovery, confirmation, late data and escalation.
///
/// Every default has a source: `clinical-and-billing.md` §3.1–3.2 and `failure-modes.md` F13–F16.
public struct AlertPolicy: Sendable, Hashable {
    /// Trend rules for every patient.
    public var defaultRules: [TrendRule]
    /// Trend rules by program, in addition to ``defaultRules``.
    public var programRules: [Program: [TrendRule]]
    /// A reading that arrives more than this many seconds after it was measured is late: it is
    /// stored and evaluated, but its breaches go to one `late_data` review task per patient instead
    /// of paging (F15). Default 86,400 (24 h).
    public var lateAfterSeconds: Double
    /// Once a care manager resolves a task while its condition is still active (never recovered),
    /// further breaches at the same or a lower level open no new task for this many seconds (F13);
    /// a higher level always does. Default 86,400 (Validic's "at most once per day").
    public var realertAfterSeconds: Double
    /// Within the re-alert window a breach of a resolved condition is still shown to a person when
    /// it lies at least this many percent further past its limit than the worst reading the resolved
    /// task showed (glucose 260 → 399 mg/dL), or at a higher level: it opens a new task. Default 10.
    public var realertWorseningPercent: Double
    /// A `critical` task records whether a re-measurement within this many seconds confirmed it
    /// (AHA: re-check ≥ 180/120 after 1–2 minutes). Default 900 (15 min).
    public var confirmationWindowSeconds: Double
    /// Seconds a `critical` task may stay unacknowledged before it is escalated. Default 1,800 (30 min).
    public var escalationAfterSeconds: Double
    /// Seconds between further escalations while still unacknowledged: the n-th repeat waits
    /// `escalationRepeatSeconds[min(n, count − 1)]`. Default [1,800].
    public var escalationRepeatSeconds: [Double]
    /// Who the second and later escalations reach (`alerts.escalation_backup_user` or
    /// `alerts.escalation_backup_role`); the first reaches the task's owner or the patient's care
    /// manager. Nil: later escalations stay with whom the first reached.
    public var escalationBackup: EscalationBackup?

    public init(
        defaultRules: [TrendRule] = [], programRules: [Program: [TrendRule]] = [:], lateAfterSeconds: Double = 86_400,
        realertAfterSeconds: Double = 86_400, realertWorseningPercent: Double = 10, confirmationWindowSeconds: Double = 900,
        escalationAfterSeconds: Double = 1_800, escalationRepeatSeconds: [Double] = [1_800]
    ) {
        self.defaultRules = defaultRules
        self.programRules = programRules
        self.lateAfterSeconds = lateAfterSeconds
        self.realertAfterSeconds = realertAfterSeconds
        self.realertWorseningPercent = realertWorseningPercent
        self.confirmationWindowSeconds = confirmationWindowSeconds
        self.escalationAfterSeconds = escalationAfterSeconds
        self.escalationRepeatSeconds = escalationRepeatSeconds
    }

    /// The trend rules in force for a patient: the defaults and those of each program, once per id.
    /// - Parameter disabled: rule ids switched off for this patient.
    public func rules(for programs: [Program], disabled: Set<String> = []) -> [TrendRule] {
        var seen = Set<String>()
        var result: [TrendRule] = []
        for rule in defaultRules + programs.sorted(by: { $0.rawValue < $1.rawValue }).flatMap({ programRules[$0] ?? [] })
        where !disabled.contains(rule.id) && seen.insert(rule.id).inserted {
            result.append(rule)
        }
        return result
    }

    /// Seconds from the n-th escalation (1-based) to the next.
    public func escalationRepeat(after level: Int) -> Double {
        guard !escalationRepeatSeconds.isEmpty else { return escalationAfterSeconds }
        return escalationRepeatSeconds[min(max(level - 1, 0), escalationRepeatSeconds.count - 1)]
    }

    /// Whether a reading is late: received more than ``lateAfterSeconds`` after it was measured.
    public func isLate(measuredAt: Date, receivedAt: Date) -> Bool {
        receivedAt.timeIntervalSince(measuredAt) > lateAfterSeconds
    }

    /// The heart-failure weight rules of `clinical-and-billing.md` §3.1 (HFSA/AHA handout:
    /// gain of > 2–3 lb in a day or 5 lb in a week): 0.9 kg in 24 h (2 lb = 0.907 kg) and 2.26 kg in
    /// 7 days (5 lb = 2.268 kg; the rounded 2.3 kg missed a gain of exactly 5 lb from a scale in lb).
    public static let heartFailureWeightRules: [TrendRule] = [
        TrendRule(id: "weight_gain_24h", kind: .delta, type: .bodyWeight, direction: .high, windowSeconds: 86_400,
                  bound: 0.9, level: .warning, source: "HFSA/AHA: gain of 2 lb (0.9 kg) in a day"),
        TrendRule(id: "weight_gain_7d", kind: .delta, type: .bodyWeight, direction: .high, windowSeconds: 7 * 86_400,
                  bound: 2.26, level: .warning, source: "HFSA/AHA: gain of 5 lb (2.268 kg) in a week"),
    ]

    /// The default: the heart-failure weight rules for the `heart_failure` program, nothing else.
    public static let clinicalDefaults = AlertPolicy(programRules: [.heartFailure: heartFailureWeightRules])
}

/// How a `critical` task's re-measurement turned out.
public enum Confirmation: String, Sendable, CaseIterable, Codable, Hashable {
    /// Waiting for a re-measurement within the confirmation window.
    case pending
    /// A re-measurement within the window was still at the critical level.
    case confirmed
    /// A re-measurement within the window was below the critical level.
    case notConfirmed = "not_confirmed"
    /// No re-measurement came within the window.
    case notRepeated = "not_repeated"
}

extension ThresholdEvaluator {
    /// Whether a reading clears an active high or low condition (hysteresis, `failure-modes.md` F13).
    ///
    /// A high condition clears only below `recovery_high`, a low one only at or above `recovery_low`;
    /// without a recovery bound, it clears as soon as the reading breaches no limit on that side.
    public static func recovers(_ value: Double, direction: ThresholdDirection, limits: ThresholdLimits) -> Bool {
        switch direction {
        case .high:
            let highs = [limits.warningHigh, limits.criticalHigh].compactMap { $0 }
            return highs.allSatisfy { value < $0 } && value < (limits.recoveryHigh ?? .infinity)
        case .low:
            let lows = [limits.warningLow, limits.criticalLow].compactMap { $0 }
            return lows.allSatisfy { value >= $0 } && value >= (limits.recoveryLow ?? -.infinity)
        }
    }
}
