/// A kind of physiologic measurement that vitalsd accepts, named as in the canonical message format.
///
/// Each type has one LOINC code, one canonical UCUM unit in which it is stored and compared,
/// and a plausibility range outside which a value is taken for a device or transcription error
/// rather than a measurement.
///
/// LOINC codes and UCUM units: FHIR R4 vital-signs profile (hl7.org/fhir/R4/observation-vitalsigns.html);
/// glucose 41653-7 "Glucose [Mass/volume] in Capillary blood by Glucometer".
public enum VitalType: String, Sendable, CaseIterable, Codable, Hashable {
    case systolicBP = "systolic_bp"
    case diastolicBP = "diastolic_bp"
    case heartRate = "heart_rate"
    case glucose = "glucose"
    case bodyWeight = "body_weight"
    case spo2 = "spo2"
    case bodyTemperature = "body_temperature"

    /// The LOINC code stored with every reading of this type.
    public var loinc: String {
        switch self {
        case .systolicBP: "8480-6"
        case .diastolicBP: "8462-4"
        case .heartRate: "8867-4"
        case .glucose: "41653-7"
        case .bodyWeight: "29463-7"
        case .spo2: "59408-5"
        case .bodyTemperature: "8310-5"
        }
    }

    /// The canonical UCUM unit: values are stored in it and thresholds are compared in it.
    public var canonicalUnit: UCUMUnit {
        switch self {
        case .systolicBP, .diastolicBP: .millimetreOfMercury
        case .heartRate: .perMinute
        case .glucose: .milligramPerDecilitre
        case .bodyWeight: .kilogram
        case .spo2: .percent
        case .bodyTemperature: .celsius
        }
    }

    /// Human name used in task reasons, e.g. "Glucose".
    public var displayName: String {
        switch self {
        case .systolicBP: "Systolic blood pressure"
        case .diastolicBP: "Diastolic blood pressure"
        case .heartRate: "Heart rate"
        case .glucose: "Glucose"
        case .bodyWeight: "Body weight"
        case .spo2: "SpO2"
        case .bodyTemperature: "Body temperature"
        }
    }

    /// The vital a task is raised for. Systolic and diastolic pressure are one vital,
    /// `blood_pressure`, so a reading of 185/125 mmHg opens one task, not two.
    public var taskVital: String {
        switch self {
        case .systolicBP, .diastolicBP: "blood_pressure"
        default: rawValue
        }
    }

    /// Values in the canonical unit that a home device can plausibly report; anything outside
    /// is dead-lettered as `implausible_value` and never evaluated.
    ///
    /// The ranges are the published measuring ranges of home devices, widened a little, so that
    /// they reject unit mix-ups and error codes without rejecting real extremes:
    /// - blood pressure: oscillometric home cuffs measure 0–299 mmHg (IEC 80601-2-30 devices,
    ///   e.g. Omron HEM series); systolic 40–300 and diastolic 20–250 mmHg are accepted;
    /// - heart rate: cuffs and oximeters report 30–250 /min; 20–300 /min accepted;
    /// - glucose: home meters report 10–600 mg/dL (Accu-Chek 10–600, Dexcom G4 40–400);
    ///   10–600 mg/dL accepted, so 110 "mmol/L" (1,982 mg/dL) is rejected (failure-modes F20);
    /// - SpO2: oximeter accuracy is specified for 70–100 % (ISO 80601-2-61); 50–100 % accepted;
    /// - body temperature: clinical thermometers cover at least 34–43 °C (ISO 80601-2-56);
    ///   30–45 °C accepted;
    /// - body weight: home scales weigh up to 180–250 kg; 2–400 kg accepted.
    public var plausibleRange: ClosedRange<Double> {
        switch self {
        case .systolicBP: 40...300
        case .diastolicBP: 20...250
        case .heartRate: 20...300
        case .glucose: 10...600
        case .bodyWeight: 2...400
        case .spo2: 50...100
        case .bodyTemperature: 30...45
        }
    }
}
