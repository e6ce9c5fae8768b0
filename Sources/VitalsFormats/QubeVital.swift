import Foundation
import VitalsDomain

/// The Qube-Vital BLE gateway's MQTT messages (`payload-formats.md` §1.11), all on one topic
/// (`CM4_BLE_GW_TX`):
/// `{"from":"PI","to":"CLOUD","time":1739360702,"mac":"aa:bb:cc:dd:ee:02","type":"reportAttribute",
/// "data":{"attribute":"WBP_JUMPER","ble_mac":"AA:BB:CC:DD:EE:03","value":{"bp_high":120,"bp_low":78,"pr":71}}}`.
///
/// - `type` `HB_Msg` is the gateway's heartbeat: no reading. It is accepted as a heartbeat
///   (``DecodedMessage/isHeartbeat``) and stored nowhere, not even as a dead letter, before any device
///   is looked for (a heartbeat names no measuring device, and arrives all the time). `reportAttribute`
///   is a reading; any other `type` is `unknown_type`, a missing one `missing_field`.
/// - Device: `data.ble_mac`, the measuring device's Bluetooth address as sent (`AA:BB:CC:DD:EE:03`);
///   enroll the device under it. The gateway's own `mac`/`IMEI` are not the device.
/// - `time` is epoch **seconds** (the magnitude rule of ``DeviceTime`` applies); no offset is sent.
/// - `data.attribute` names the device kind, `data.value` holds its values:
///   `WBP_JUMPER` `bp_high`/`bp_low` mmHg and `pr` bpm; `CONTOUR` `blood_glucose` mg/dL (`marker`,
///   the meal marker, is not stored: readings carry no meal context); `BodyScale_JUMPER` `weight` kg
///   (`Resistance`, the scale's bioimpedance, is not a vital and is ignored); `TEMO_Jumper` `Temp` °C
///   (`mode`, the measuring site, is ignored); `Oximeter_JUMPER` `spo2` %, `pulse` bpm, and `pi`
///   (perfusion index, as sent) device status, never a reading. Any other attribute is `unknown_type`.
///   Units are not sent: they are the ones the reference gives for each kind.
/// - **Personal data.** The payload carries the patient's national id (`citiz`), names (`nameEN`,
///   `nameTH`), birth date (`brith`) and gender. The decoder never reads them: they are in no reading,
///   status, event, rejection detail or log line. The raw payload is kept only when the message (or
///   one of its readings) becomes a dead letter, in `dead_letter_payloads`, shown by
///   `vitalsd dead-letters show`.
public struct QubeVitalDecoder: PayloadDecoder {
    public var format: MessageFormat { .qube }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard root.objectValue != nil else { throw Rejection(.unknownFormat, "a Qube-Vital payload is a JSON object") }
        guard let type = root["type"]?.stringValue else { throw Rejection(.missingField, "Qube-Vital payload has no type") }
        if type == "HB_Msg" {
            var heartbeat = DecodedMessage(messageID: nil, deviceID: context.topicDeviceID ?? "", readings: [])
            heartbeat.isHeartbeat = true
            return heartbeat
        }
        guard type == "reportAttribute" else { throw Rejection(.unknownType, "Qube-Vital type is neither HB_Msg nor reportAttribute") }
        guard let data = root["data"], data.objectValue != nil else {
            throw Rejection(.missingField, "Qube-Vital reportAttribute has no data object")
        }
        let device = try resolveDevice(root, payloadDevice: data["ble_mac"]?.identifier, context: context)
        var collector = ReadingCollector(deviceID: device)
        guard let attribute = data["attribute"]?.stringValue else {
            throw Rejection(.missingField, "Qube-Vital data has no attribute")
        }
        guard let value = data["value"], value.objectValue != nil else {
            throw Rejection(.missingField, "Qube-Vital data has no value object")
        }
        let time = Result { () throws(Rejection) -> ReadingTime in try DeviceTime.epoch(root["time"], field: "time", context: context) }
        switch attribute {
        case "WBP_JUMPER":
            collector.add(.systolicBP, value["bp_high"], field: "data.value.bp_high", unit: "mmHg", in: .millimetreOfMercury, time: time)
            collector.add(.diastolicBP, value["bp_low"], field: "data.value.bp_low", unit: "mmHg", in: .millimetreOfMercury, time: time)
            if value["pr"] != nil {
                collector.add(.heartRate, value["pr"], field: "data.value.pr", unit: "bpm", in: .perMinute, time: time)
            }
        case "CONTOUR":
            collector.add(.glucose, value["blood_glucose"], field: "data.value.blood_glucose", unit: "mg/dL", in: .milligramPerDecilitre, time: time)
        case "BodyScale_JUMPER":
            collector.add(.bodyWeight, value["weight"], field: "data.value.weight", unit: "kg", in: .kilogram, time: time)
        case "TEMO_Jumper":
            collector.add(.bodyTemperature, value["Temp"], field: "data.value.Temp", unit: "Cel", in: .celsius, time: time)
        case "Oximeter_JUMPER":
            collector.add(.spo2, value["spo2"], field: "data.value.spo2", unit: "%", in: .percent, time: time)
            if value["pulse"] != nil {
                collector.add(.heartRate, value["pulse"], field: "data.value.pulse", unit: "bpm", in: .perMinute, time: time)
            }
            collector.status(.perfusionIndex, value["pi"], at: (try? time.get().date) ?? context.receivedAt)
        default:
            collector.reject(Rejection(.unknownType, "Qube-Vital attribute is not a supported device kind"))
        }
        return try collector.message()
    }
}
