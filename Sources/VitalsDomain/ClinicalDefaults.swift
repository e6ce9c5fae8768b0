extension ThresholdPolicy {
    /// The default thresholds shipped in `Config/vitalsd.yaml`, used when a configuration has no
    /// `thresholds` section. Values are in canonical units. Sources (`clinical-and-billing.md` §3.1):
    /// - glucose: ADA Standards of Care, Table 6.3 — level 2 hypoglycaemia < 54 mg/dL (critical),
    ///   level 1 < 70 mg/dL (warning); hyperglycaemia > 250 mg/dL "very elevated" (warning, at ≥ 250),
    ///   ≥ 400 mg/dL critical (program choice: the top of most meters' and CGMs' range);
    /// - blood pressure: AHA "hypertensive crisis" SBP ≥ 180 and/or DBP ≥ 120 (critical);
    ///   SBP ≥ 160 or DBP ≥ 100 (warning, program choice above stage 2); hypotension SBP < 90 (critical);
    /// - SpO2: < 90 % serious in the general population (critical); COPD programs < 88 %, the bottom
    ///   of the usual 88–92 % individual target (BTS; COPD guidance);
    /// - body temperature: fever ≥ 38.0 °C / 100.4 °F (critical, CDC usage); ≥ 100 °F = 37.78 °C
    ///   (warning, long-term-care definition, IDSA; the limit is 37.77 °C so that 100.0 °F, 37.777… °C,
    ///   breaches it, which the rounded 37.8 °C did not).
    /// Body weight and heart rate have no absolute defaults: heart failure weight gain is a change
    /// over days, and no guideline gives RPM heart-rate limits.
    public static let clinicalDefaults = ThresholdPolicy(
        defaults: [
            .glucose: ThresholdLimits(
                criticalHigh: 400, warningHigh: 250, warningLow: 70, criticalLow: 54,
                source: "ADA Standards of Care, Table 6.3 (hypoglycaemia levels 1 and 2); Diabetes Care 40(12):1622 (level 2 hyperglycaemia > 250 mg/dL)"),
            .systolicBP: ThresholdLimits(
                criticalHigh: 180, warningHigh: 160, criticalLow: 90, recoveryHigh: 150,
                source: "AHA hypertensive crisis >= 180/120; hypotension SBP < 90 (NHLBI)"),
            .diastolicBP: ThresholdLimits(
                criticalHigh: 120, warningHigh: 100,
                source: "AHA hypertensive crisis >= 180/120"),
            .spo2: ThresholdLimits(criticalLow: 90, source: "SpO2 < 90 % serious in the general population"),
            .bodyTemperature: ThresholdLimits(
                criticalHigh: 38.0, warningHigh: 37.77,
                source: "CDC fever >= 100.4 F (38.0 C); IDSA long-term care >= 100 F (37.78 C)"),
        ],
        programs: [
            .copd: [.spo2: ThresholdLimits(criticalLow: 88, source: "COPD individual SpO2 target usually 88-92 %")]
        ])
}
