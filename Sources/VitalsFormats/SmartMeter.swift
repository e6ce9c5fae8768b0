import Foundation
import VitalsDomain

/// Smart Meter (iGlucose, iBloodPressure, iScale, iPulseOx) readings service responses
/// (`payload-formats.md` §1.2): `{"readings":[{"reading_id":900001,"device_id":"860000000000001",
/// "reading_type":"blood_pressure","date_recorded":"2023-05-01T08:15:00","time_zone_offset":-5.0,…}],
/// "status":{…}}`, or one reading object.
///
/// - Device: `device_id` (IMEI or serial). A response covering several devices keeps the first; the
///   readings of the others are `device_mismatch` (publish one device's readings per message).
/// - Time: `date_recorded` (device time) is a date-time without offset; `time_zone_offset` (hours, a
///   float: −5.0, 5.5) is read as the device's UTC offset, so the instant is `date_recorded` minus the
///   offset, and the offset is recorded. (The reference took the field names from client code, not the
///   vendor documentation: that `date_recorded` is the local wall clock is an assumption, the reading
///   the offset field suggests.) Without `time_zone_offset` it is a naive local time read in the
///   configured zone, flagged `local_time_assumed`. `date_received` (server time) is not used.
/// - `reading_type`: `blood_glucose` (`blood_glucose_mgdl`; `blood_glucose_mmol` is sent too: the
///   mg/dL value is stored, and when both are present they must agree within 2 mg/dL or 2 %, at
///   18.018 mg/dL per mmol/L, else `bad_unit`: one field is wrong and vitalsd cannot tell which; only
///   mmol/L sent: stored in mmol/L), `blood_pressure` (`systolic_mmhg`, `diastolic_mmhg`, `pulse_bpm`;
///   `irregular: true` → `irregular_heartbeat`), `weight` (`weight_kg`, else `weight_lbs`, read as
///   floats (`81.6`), checked against each other like glucose, within 0.2 kg or 2 %; `tare_*` not used),
///   `pulse_ox` (`spo2` %, `pulse_bpm`). Other types are `unknown_type`.
/// - `battery` (percent) is device status. `before_meal`, `event_flag` and `short_code` are not stored.
/// - The reading id is `reading_id` (the vendor's dedupe key).
public struct SmartMeterDecoder: PayloadDecoder {
    public var format: MessageFormat { .smartmeter }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        let items: [JSONValue]
        if let list = root["readings"]?.arrayValue {
            items = list
        } else if root["reading_type"] != nil {
            items = [root]
        } else {
            throw Rejection(.unknownFormat, "payload is not a Smart Meter readings response (no readings array)")
        }
        guard !items.isEmpty else { throw Rejection(.missingField, "the Smart Meter response holds no reading") }
        let payloadDevice = items.lazy.compactMap { $0["device_id"]?.identifier }.first
        let device = try resolveDevice(root, payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)
        for item in items {
            guard item.objectValue != nil, let type = item["reading_type"]?.stringValue else {
                collector.reject(Rejection(.missingField, "a Smart Meter reading has no reading_type"))
                continue
            }
            if context.topicDeviceID == nil, let other = item["device_id"]?.identifier, other != device {
                collector.reject(Rejection(.deviceMismatch, "a Smart Meter reading names another device than the first"))
                continue
            }
            let time = Result { () throws(Rejection) -> ReadingTime in
                var offset: Int?
                if let hours = item["time_zone_offset"].flatMap(DeviceNumber.plain), abs(hours) <= 14 {
                    offset = Int((hours * 3600).rounded())
                }
                return try DeviceTime.local(item["date_recorded"], field: "date_recorded", offsetSeconds: offset, deviceID: device, context: context)
            }
            let id = item["reading_id"]?.identifier
            switch type {
            case "blood_glucose":
                add(.glucose, item, ("blood_glucose_mgdl", "mg/dL", .milligramPerDecilitre), ("blood_glucose_mmol", "mmol/L", .millimolePerLitre),
                    factor: UCUMUnit.glucoseMgPerDLPerMmolPerL, tolerance: 2, time: time, id: id, &collector)
            case "blood_pressure":
                let flags: ObservationFlags = item["irregular"]?.flag == true ? .irregularHeartbeat : []
                collector.add(.systolicBP, item["systolic_mmhg"], field: "systolic_mmhg", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags, vendorID: id)
                collector.add(.diastolicBP, item["diastolic_mmhg"], field: "diastolic_mmhg", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags, vendorID: id)
                if item["pulse_bpm"] != nil && item["pulse_bpm"] != .null {
                    collector.add(.heartRate, item["pulse_bpm"], field: "pulse_bpm", unit: "bpm", in: .perMinute, time: time, flags: flags, vendorID: id)
                }
            case "weight":
                add(.bodyWeight, item, ("weight_kg", "kg", .kilogram), ("weight_lbs", "lb", .pound),
                    factor: 0.453_592_37, tolerance: 0.2, time: time, id: id, &collector)
            case "pulse_ox":
                collector.add(.spo2, item["spo2"], field: "spo2", unit: "%", in: .percent, time: time, vendorID: id)
                if item["pulse_bpm"] != nil && item["pulse_bpm"] != .null {
                    collector.add(.heartRate, item["pulse_bpm"], field: "pulse_bpm", unit: "bpm", in: .perMinute, time: time, vendorID: id)
                }
            default:
                collector.reject(Rejection(.unknownType, "Smart Meter reading_type is not a supported vital"))
                continue
            }
            collector.status(.batteryPercent, item["battery"], at: (try? time.get().date) ?? context.receivedAt)
        }
        return try collector.message()
    }

    /// Adds a reading sent in two units: the `primary` one is stored; when both are numbers they must
    /// agree (`primary ≈ secondary × factor`, within `tolerance` in the primary unit or 2 %).
    private func add(
        _ type: VitalType, _ item: JSONValue, _ primary: (field: String, unit: String, ucum: UCUMUnit),
        _ secondary: (field: String, unit: String, ucum: UCUMUnit), factor: Double, tolerance: Double,
        time: Result<ReadingTime, Rejection>, id: String?, _ collector: inout ReadingCollector
    ) {
        let first = item[primary.field].flatMap { $0 == .null ? nil : $0 }
        let second = item[secondary.field].flatMap { $0 == .null ? nil : $0 }
        guard let first else {
            collector.add(type, second, field: secondary.field, unit: secondary.unit, in: secondary.ucum, time: time, vendorID: id)
            return
        }
        if let a = DeviceNumber.plain(first), let b = second.flatMap(DeviceNumber.plain), abs(a - b * factor) > max(tolerance, abs(a) * 0.02) {
            collector.reject(Rejection(.badUnit, "Smart Meter \(primary.field) and \(secondary.field) disagree: one of them is wrong"))
            return
        }
        collector.add(type, first, field: primary.field, unit: primary.unit, in: primary.ucum, time: time, vendorID: id)
    }
}
