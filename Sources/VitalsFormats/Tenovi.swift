import Foundation
import VitalsDomain

/// Tenovi HWI measurement webhook (`payload-formats.md` §1.1): one object, or an array of them
/// ("Post as Array").
///
/// - Device: `hwi_device_id` (Tenovi's key for a patient's device; `hardware_uuid` is the gateway
///   and is not used).
/// - `value_1`/`value_2` are numbers or numeric strings (`"128.00"`); `value_2` may be null.
/// - Time: `timestamp` (ISO 8601 UTC, device time); `timezone_offset` is in hours (−4) and is recorded
///   as the local offset; `estimated_timestamp: true` flags `estimated_time` (time source `vendor_estimate`).
/// - Metrics: `blood_pressure` (value_1 systolic, value_2 diastolic, mmHg), `pulse` (bpm), `spO2` (%),
///   `glucose` (mg/dL; `filter_params.alert` = `sensor_result_above_range` is an above-range event,
///   `measurement_location` = `control solution` is a meter check, refused as `unknown_type`).
///   `irregular_heartbeat` (sent only when detected) flags the blood pressure and pulse of the same
///   `timestamp` and `measurement_index` in the message; alone (Tenovi's default, one metric per
///   POST) it is a ``ReadingMarker`` that flags the device's readings of that time when stored. `battery_percentage` and `perfusion_index` are
///   device status. `weight` and `temperature` units are not documented by Tenovi: `bad_unit`, never
///   guessed. Other metrics (`steps`, `sleep`, pillbox events) are `unknown_type`.
public struct TenoviDecoder: PayloadDecoder {
    public var format: MessageFormat { .tenovi }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        let items: [JSONValue]
        switch root {
        case .array(let a): items = a
        case .object: items = [root]
        default: throw Rejection(.unknownFormat, "a Tenovi payload is an object or an array of objects")
        }
        guard !items.isEmpty else { throw Rejection(.missingField, "the Tenovi array is empty") }
        let payloadDevice = items.lazy.compactMap { $0["hwi_device_id"]?.identifier }.first
        let device = try resolveDevice(root.arrayValue == nil ? root : items[0], payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)

        func groupKey(_ item: JSONValue) -> String {
            "\(item["timestamp"]?.stringValue ?? "")|\(DeviceNumber.plain(item["filter_params"]?["measurement_index"] ?? .null) ?? -1)"
        }
        let irregularGroups = Set(items.filter { $0["metric"]?.stringValue == "irregular_heartbeat" && ($0["value_1"]?.flag ?? true) }.map(groupKey))
        let groupsWithBP = Set(items.filter { ["blood_pressure", "pulse"].contains($0["metric"]?.stringValue ?? "") }.map(groupKey))

        for item in items {
            guard item.objectValue != nil, let metric = item["metric"]?.stringValue else {
                collector.reject(Rejection(.missingField, "a Tenovi measurement has no metric"))
                continue
            }
            if context.topicDeviceID == nil, let other = item["hwi_device_id"]?.identifier, other != device {
                collector.reject(Rejection(.deviceMismatch, "a Tenovi measurement names another device than the first"))
                continue
            }
            let time = Result { () throws(Rejection) -> ReadingTime in
                var t = try DeviceTime.text(item["timestamp"], field: "timestamp", deviceID: device, context: context)
                if let hours = item["timezone_offset"].flatMap(DeviceNumber.plain), abs(hours) <= 14 {
                    t.offsetMinutes = Int((hours * 60).rounded())
                }
                if item["estimated_timestamp"]?.flag == true {
                    t.flags.insert(.estimatedTime)
                    t.source = .vendorEstimate
                }
                return t
            }
            let at = (try? time.get().date) ?? context.receivedAt
            let flags: ObservationFlags = irregularGroups.contains(groupKey(item)) ? .irregularHeartbeat : []
            switch metric {
            case "blood_pressure":
                collector.add(.systolicBP, item["value_1"], field: "value_1", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags)
                collector.add(.diastolicBP, item["value_2"], field: "value_2", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags)
            case "pulse":
                collector.add(.heartRate, item["value_1"], field: "value_1", unit: "bpm", in: .perMinute, time: time, flags: flags)
            case "spO2":
                collector.add(.spo2, item["value_1"], field: "value_1", unit: "%", in: .percent, time: time)
            case "glucose":
                if item["filter_params"]?["measurement_location"]?.stringValue == "control solution" {
                    collector.reject(Rejection(.unknownType, "Tenovi glucose measured on control solution: a meter check, not the patient"))
                } else if item["filter_params"]?["alert"]?.stringValue == "sensor_result_above_range" {
                    collector.events.append(DeviceEvent(deviceID: device, kind: .aboveRange, type: .glucose, measuredAt: try? time.get().date,
                                                        code: "sensor_result_above_range"))
                    collector.reject(DeviceNumber.rejection(.aboveRange, code: "sensor_result_above_range", field: "value_1"))
                } else {
                    collector.add(.glucose, item["value_1"], field: "value_1", unit: "mg/dL", in: .milligramPerDecilitre, time: time)
                }
            case "irregular_heartbeat":
                // With its blood pressure in the message it is already a flag; alone it marks the
                // readings of its time, stored before or after it.
                if !groupsWithBP.contains(groupKey(item)), item["value_1"]?.flag ?? true {
                    switch time {
                    case .success(let t):
                        collector.markers.append(ReadingMarker(deviceID: device, measuredAt: t.date, flags: .irregularHeartbeat))
                    case .failure(let rejection):
                        collector.reject(rejection)
                    }
                }
            case "battery_percentage":
                collector.status(.batteryPercent, item["value_1"], at: at)
            case "perfusion_index":
                collector.status(.perfusionIndex, item["value_1"], at: at)
            case "weight", "temperature":
                collector.reject(Rejection(.badUnit, "Tenovi does not document the unit of \(metric); vitalsd does not guess it"))
            default:
                collector.reject(Rejection(.unknownType, "Tenovi metric is not a supported vital"))
            }
        }
        return try collector.message()
    }
}
