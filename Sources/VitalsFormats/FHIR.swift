import Foundation
import VitalsDomain

/// FHIR R4 Observations (vital-signs profile) and Bundles of them (`payload-formats.md` §3).
///
/// - The root is an `Observation`, or a `Bundle` of type `transaction`, `batch` or `collection` whose
///   entries' `resource` Observations are read (other resources, such as `Patient` and `Device`, are
///   skipped).
/// - Codes are matched on `system` + `code`, never on position: LOINC (`http://loinc.org`) and
///   IEEE 11073 MDC (`urn:iso:std:iso:11073:10101`). Leniency: a coding without `system`, or a bare
///   string `code`, is accepted when its code is one of the LOINC codes below.
/// - BP panel 85354-9 (R4), 55284-4 (STU3) or MDC 150020: its components are read; MAP (MDC 150023,
///   no LOINC) is skipped. Systolic 8480-6/150021, diastolic 8462-4/150022, heart rate
///   8867-4/149530/149546, SpO2 2708-6/59408-5/150456, weight 29463-7/3141-9/188736, temperature
///   8310-5/150364, glucose 2339-0/15074-8/41653-7/2345-7/14749-6 and every IEEE 11073-10101
///   `MDC_CONC_GLU_*` sample type a meter or CGM reports (below). A glucose Observation coded as
///   control solution (`MDC_CONC_GLU_CONTROL`, `…_CONTROL_LEVEL_*`) is not a patient's measurement:
///   `unknown_type`.
///
/// IEEE 11073 glucose codes: the code is 2 × 65536 (partition SCADA) + the term code of IEEE
/// 11073-10101, as the HL7 PHD IG writes them (its `glucose-observation` example: 160368
/// `MDC_CONC_GLU_UNDETERMINED_PLASMA`, "plasma-equivalent", what most current meters report).
/// Term codes from the 11073-10101 nomenclature (also in the Continua/PCHA reference code):
/// `GEN` 28948 → 160020, `CAPILLARY_WHOLEBLOOD` 29112 → 160184, `CAPILLARY_PLASMA` 29116 → 160188,
/// `VENOUS_WHOLEBLOOD` 29120 → 160192, `VENOUS_PLASMA` 29124 → 160196, `ARTERIAL_WHOLEBLOOD`
/// 29128 → 160200, `ARTERIAL_PLASMA` 29132 → 160204, `ISF` (interstitial fluid, CGMs) 29140 → 160212,
/// `UNDETERMINED_WHOLEBLOOD` 29292 → 160364, `UNDETERMINED_PLASMA` 29296 → 160368; control solution
/// `CONTROL` 29136 → 160208 and `CONTROL_LEVEL_LOW`/`MEDIUM`/`HIGH` 29300/29304/29308 → 160372/160376/160380.
/// Every sample type is stored as glucose (LOINC 41653-7); the sample type is not kept.
/// - The unit is `valueQuantity.code` (UCUM), **never** the free-text `unit` (the HL7 PHD examples put
///   junk there). A quantity without `code` is `bad_unit`. `comparator` `>`/`>=` or `<`/`<=` marks
///   a value beyond the meter's range: an `out_of_meter_range` event, not a reading.
/// - Time: `effectiveDateTime`, `effectiveInstant` or `effectivePeriod.start`. A date without a time
///   of day (`2012-09-17`) has no instant and is `bad_timestamp`; a date-time without offset is a
///   naive local time (``DeviceTime``).
/// - Status `entered-in-error` or `cancelled`: the Observation is refused (`unknown_format`).
/// - The device is `device.reference` (`Device/abc` → `abc`; `urn:uuid:x` → `x`).
public struct FHIRDecoder: PayloadDecoder {
    public var format: MessageFormat { .fhir }
    public init() {}

    static let loinc = "http://loinc.org"
    static let mdc = "urn:iso:std:iso:11073:10101"

    enum Code: Hashable {
        case panel, map
        /// Glucose measured on control solution: a meter check, not the patient.
        case controlSolution
        case vital(VitalType)
    }

    static let loincCodes: [String: Code] = [
        "85354-9": .panel, "55284-4": .panel,
        "8480-6": .vital(.systolicBP), "8462-4": .vital(.diastolicBP), "8867-4": .vital(.heartRate),
        "2708-6": .vital(.spo2), "59408-5": .vital(.spo2), "29463-7": .vital(.bodyWeight), "3141-9": .vital(.bodyWeight),
        "8310-5": .vital(.bodyTemperature), "2339-0": .vital(.glucose), "15074-8": .vital(.glucose),
        "41653-7": .vital(.glucose), "2345-7": .vital(.glucose), "14749-6": .vital(.glucose),
    ]
    static let mdcCodes: [String: Code] = [
        "150020": .panel, "150023": .map, "150021": .vital(.systolicBP), "150022": .vital(.diastolicBP),
        "149530": .vital(.heartRate), "149546": .vital(.heartRate), "150456": .vital(.spo2),
        "188736": .vital(.bodyWeight), "150364": .vital(.bodyTemperature),
        // MDC_CONC_GLU_* (see the type's documentation for the term codes).
        "160020": .vital(.glucose), "160184": .vital(.glucose), "160188": .vital(.glucose), "160192": .vital(.glucose),
        "160196": .vital(.glucose), "160200": .vital(.glucose), "160204": .vital(.glucose), "160212": .vital(.glucose),
        "160364": .vital(.glucose), "160368": .vital(.glucose),
        "160208": .controlSolution, "160372": .controlSolution, "160376": .controlSolution, "160380": .controlSolution,
    ]

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        var observations: [JSONValue] = []
        switch root["resourceType"]?.stringValue {
        case "Observation":
            observations = [root]
        case "Bundle":
            guard let type = root["type"]?.stringValue, ["transaction", "batch", "collection"].contains(type) else {
                throw Rejection(.unknownFormat, "FHIR Bundle type is not transaction, batch or collection")
            }
            guard let entries = root["entry"]?.arrayValue else {
                throw Rejection(.missingField, "FHIR Bundle has no entry array")
            }
            observations = entries.compactMap { e in e["resource"].flatMap { $0["resourceType"]?.stringValue == "Observation" ? $0 : nil } }
        default:
            throw Rejection(.unknownFormat, "payload is not a FHIR Observation or Bundle")
        }
        guard !observations.isEmpty else { throw Rejection(.missingField, "FHIR Bundle holds no Observation") }
        let payloadDevice = observations.lazy.compactMap { Self.device($0) }.first
        let device = try resolveDevice(root, payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)
        for observation in observations {
            read(observation, device: device, context: context, into: &collector)
        }
        return try collector.message(id: root["id"]?.stringValue)
    }

    func read(_ o: JSONValue, device: String, context: DecodeContext, into collector: inout ReadingCollector) {
        if let status = o["status"]?.stringValue, status == "entered-in-error" || status == "cancelled" {
            collector.reject(Rejection(.unknownFormat, "FHIR Observation status says it is not a valid measurement"))
            return
        }
        if context.topicDeviceID == nil, let other = Self.device(o), other != device {
            collector.reject(Rejection(.deviceMismatch, "a FHIR Observation names another device than the first"))
            return
        }
        let vendorID = o["id"]?.stringValue ?? o["identifier"]?.arrayValue?.first?["value"]?.stringValue
        let time = Result { () throws(Rejection) -> ReadingTime in try Self.time(o, device: device, context: context) }
        guard let code = Self.code(o["code"]) else {
            collector.reject(Rejection(.unknownType, "FHIR Observation code is not a supported LOINC or MDC vital"))
            return
        }
        switch code {
        case .map:
            return
        case .controlSolution:
            collector.reject(Rejection(.unknownType, "FHIR glucose Observation on control solution (MDC_CONC_GLU_CONTROL): a meter check, not a measurement of the patient"))
        case .vital(let type):
            quantity(o, type: type, time: time, vendorID: vendorID, into: &collector)
        case .panel:
            guard let components = o["component"]?.arrayValue, !components.isEmpty else {
                collector.reject(Rejection(.missingField, "FHIR blood-pressure panel has no component"))
                return
            }
            for c in components {
                switch Self.code(c["code"]) {
                case .vital(let type)?: quantity(c, type: type, time: time, vendorID: vendorID, into: &collector)
                case .map?: continue
                default: collector.reject(Rejection(.unknownType, "FHIR component code is not a supported LOINC or MDC vital"))
                }
            }
        }
    }

    func quantity(
        _ element: JSONValue, type: VitalType, time: Result<ReadingTime, Rejection>, vendorID: String?,
        into collector: inout ReadingCollector
    ) {
        guard let q = element["valueQuantity"]?.objectValue else {
            collector.reject(Rejection(.missingField, "FHIR \(type.rawValue) has no valueQuantity"))
            return
        }
        if let system = q["system"]?.stringValue, system != "http://unitsofmeasure.org" {
            collector.reject(Rejection(.badUnit, "FHIR valueQuantity.system is not UCUM"))
            return
        }
        guard let code = q["code"]?.stringValue, let ucum = UCUMUnit(spelling: code) else {
            collector.reject(Rejection(.badUnit, "FHIR valueQuantity.code is missing or not a UCUM unit vitalsd knows"))
            return
        }
        if let comparator = q["comparator"]?.stringValue {
            let kind: DeviceEvent.Kind = comparator.hasPrefix(">") ? .aboveRange : .belowRange
            collector.events.append(DeviceEvent(deviceID: collector.deviceID, kind: kind, type: type,
                                                measuredAt: try? time.get().date, code: "fhir_comparator"))
            collector.reject(DeviceNumber.rejection(kind, code: "fhir_comparator", field: "valueQuantity.value"))
            return
        }
        collector.add(type, q["value"], field: "valueQuantity.value", unit: code, in: ucum, time: time, vendorID: vendorID)
    }

    static func code(_ concept: JSONValue?) -> Code? {
        guard let concept else { return nil }
        if case .string(let bare) = concept { return loincCodes[bare] }
        for coding in concept["coding"]?.arrayValue ?? [] {
            guard let code = coding["code"]?.stringValue else { continue }
            switch coding["system"]?.stringValue {
            case loinc?: if let c = loincCodes[code] { return c }
            case mdc?: if let c = mdcCodes[code] { return c }
            case nil: if let c = loincCodes[code] { return c }
            default: continue
            }
        }
        return nil
    }

    static func time(_ o: JSONValue, device: String, context: DecodeContext) throws(Rejection) -> ReadingTime {
        let field: String
        let value: JSONValue?
        if let v = o["effectiveDateTime"] {
            (field, value) = ("effectiveDateTime", v)
        } else if let v = o["effectiveInstant"] {
            (field, value) = ("effectiveInstant", v)
        } else if let v = o["effectivePeriod"]?["start"] {
            (field, value) = ("effectivePeriod.start", v)
        } else {
            throw Rejection(.missingField, "FHIR Observation has no effectiveDateTime, effectiveInstant or effectivePeriod.start")
        }
        if let s = value?.stringValue, s.utf8.count <= 10 {
            throw Rejection(.badTimestamp, "FHIR \(field) is a date without a time of day: its instant is unknown")
        }
        return try DeviceTime.text(value, field: field, deviceID: device, context: context)
    }

    static func device(_ o: JSONValue) -> String? {
        guard let reference = o["device"]?["reference"]?.stringValue else { return nil }
        let id: Substring
        if reference.hasPrefix("urn:uuid:") {
            id = reference.dropFirst("urn:uuid:".count)
        } else {
            id = reference.split(separator: "/").last ?? ""
        }
        return DeviceIdentifier.isValid(String(id)) ? String(id) : nil
    }
}
