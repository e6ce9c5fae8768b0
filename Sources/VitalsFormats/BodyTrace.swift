import Foundation
import VitalsDomain

/// BodyTrace cellular scale (`payload-formats.md` §1.3).
///
/// `{"deviceId":8600000000000,"ts":1380562575798,"batteryVoltage":5522,"rssi":91,"values":{"unit":1,"weight":69800,"tare":0}}`
///
/// - Device: `deviceId`, a JSON number: the IMEI without leading zeros and without its check digit;
///   enroll the device under that number written in decimal (`8600000000000`).
/// - `ts` is epoch milliseconds (UTC); the magnitude rule of ``DeviceTime`` applies.
/// - `values.weight` is in **grams** whatever `values.unit` says (that is the display unit). The
///   member name `"values "` with a trailing space (a typo in the vendor README) is accepted.
/// - `values.tare` above 100 g is a calibration error: the weight is off by that much, so it is a
///   `device_error` event, not a reading.
/// - `batteryVoltage` (mV) and `rssi` (sent positive, meaning −dBm) are device status.
public struct BodyTraceDecoder: PayloadDecoder {
    public var format: MessageFormat { .bodytrace }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard root.objectValue != nil else { throw Rejection(.unknownFormat, "a BodyTrace payload is a JSON object") }
        let device = try resolveDevice(root, payloadDevice: root["deviceId"]?.identifier, context: context)
        var collector = ReadingCollector(deviceID: device)
        let time = Result { () throws(Rejection) -> ReadingTime in try DeviceTime.epoch(root["ts"], field: "ts", context: context) }
        let at = (try? time.get().date) ?? context.receivedAt
        collector.status(.batteryMillivolts, root["batteryVoltage"], at: at)
        collector.status(.signalDBm, root["rssi"], scale: -1, at: at)
        guard let values = root["values"] ?? root["values "] else {
            return try collector.message()
        }
        if let tare = values["tare"].flatMap(DeviceNumber.plain), abs(tare) > 100 {
            collector.events.append(DeviceEvent(deviceID: device, kind: .deviceError, type: .bodyWeight, measuredAt: try? time.get().date,
                                                code: "tare_drift"))
            collector.reject(DeviceNumber.rejection(.deviceError, code: "tare_drift", field: "values.tare"))
        } else {
            collector.add(.bodyWeight, values["weight"], field: "values.weight", unit: "g", in: .gram, time: time)
        }
        return try collector.message()
    }
}
