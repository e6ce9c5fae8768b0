import Foundation
import Testing
import VitalsDomain

private let day0 = Date(timeIntervalSince1970: 1_795_871_400)  // 2026-11-28T13:10:00Z

/// A reading in the type's canonical unit, `day` days after day 0.
private func reading(_ type: VitalType, _ value: Double, day: Double) -> Observation {
    Observation(deviceID: "d1", type: type, value: value, unit: type.canonicalUnit.rawValue, canonicalValue: value,
                measuredAt: day0.addingTimeInterval(day * 86_400))
}

private func weight(_ kg: Double, day: Double) -> Observation { reading(.bodyWeight, kg, day: day) }

private func window(_ points: [(Double, Double)]) -> [WindowReading] {
    points.map { WindowReading(measuredAt: day0.addingTimeInterval($0.0 * 86_400), value: $0.1) }
}

@Suite("trend rules and alert policy")
struct AlertRuleTests {
    let gain24h = AlertPolicy.heartFailureWeightRules[0]
    let gain7d = AlertPolicy.heartFailureWeightRules[1]

    @Test("weight gain over 24 h and 7 days (HFSA/AHA: 2 lb a day, 5 lb a week)")
    func weightDelta() throws {
        // 80.0 → 80.9 kg within a day: +0.9 kg reaches the 0.9 kg bound.
        let b = try #require(TrendEvaluator.evaluate(gain24h, weight(80.9, day: 1), window: window([(0.01, 80.0)])))
        #expect(b.measured == 0.9)
        #expect(b.baseline == 80.0)
        #expect(b.reason == "Body weight rose 0.9 kg within 24 h (80 kg to 80.9 kg); rule weight_gain_24h: Body weight rise ≥ 0.9 kg within 24 h")
        // +0.8 kg is below it; a reading 25 h earlier is outside the window.
        #expect(TrendEvaluator.evaluate(gain24h, weight(80.8, day: 1), window: window([(0.01, 80.0)])) == nil)
        #expect(TrendEvaluator.evaluate(gain24h, weight(82.0, day: 1.05), window: window([(0, 80.0)])) == nil)
        // 5 days of +0.5 kg: 80.0 … 82.5; the 7-day rule sees 82.5 − 80.0 = 2.5 ≥ 2.26; the 24 h rule never fires.
        let days = [(0.0, 80.0), (1, 80.5), (2, 81.0), (3, 81.5), (4, 82.0)]
        let seven = try #require(TrendEvaluator.evaluate(gain7d, weight(82.5, day: 5), window: window(days)))
        #expect(seven.measured == 2.5)
        #expect(TrendEvaluator.evaluate(gain24h, weight(82.5, day: 5), window: window(days)) == nil)
        // From a scale in lb: 180 lb → 185 lb is 81.6466 → 83.9146 kg, + 2.268 kg = exactly 5 lb: a breach.
        // 184.9 lb (+ 4.9 lb = 2.223 kg) is not.
        let lb = 0.45359237
        #expect(TrendEvaluator.evaluate(gain7d, weight(185 * lb, day: 5), window: window([(0, 180 * lb)])) != nil)
        #expect(TrendEvaluator.evaluate(gain7d, weight(184.9 * lb, day: 5), window: window([(0, 180 * lb)])) == nil)
        // Its reason also counts in pounds: 5 × 0.45359237 = 2.268 kg, shown "2.27 kg (5 lb)".
        var fromPounds = weight(185 * lb, day: 5)
        fromPounds.unit = "[lb_av]"
        fromPounds.value = 185
        let inPounds = try #require(TrendEvaluator.evaluate(gain7d, fromPounds, window: window([(0, 180 * lb)])))
        #expect(inPounds.reason == "Body weight rose 2.27 kg (5 lb) within 7 days (180 lb to 185 lb); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days")
        // At day 4 the rise is 2.0 kg: not yet.
        #expect(TrendEvaluator.evaluate(gain7d, weight(82.0, day: 4), window: window(Array(days.prefix(4)))) == nil)
        // No earlier reading: no change to measure.
        #expect(TrendEvaluator.evaluate(gain7d, weight(95, day: 0), window: []) == nil)
        // Only readings before this one count, never later ones.
        #expect(TrendEvaluator.evaluate(gain7d, weight(82.5, day: 5), window: window([(6, 70)])) == nil)
    }

    @Test("a fall: max(window) − value")
    func deltaLow() throws {
        let loss = TrendRule(id: "weight_loss_2d", kind: .delta, type: .bodyWeight, direction: .low,
                             windowSeconds: 2 * 86_400, bound: 0.9)
        let b = try #require(TrendEvaluator.evaluate(loss, weight(79.0, day: 2), window: window([(0.5, 80.0), (1, 79.5)])))
        #expect(b.measured == 1.0)
        #expect(b.reason.hasPrefix("Body weight fell 1 kg within 2 days (80 kg to 79 kg)"))
    }

    @Test("mean over a window, with a minimum count")
    func average() throws {
        let rule = TrendRule(id: "sbp_mean_7d", kind: .average, type: .systolicBP, direction: .high,
                             windowSeconds: 7 * 86_400, bound: 150, minimumCount: 3)
        func sbp(_ v: Double, day: Double) -> Observation { reading(.systolicBP, v, day: day) }
        // (148 + 152 + 150) / 3 = 150: at the bound, breaches.
        let b = try #require(TrendEvaluator.evaluate(rule, sbp(150, day: 2), window: window([(0, 148), (1, 152)])))
        #expect(b.measured == 150)
        // (148 + 150 + 151) / 3 = 149.67: below.
        #expect(TrendEvaluator.evaluate(rule, sbp(151, day: 2), window: window([(0, 148), (1, 150)])) == nil)
        // Two readings are fewer than the minimum of 3, however high.
        #expect(TrendEvaluator.evaluate(rule, sbp(190, day: 1), window: window([(0, 190)])) == nil)
    }

    @Test("count: fires on the reading that completes the count")
    func count() throws {
        let rule = TrendRule(id: "lows_7d", kind: .count, type: .glucose, direction: .low,
                             windowSeconds: 7 * 86_400, bound: 70, minimumCount: 3)
        func g(_ v: Double, day: Double) -> Observation { reading(.glucose, v, day: day) }
        let earlier = window([(0, 65), (1, 120), (2, 68)])
        #expect(try #require(TrendEvaluator.evaluate(rule, g(62, day: 3), window: earlier)).measured == 3)
        // 70 is not below 70, so it is not the third low.
        #expect(TrendEvaluator.evaluate(rule, g(70, day: 3), window: earlier) == nil)
        // Two lows only.
        #expect(TrendEvaluator.evaluate(rule, g(62, day: 3), window: window([(0, 65), (1, 120)])) == nil)
    }

    @Test("recovery bounds: a high condition clears only below recovery_high (F13)")
    func hysteresis() {
        let limits = ThresholdLimits(criticalHigh: 180, warningHigh: 160, recoveryHigh: 150)
        #expect(!ThresholdEvaluator.recovers(179, direction: .high, limits: limits))  // still a warning
        #expect(!ThresholdEvaluator.recovers(155, direction: .high, limits: limits))  // no breach, not yet recovered
        #expect(ThresholdEvaluator.recovers(149, direction: .high, limits: limits))
        // Without a recovery bound, below every high limit is enough.
        #expect(ThresholdEvaluator.recovers(159, direction: .high, limits: ThresholdLimits(criticalHigh: 180, warningHigh: 160)))
        let low = ThresholdLimits(warningLow: 70, criticalLow: 54, recoveryLow: 80)
        #expect(!ThresholdEvaluator.recovers(75, direction: .low, limits: low))
        #expect(ThresholdEvaluator.recovers(80, direction: .low, limits: low))
        // A recovery bound above the limit it recovers from cannot work.
        #expect(ThresholdLimits(criticalHigh: 180, recoveryHigh: 185).orderingProblem == "recovery_high must not exceed the lowest high limit")
    }

    @Test("rules in force: defaults and programs once per id, minus those switched off")
    func rulesInForce() {
        let policy = AlertPolicy.clinicalDefaults
        #expect(policy.rules(for: [.diabetes]).isEmpty)
        #expect(policy.rules(for: [.heartFailure, .hypertension]).map(\.id) == ["weight_gain_24h", "weight_gain_7d"])
        #expect(policy.rules(for: [.heartFailure], disabled: ["weight_gain_24h"]).map(\.id) == ["weight_gain_7d"])
        #expect(policy.isLate(measuredAt: day0, receivedAt: day0.addingTimeInterval(86_401)))
        #expect(!policy.isLate(measuredAt: day0, receivedAt: day0.addingTimeInterval(86_400)))
        // Escalation repeats: the last interval repeats.
        let p = AlertPolicy(escalationAfterSeconds: 1_800, escalationRepeatSeconds: [900, 3_600])
        #expect(p.escalationRepeat(after: 1) == 900)
        #expect(p.escalationRepeat(after: 2) == 3_600)
        #expect(p.escalationRepeat(after: 7) == 3_600)
    }

    @Test("rule problems are named")
    func problems() {
        #expect(TrendRule(id: "a b", kind: .delta, type: .bodyWeight, direction: .high, windowSeconds: 3_600, bound: 1).problem != nil)
        #expect(TrendRule(id: "x", kind: .delta, type: .bodyWeight, direction: .high, windowSeconds: 3_600, bound: 0).problem
                == "a delta bound must be above 0")
        #expect(TrendRule(id: "x", kind: .count, type: .glucose, direction: .low, windowSeconds: 0, bound: 70).problem
                == "window must be between 1 second and 90 days")
    }
}
