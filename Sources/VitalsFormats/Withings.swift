import Foundation
import VitalsDomain

/// Withings measure groups (`payload-formats.md` §1.5): a getmeas response
/// `{"status":0,"body":{"timezone":…,"measuregrps":[…]}}`, `{"measuregrps":[…]}`, one group, or an
/// array of groups. (The Withings notification itself is form data without values; the integration
/// that calls getmeas publishes the response.)
///
/// - Each measure's value is `value × 10^unit` (`65750, -3` → 65.75 kg).
/// - meastype 1 weight kg, 9 diastolic mmHg, 10 systolic mmHg, 11 pulse bpm, 54 SpO2 %, 71 and 12
///   temperature °C; every other meastype (body composition, AFib classification 130, …) is
///   `unknown_type`, never a failure of the group.
/// - `date` is epoch seconds (measurement time); `body.timezone` (IANA) gives the recorded local offset.
/// - `category` 2 is a user objective, not a measurement: `unknown_type`.
/// - `attrib` 2 and 4 (entered by hand) are stored as manual readings (`source = manual`, flag
///   `manual_entry`), which never count as days of data; `attrib` 1 (device could not tell which
///   user measured) is refused as `device_mismatch`.
/// - Device: `deviceid`; the reading id is `grpid`. A `status` other than 0 is `unknown_format`.
public struct WithingsDecoder: PayloadDecoder {
    public var format: MessageFormat { .withings }
    public init() {}

    static let types: [Int: (VitalType, String, UCUMUnit)] = [
        1: (.bodyWeight, "kg", .kilogram), 9: (.diastolicBP, "mmHg", .millimetreOfMercury),
        10: (.systolicBP, "mmHg", .millimetreOfMercury), 11: (.heartRate, "bpm", .perMinute), 54: (.spo2, "%", .percent),
        71: (.bodyTemperature, "Cel", .celsius), 12: (.bodyTemperature, "Cel", .celsius),
    ]

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        if let status = root["status"], status != .number(0) {
            throw Rejection(.unknownFormat, "Withings status is not 0: the response carries an error, not measures")
        }
        let groups: [JSONValue]
        let zone = (root["body"]?["timezone"]?.stringValue ?? root["timezone"]?.stringValue).flatMap(TimeZone.init(identifier:))
        if let g = root["body"]?["measuregrps"]?.arrayValue ?? root["measuregrps"]?.arrayValue {
            groups = g
        } else if root["measures"] != nil {
            groups = [root]
        } else if let a = root.arrayValue {
            groups = a
        } else {
            throw Rejection(.unknownFormat, "payload is not a Withings getmeas response or measure group")
        }
        guard !groups.isEmpty else { throw Rejection(.missingField, "the Withings response holds no measure group") }
        let payloadDevice = groups.lazy.compactMap { $0["deviceid"]?.identifier }.first
        let device = try resolveDevice(root, payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)
        for group in groups {
            guard let measures = group["measures"]?.arrayValue else {
                collector.reject(Rejection(.missingField, "a Withings measure group has no measures"))
                continue
            }
            let grpid = group["grpid"]?.identifier
            let groupRejection: Rejection?
            if context.topicDeviceID == nil, let other = group["deviceid"]?.identifier, other != device {
                groupRejection = Rejection(.deviceMismatch, "a Withings measure group names another device than the first")
            } else if group["category"].flatMap(DeviceNumber.plain) == 2 {
                groupRejection = Rejection(.unknownType, "Withings category 2 is a user objective, not a measurement")
            } else if group["attrib"].flatMap(DeviceNumber.plain) == 1 {
                groupRejection = Rejection(.deviceMismatch, "Withings attrib 1: the device could not tell which user measured")
            } else {
                groupRejection = nil
            }
            let attrib = group["attrib"].flatMap(DeviceNumber.plain)
            let manual = attrib == 2 || attrib == 4
            let time = Result { () throws(Rejection) -> ReadingTime in
                var t = try DeviceTime.epoch(group["date"], field: "date", context: context)
                if let zone { t.offsetMinutes = zone.secondsFromGMT(for: t.date) / 60 }
                return t
            }
            for measure in measures {
                if let groupRejection {
                    collector.reject(groupRejection)
                    continue
                }
                guard let typeCode = measure["type"].flatMap(DeviceNumber.plain), let (type, unit, ucum) = Self.types[Int(exactly: typeCode) ?? -1] else {
                    collector.reject(Rejection(.unknownType, "Withings meastype is not a supported vital"))
                    continue
                }
                guard let raw = measure["value"], case .number(let mantissa) = raw,
                      let power = measure["unit"].flatMap(DeviceNumber.plain), power == power.rounded(), abs(power) <= 12 else {
                    collector.reject(Rejection(.notANumber, "Withings measure value or unit is not an integer"))
                    continue
                }
                let value = power < 0 ? mantissa / pow(10, -power) : mantissa * pow(10, power)
                collector.add(type, .number(value), field: "value", unit: unit, in: ucum, time: time,
                              flags: manual ? .manualEntry : [], vendorID: grpid)
                if manual { collector.markManual(from: collector.readings.count - 1) }
            }
        }
        return try collector.message()
    }
}
