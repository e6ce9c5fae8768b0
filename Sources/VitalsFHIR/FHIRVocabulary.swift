import VitalsDomain

/// Code systems and codes used in vitalsd's FHIR resources, with their sources.
public enum FHIRSystems {
    public static let loinc = "http://loinc.org"
    public static let ucum = "http://unitsofmeasure.org"
    /// hl7.org/fhir/R4/codesystem-observation-category.html
    public static let observationCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
    /// hl7.org/fhir/R4/codesystem-restful-security-service.html
    public static let restfulSecurityService = "http://terminology.hl7.org/CodeSystem/restful-security-service"
    /// SMART's extension on `CapabilityStatement.rest.security` naming the OAuth endpoints
    /// (hl7.org/fhir/smart-app-launch/conformance.html).
    public static let oauthURIs = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

    // vitalsd's own code systems and extensions (README "FHIR R4 API"); URNs so that they never
    // depend on the host name a site serves vitalsd under.
    /// Tags on Observations: `late`, `manual`, and the reading flags (`irregular_heartbeat`, …).
    public static let readingTag = "urn:vitalsd:reading-tag"
    /// `Device.type` codes: the enrolled device kind (`bp_cuff`, `cgm`, …).
    public static let deviceKind = "urn:vitalsd:device-kind"
    /// `Task.code`: what raised the task (`threshold`, `trend`, `late_data`, `days_of_data`, `no_data`, `device`).
    public static let taskKind = "urn:vitalsd:task-kind"
    /// `Task.reasonCode`: the condition, `<condition>-<direction>` (`blood_pressure-high`).
    public static let taskCondition = "urn:vitalsd:task-condition"
    /// `Task.businessStatus`: `escalated` or `not-escalated`, with the level and confirmation in text.
    public static let taskBusinessStatus = "urn:vitalsd:task-business-status"
    /// Task extension, `valueInteger`: times the task was escalated for lack of acknowledgement.
    public static let escalationLevelExtension = "urn:vitalsd:extension:escalation-level"
    /// Task extension, `valueCode`: `pending`, `confirmed`, `not_confirmed`, `not_repeated`.
    public static let confirmationExtension = "urn:vitalsd:extension:confirmation"
    /// Task extension, `valueBoolean`: the patient's devices went silent while the task was open.
    public static let dataStaleExtension = "urn:vitalsd:extension:data-stale"
    /// Task extension, `valueInteger`: breaches counted while the task was unresolved.
    public static let occurrencesExtension = "urn:vitalsd:extension:occurrences"
}

/// LOINC codes and the FHIR profile of each vital type.
public enum ObservationCodes {
    /// "Blood pressure panel with all children optional" (hl7.org/fhir/R4/bp.html).
    public static let bloodPressurePanel = "85354-9"
    /// SpO2 in arterial blood: the code the base R4 `oxygensat` profile requires beside US Core's
    /// 59408-5 (pulse oximetry), which vitalsd stores (clinical-and-billing.md §4.1).
    public static let oxygenSaturationArterial = "2708-6"

    /// The LOINC display name of a stored code.
    public static func display(_ type: VitalType) -> String {
        switch type {
        case .systolicBP: "Systolic blood pressure"
        case .diastolicBP: "Diastolic blood pressure"
        case .heartRate: "Heart rate"
        case .glucose: "Glucose [Mass/volume] in Capillary blood by Glucometer"
        case .bodyWeight: "Body weight"
        case .spo2: "Oxygen saturation in Arterial blood by Pulse oximetry"
        case .bodyTemperature: "Body temperature"
        }
    }

    /// The unit as people write it, for `valueQuantity.unit` (the UCUM code goes in `code`).
    public static func unitDisplay(_ type: VitalType) -> String {
        switch type {
        case .systolicBP, .diastolicBP: "mmHg"
        case .heartRate: "beats/minute"
        case .glucose: "mg/dL"
        case .bodyWeight: "kg"
        case .spo2: "%"
        case .bodyTemperature: "Cel"
        }
    }

    /// The FHIR R4 core profile an Observation of this type meets, when one applies: vital signs only.
    /// Glucose is not in the vital-signs value set (clinical-and-billing.md §4.2).
    public static func profile(_ type: VitalType) -> String? {
        switch type {
        case .systolicBP, .diastolicBP: "http://hl7.org/fhir/StructureDefinition/vitalsigns"
        case .heartRate: "http://hl7.org/fhir/StructureDefinition/heartrate"
        case .glucose: nil
        case .bodyWeight: "http://hl7.org/fhir/StructureDefinition/bodyweight"
        case .spo2: "http://hl7.org/fhir/StructureDefinition/oxygensat"
        case .bodyTemperature: "http://hl7.org/fhir/StructureDefinition/bodytemp"
        }
    }

    /// `vital-signs` for the vital signs, `laboratory` for glucose, as US Core's blood-glucose
    /// example does (clinical-and-billing.md §4.2).
    public static func category(_ type: VitalType) -> ObservationCategory {
        type == .glucose ? .laboratory : .vitalSigns
    }
}

/// The `Observation.category` codes vitalsd assigns.
public enum ObservationCategory: String, Sendable, CaseIterable {
    case vitalSigns = "vital-signs"
    case laboratory

    public var display: String {
        switch self {
        case .vitalSigns: "Vital Signs"
        case .laboratory: "Laboratory"
        }
    }
}

/// What an Observation's `code` is: the blood-pressure panel, or one vital type.
public enum ObservationKind: Sendable, Hashable {
    case bloodPressurePanel
    case single(VitalType)

    /// The kinds a LOINC code names: 2708-6 and 59408-5 both name SpO2 (the Observation carries both).
    /// - Returns: nil for a code vitalsd never serves.
    public static func forLOINC(_ code: String) -> ObservationKind? {
        if code == ObservationCodes.bloodPressurePanel { return .bloodPressurePanel }
        if code == ObservationCodes.oxygenSaturationArterial { return .single(.spo2) }
        return VitalType.allCases.first { $0.loinc == code }.map { .single($0) }
    }

    /// The kinds of a category.
    public static func forCategory(_ category: ObservationCategory) -> Set<ObservationKind> {
        var kinds: Set<ObservationKind> = category == .vitalSigns ? [.bloodPressurePanel] : []
        for type in VitalType.allCases where ObservationCodes.category(type) == category { kinds.insert(.single(type)) }
        return kinds
    }
}

/// FHIR Task vocabulary for vitalsd's task states (hl7.org/fhir/R4/valueset-task-status.html,
/// valueset-request-priority.html), as the task-event outbox already names them.
public enum TaskVocabulary {
    /// `open` → `requested`, `acknowledged` → `accepted`, `resolved` → `completed`.
    public static func status(_ stored: String) -> String {
        switch stored {
        case "open": "requested"
        case "acknowledged": "accepted"
        default: "completed"
        }
    }

    /// The stored statuses a FHIR Task status stands for; nil for a status vitalsd never uses.
    public static func storedStatus(_ fhir: String) -> String? {
        switch fhir {
        case "requested": "open"
        case "accepted": "acknowledged"
        case "completed": "resolved"
        default: nil
        }
    }

    /// `critical` → `stat`, `warning` → `urgent`, `routine` → `routine`.
    public static func priority(_ stored: String) -> String {
        switch stored {
        case "critical": "stat"
        case "warning": "urgent"
        default: "routine"
        }
    }
}
