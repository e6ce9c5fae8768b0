import Foundation
import Testing
import VitalsDomain

private let when = Date(timeIntervalSince1970: 1_795_871_400)

private func reading(_ type: VitalType, _ value: Double, _ unit: String? = nil) -> Observation {
    let u = unit.flatMap(UCUMUnit.init(spelling:)) ?? type.canonicalUnit
    return Observation(
        deviceID: "d1", type: type, value: value, unit: unit ?? type.canonicalUnit.rawValue,
        canonicalValue: u.convert(value, to: type.canonicalUnit)!, measuredAt: when)
}

private func level(_ type: VitalType, _ value: Double, programs: [Program] = [], unit: String? = nil) -> String {
    let limits = ThresholdPolicy.clinicalDefaults.effectiveLimits(for: type, programs: programs, overrides: [:]).limits
    guard let b = ThresholdEvaluator.evaluate(reading(type, value, unit), against: limits) else { return "none" }
    return "\(b.level.rawValue) \(b.direction.rawValue)"
}

@Suite("threshold evaluation")
struct ThresholdTests {
    @Test("glucose boundaries: low limits exclusive, high limits inclusive")
    func glucoseBoundaries() {
        #expect(level(.glucose, 53.9) == "critical low")
        #expect(level(.glucose, 54) == "warning low")  // exactly 54 is not below 54
        #expect(level(.glucose, 69.99) == "warning low")
        #expect(level(.glucose, 70) == "none")
        #expect(level(.glucose, 249.9) == "none")
        #expect(level(.glucose, 250) == "warning high")
        #expect(level(.glucose, 399) == "warning high")
        #expect(level(.glucose, 400) == "critical high")
    }

    @Test("blood pressure boundaries")
    func bpBoundaries() {
        #expect(level(.systolicBP, 180) == "critical high")  // exactly 180 is a crisis
        #expect(level(.systolicBP, 179) == "warning high")
        #expect(level(.systolicBP, 160) == "warning high")
        #expect(level(.systolicBP, 159) == "none")
        #expect(level(.systolicBP, 90) == "none")
        #expect(level(.systolicBP, 89) == "critical low")
        #expect(level(.diastolicBP, 120) == "critical high")
        #expect(level(.diastolicBP, 100) == "warning high")
        #expect(level(.diastolicBP, 99) == "none")
    }

    @Test("SpO2 and temperature, COPD program")
    func spo2AndTemperature() {
        #expect(level(.spo2, 89) == "critical low")
        #expect(level(.spo2, 89, programs: [.copd]) == "none")
        #expect(level(.spo2, 87, programs: [.copd]) == "critical low")
        #expect(level(.spo2, 89, programs: [.copd, .hypertension]) == "none")
        #expect(level(.bodyTemperature, 38.0) == "critical high")
        #expect(level(.bodyTemperature, 100.4, unit: "[degF]") == "critical high")  // 100.4 °F = 38.0 °C
        #expect(level(.bodyTemperature, 37.8) == "warning high")
        #expect(level(.bodyTemperature, 37.7) == "none")
        // IDSA's 100 °F: (100 − 32) × 5/9 = 37.777… °C breaches; 99.9 °F = 37.722… °C does not.
        #expect(level(.bodyTemperature, 100.0, unit: "[degF]") == "warning high")
        #expect(level(.bodyTemperature, 99.9, unit: "[degF]") == "none")
        #expect(level(.heartRate, 190) == "none")  // no default heart-rate limits
    }

    @Test("glucose in mmol/L is compared after conversion with the one factor (F20)")
    func mmol() {
        #expect(level(.glucose, 3.0, unit: "mmol/L") == "warning low")  // 54.054 mg/dL
        #expect(level(.glucose, 2.9, unit: "mmol/L") == "critical low")  // 52.2522 mg/dL
        // A patient limit of 5.6 mmol/L is 100.9008 mg/dL; 100 mg/dL is below it.
        let slot = ThresholdSlot(type: .glucose, level: .warning, direction: .low)
        let limits = ThresholdPolicy.clinicalDefaults.effectiveLimits(
            for: .glucose, programs: [.diabetes], overrides: [slot: 5.6 * UCUMUnit.glucoseMgPerDLPerMmolPerL]).limits
        #expect(ThresholdEvaluator.evaluate(reading(.glucose, 100), against: limits)?.level == .warning)
        #expect(ThresholdEvaluator.evaluate(reading(.glucose, 101), against: limits) == nil)
    }

    @Test("precedence: patient, then most sensitive program, then defaults")
    func precedence() {
        let policy = ThresholdPolicy(
            defaults: [.systolicBP: ThresholdLimits(criticalHigh: 180, warningHigh: 160)],
            programs: [
                .hypertension: [.systolicBP: ThresholdLimits(warningHigh: 150)],
                .heartFailure: [.systolicBP: ThresholdLimits(warningHigh: 140)],
            ])
        let both = policy.effectiveLimits(for: .systolicBP, programs: [.hypertension, .heartFailure], overrides: [:])
        #expect(both.limits.warningHigh == 140)
        #expect(both.origins[ThresholdSlot(type: .systolicBP, level: .warning, direction: .high)] == .program(.heartFailure))
        #expect(both.limits.criticalHigh == 180)
        let own = policy.effectiveLimits(
            for: .systolicBP, programs: [.hypertension],
            overrides: [ThresholdSlot(type: .systolicBP, level: .warning, direction: .high): 170])
        #expect(own.limits.warningHigh == 170)
        #expect(own.origins[ThresholdSlot(type: .systolicBP, level: .warning, direction: .high)] == .patient)
    }

    @Test("reason text a care manager reads")
    func reasons() throws {
        let limits = ThresholdPolicy.clinicalDefaults.defaults[.glucose]!
        let low = try #require(ThresholdEvaluator.evaluate(reading(.glucose, 48), against: limits))
        #expect(low.reason == "Glucose 48 mg/dL below critical limit 54 mg/dL")
        let mmol = try #require(ThresholdEvaluator.evaluate(reading(.glucose, 2.7, "mmol/L"), against: limits))
        // 2.7 × 18.018 = 48.6486 → shown to 2 decimals.
        #expect(mmol.reason == "Glucose 2.7 mmol/L (48.65 mg/dL) below critical limit 54 mg/dL")
        let sbp = try #require(ThresholdEvaluator.evaluate(reading(.systolicBP, 182), against: ThresholdPolicy.clinicalDefaults.defaults[.systolicBP]!))
        #expect(sbp.reason == "Systolic blood pressure 182 mmHg at or above critical limit 180 mmHg")
    }

    @Test("one blood pressure reading, both pressures high: one condition, critical")
    func bpGrouping() {
        let d = ThresholdPolicy.clinicalDefaults.defaults
        let breaches = [
            ThresholdEvaluator.evaluate(reading(.systolicBP, 185), against: d[.systolicBP]!)!,
            ThresholdEvaluator.evaluate(reading(.diastolicBP, 105), against: d[.diastolicBP]!)!,
        ]
        let groups = ConditionBreach.group(breaches, patientID: "p1")
        #expect(groups.count == 1)
        #expect(groups[0].condition == TaskCondition(patientID: "p1", vital: "blood_pressure", direction: .high))
        #expect(groups[0].level == .critical)
        #expect(groups[0].reason == "Systolic blood pressure 185 mmHg at or above critical limit 180 mmHg; Diastolic blood pressure 105 mmHg at or above warning limit 100 mmHg")
    }
}

@Suite("threshold consistency")
struct ThresholdConsistencyTests {
    @Test("limits that could never be reached or never clear are named")
    func ordering() {
        #expect(ThresholdLimits(warningLow: 50, criticalLow: 59.46).orderingProblem == "warning_low must not be below critical_low")
        #expect(ThresholdLimits(criticalHigh: 150, warningHigh: 160).orderingProblem == "warning_high must not exceed critical_high")
        #expect(ThresholdLimits(warningHigh: 100, warningLow: 100).orderingProblem == "low limits must lie below high limits")
        #expect(ThresholdPolicy.clinicalDefaults.defaults.values.allSatisfy { $0.orderingProblem == nil })
    }
}
