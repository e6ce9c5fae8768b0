import Foundation
import VitalsDomain

/// Impilo platform readings (`payload-formats.md` §1.9): one record, or an array of records.
/// Blood pressure `{"readingTimestamp":"2026-11-20T14:05:00Z","systolic":128,"diastolic":82,
/// "heartRate":70,"deviceId":"…","deviceTimeZoneOffset":-21600,"manual":false}`, glucose
/// `{"readingTimestamp":…,"glucose":104,"glucoseUnit":"mgdl","beforeMeal":true,…}`, heart rate
/// `{"readingTimestamp":…,"heartRate":64,…}`.
///
/// - Device: `deviceId`, else `deviceIdentifier`. `patientId` names a patient, not a device: a record
///   with only `patientId` takes its device from the topic (or the configured device field).
/// - Time: `readingTimestamp` is a UTC date-time (read as UTC even without `Z`);
///   `deviceTimeZoneOffset` is in **seconds** (−21600 = UTC−6) and recorded as the local offset in
///   minutes when within ±14 h; without it no local offset is recorded. `patientTimeZoneOffset` is
///   not used.
/// - The record's kind by its members: `systolic` → blood pressure (`systolic`, `diastolic` mmHg,
///   `heartRate` bpm), else `glucose` → glucose, else `heartRate` → pulse; none: `unknown_type`.
/// - Units, when sent: `systolicUnit`/`diastolicUnit` `mmhg`, `heartRateUnit` `bpm`, `glucoseUnit`
///   `mgdl` (the spellings Impilo documents, any case); another spelling is `bad_unit`, never guessed.
///   Absent units are the documented ones. `beforeMeal`/`afterMeal` are not stored.
/// - `manual: true` (entered by hand) is stored as a manual reading (`source = manual`, flag
///   `manual_entry`), which never counts as a day of data.
public struct ImpiloDecoder: PayloadDecoder {
    public var format: MessageFormat { .impilo }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        let records: [JSONValue]
        switch root {
        case .array(let a): records = a
        case .object: records = [root]
        default: throw Rejection(.unknownFormat, "an Impilo payload is an object or an array of objects")
        }
        guard !records.isEmpty else { throw Rejection(.missingField, "the Impilo array is empty") }
        func named(_ r: JSONValue) -> String? { r["deviceId"]?.identifier ?? r["deviceIdentifier"]?.identifier }
        let device = try resolveDevice(root.arrayValue == nil ? root : records[0], payloadDevice: records.lazy.compactMap(named).first,
                                       context: context)
        var collector = ReadingCollector(deviceID: device)
        for record in records {
            guard record.objectValue != nil else {
                collector.reject(Rejection(.malformedJSON, "an Impilo record is not an object"))
                continue
            }
            if context.topicDeviceID == nil, let other = named(record), other != device {
                collector.reject(Rejection(.deviceMismatch, "an Impilo record names another device than the first"))
                continue
            }
            let time = Result { () throws(Rejection) -> ReadingTime in
                var t = try DeviceTime.text(record["readingTimestamp"], field: "readingTimestamp", deviceID: device, context: context, naiveIsUTC: true)
                // The `Z` of a UTC time says nothing of the device's zone: only deviceTimeZoneOffset does.
                t.offsetMinutes = record["deviceTimeZoneOffset"].flatMap(DeviceNumber.plain)
                    .flatMap { abs($0) <= 14 * 3600 ? Int(($0 / 60).rounded()) : nil }
                return t
            }
            let manual = record["manual"]?.flag == true
            let flags: ObservationFlags = manual ? .manualEntry : []
            let before = collector.readings.count
            func unitOK(_ field: String, _ documented: String) -> Bool {
                guard let sent = record[field], sent != .null else { return true }
                return sent.stringValue?.lowercased() == documented
            }
            func heartRate() {
                guard record["heartRate"] != nil && record["heartRate"] != .null else { return }
                guard unitOK("heartRateUnit", "bpm") else {
                    return collector.reject(Rejection(.badUnit, "Impilo heartRateUnit is not bpm"))
                }
                collector.add(.heartRate, record["heartRate"], field: "heartRate", unit: "bpm", in: .perMinute, time: time, flags: flags)
            }
            if record["systolic"] != nil {
                if unitOK("systolicUnit", "mmhg") && unitOK("diastolicUnit", "mmhg") {
                    collector.add(.systolicBP, record["systolic"], field: "systolic", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags)
                    collector.add(.diastolicBP, record["diastolic"], field: "diastolic", unit: "mmHg", in: .millimetreOfMercury, time: time, flags: flags)
                } else {
                    collector.reject(Rejection(.badUnit, "Impilo systolicUnit or diastolicUnit is not mmhg"))
                }
                heartRate()
            } else if record["glucose"] != nil {
                if unitOK("glucoseUnit", "mgdl") {
                    collector.add(.glucose, record["glucose"], field: "glucose", unit: "mg/dL", in: .milligramPerDecilitre, time: time, flags: flags)
                } else {
                    collector.reject(Rejection(.badUnit, "Impilo glucoseUnit is not mgdl"))
                }
            } else if record["heartRate"] != nil && record["heartRate"] != .null {
                heartRate()
            } else {
                collector.reject(Rejection(.unknownType, "Impilo record has no systolic, glucose or heartRate"))
            }
            if manual { collector.markManual(from: before) }
        }
        return try collector.message()
    }
}
