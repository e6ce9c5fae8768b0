import Foundation
import VitalsDomain

/// Telli Health webhooks, v1 and v2 (`payload-formats.md` §1.4).
///
/// - Device: `deviceId` (an IMEI string). `time` is epoch milliseconds **as a string**
///   (`"1721382524000"`); the magnitude rule of ``DeviceTime`` applies. v2 `tzOffsetMinutes` (a
///   string of minutes) is recorded as the local offset.
/// - `mem: "1"` flags `from_device_memory` (a stored reading sent later; it may arrive more than once,
///   the unique key absorbs repeats).
/// - `readingType`: `BloodPressure` (`systolic`, `diastolic` mmHg, `pulse` bpm, `arrhythmia: 1` →
///   `irregular_heartbeat`), `BloodGlucose` (`glucose` with `unit` `mg/dL`/`mmol/L`, required),
///   `Weight` (`weight`, `unit` `lb`/`kg`), `SpO2` (`spo2` %, `pulse` bpm; `battery` and `pi` are device
///   status), `Temperature` (`temperature`, `unit` `C`/`F`). `PeakFlow` and the sleeping-mat types are
///   `unknown_type`. Unknown keys are ignored (the vendor's own glucose example has a stray `pulse`).
/// - `devdata.batt` `"0"`–`"10"` is battery in tenths (→ percent), `"pwr"` external power;
///   `devdata.r` `"1"`–`"4"` signal bars: device status. Gen2 messages with `type` (`Heartbeat`, …)
///   and no reading carry only device status.
public struct TelliDecoder: PayloadDecoder {
    public var format: MessageFormat { .telli }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard root.objectValue != nil else { throw Rejection(.unknownFormat, "a Telli payload is a JSON object") }
        let device = try resolveDevice(root, payloadDevice: root["deviceId"]?.identifier, context: context)
        var collector = ReadingCollector(deviceID: device)
        let time = Result { () throws(Rejection) -> ReadingTime in
            var t = try DeviceTime.epoch(root["time"], field: "time", context: context)
            if let minutes = root["tzOffsetMinutes"].flatMap(DeviceNumber.plain), abs(minutes) <= 14 * 60 {
                t.offsetMinutes = Int(minutes)
            }
            return t
        }
        let at = (try? time.get().date) ?? context.receivedAt
        let flags: ObservationFlags = root["mem"]?.flag == true ? .fromDeviceMemory : []
        if let devdata = root["devdata"] {
            if root["data"]?["battery"] != nil {
                // The reading's own battery value (SpO2) wins over the cellular hub's.
            } else if devdata["batt"]?.stringValue == "pwr" {
                collector.status(.externalPower, .number(1), at: at)
            } else {
                collector.status(.batteryPercent, devdata["batt"], scale: 10, at: at)
            }
            collector.status(.signalBars, devdata["r"], at: at)
        }
        guard let readingType = root["readingType"]?.stringValue else {
            if root["type"] != nil { return try collector.message() }
            throw Rejection(.missingField, "Telli payload has no readingType")
        }
        guard let data = root["data"], data.objectValue != nil else {
            throw Rejection(.missingField, "Telli payload has no data object")
        }
        switch readingType {
        case "BloodPressure":
            let bp = flags.union(data["arrhythmia"]?.flag == true ? .irregularHeartbeat : [])
            collector.add(.systolicBP, data["systolic"], field: "data.systolic", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: bp)
            collector.add(.diastolicBP, data["diastolic"], field: "data.diastolic", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: bp)
            if data["pulse"] != nil {
                collector.add(.heartRate, data["pulse"], field: "data.pulse", unit: "bpm", in: .perMinute, time: time, flags: bp)
            }
        case "BloodGlucose":
            add(.glucose, data, "glucose", units: ["mg/dL": .milligramPerDecilitre, "mmol/L": .millimolePerLitre], time, flags, &collector)
        case "Weight":
            add(.bodyWeight, data, "weight", units: ["lb": .pound, "kg": .kilogram], time, flags, &collector)
        case "Temperature":
            add(.bodyTemperature, data, "temperature", units: ["C": .celsius, "F": .fahrenheit], time, flags, &collector)
        case "SpO2":
            collector.add(.spo2, data["spo2"], field: "data.spo2", unit: "%", in: .percent, time: time, flags: flags)
            if data["pulse"] != nil {
                collector.add(.heartRate, data["pulse"], field: "data.pulse", unit: "bpm", in: .perMinute, time: time, flags: flags)
            }
            collector.status(.batteryPercent, data["battery"], at: at)
            collector.status(.perfusionIndex, data["pi"], at: at)
        default:
            collector.reject(Rejection(.unknownType, "Telli readingType is not a supported vital"))
        }
        return try collector.message()
    }

    private func add(
        _ type: VitalType, _ data: JSONValue, _ field: String, units: [String: UCUMUnit], _ time: Result<ReadingTime, Rejection>,
        _ flags: ObservationFlags, _ collector: inout ReadingCollector
    ) {
        guard let unit = data["unit"]?.stringValue, let ucum = units[unit] else {
            collector.reject(Rejection(.badUnit, "Telli \(type.rawValue) unit is missing or not one Telli documents"))
            return
        }
        collector.add(type, data[field], field: "data.\(field)", unit: unit, in: ucum, time: time, flags: flags)
    }
}
