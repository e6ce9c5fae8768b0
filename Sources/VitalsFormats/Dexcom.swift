import Foundation
import VitalsDomain

/// Dexcom API v3 estimated glucose values (`payload-formats.md` §1.7):
/// `{"recordType":"egv","recordVersion":"3.0","userId":…,"records":[…]}`; the v2 shape
/// `{"unit":…,"egvs":[…]}` is read too.
///
/// - Time: `systemTime`, which Dexcom defines as UTC; receiver records send it without an offset,
///   so a `systemTime` without offset is read as UTC (not local). `displayTime`'s offset, present only
///   for `iOS`/`android` display devices, is recorded as the local offset.
/// - `value` may be null: with `status` `high` or `low` it is an above/below-range event; otherwise
///   `not_a_number`. 39 and 401 mg/dL are Dexcom's LO/HI placeholders (LoopKit#397): range events.
/// - `unit` per record (v3) or per response (v2): `mg/dL` or `mmol/L`; `unknown` is `bad_unit`.
/// - Device: `transmitterId` (may be null); the reading id is `recordId`.
public struct DexcomDecoder: PayloadDecoder {
    public var format: MessageFormat { .dexcom }
    public init() {}

    static let sentinels = SentinelRules(belowRangeValue: 39, aboveRangeValue: 401)

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard let records = root["records"]?.arrayValue ?? root["egvs"]?.arrayValue else {
            throw Rejection(.unknownFormat, "payload is not a Dexcom EGV response (no records array)")
        }
        if let type = root["recordType"]?.stringValue, type != "egv" {
            throw Rejection(.unknownFormat, "Dexcom recordType is not egv")
        }
        guard !records.isEmpty else { throw Rejection(.missingField, "the Dexcom response holds no record") }
        let payloadDevice = records.lazy.compactMap { $0["transmitterId"]?.identifier }.first
        let device = try resolveDevice(root, payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)
        for record in records {
            guard record.objectValue != nil else {
                collector.reject(Rejection(.malformedJSON, "a Dexcom record is not an object"))
                continue
            }
            if context.topicDeviceID == nil, let other = record["transmitterId"]?.identifier, other != device {
                collector.reject(Rejection(.deviceMismatch, "a Dexcom record names another transmitter than the first"))
                continue
            }
            let time = Result { () throws(Rejection) -> ReadingTime in
                var t = try DeviceTime.text(record["systemTime"], field: "systemTime", deviceID: device, context: context, naiveIsUTC: true)
                if let display = record["displayTime"]?.stringValue, MeasurementTimePolicy.parseRFC3339(display) != nil {
                    t.offsetMinutes = DeviceTime.offsetMinutes(ofRFC3339: display)
                }
                return t
            }
            let unitText = record["unit"]?.stringValue ?? root["unit"]?.stringValue
            guard let unitText, unitText == "mg/dL" || unitText == "mmol/L", let ucum = UCUMUnit(spelling: unitText) else {
                collector.reject(Rejection(.badUnit, "Dexcom unit is missing or unknown"))
                continue
            }
            var value = record["value"]
            if value == nil || value == .null, let status = record["status"]?.stringValue, status == "high" || status == "low" {
                value = .string(status == "high" ? "HI" : "LO")
            }
            collector.add(.glucose, value == .null ? nil : value, field: "value", unit: unitText, in: ucum, time: time,
                          vendorID: record["recordId"]?.stringValue, sentinels: Self.sentinels)
        }
        return try collector.message()
    }
}
