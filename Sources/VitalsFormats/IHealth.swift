import Foundation
import VitalsDomain

/// iHealth Open API v2 blood-pressure lists (`payload-formats.md` §1.6):
/// `{"BPDataList":[…],"BPUnit":0,…}`.
///
/// - `HP` systolic, `LP` diastolic, `HR` pulse; `BPUnit` 0 = mmHg, 1 = kPa ([K] in the reference).
/// - `IsArr` 1 flags `irregular_heartbeat`.
/// - Time: `MDate` is the **local wall clock encoded as if it were UTC** (checked on the vendor
///   sample): the instant is `MDate − offset`, with the offset from `TimeZone` (`-0500`) or
///   `time_zone` (`-05:00`). Without either, `MDate` is a naive local time read in the configured zone.
/// - `DataSource` other than `FromDevice` is a manual entry: stored as `source = manual`.
/// - The reading id is `DataID`. The items carry no device id: the device comes from the topic (or
///   the configured device field).
/// - `WeightDataList` and `BODataList` item fields are not documented in the reference: their items are
///   `unknown_type`, never guessed.
public struct IHealthDecoder: PayloadDecoder {
    public var format: MessageFormat { .ihealth }
    public init() {}

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard root.objectValue != nil else { throw Rejection(.unknownFormat, "an iHealth payload is a JSON object") }
        let device = try resolveDevice(root, payloadDevice: nil, context: context)
        var collector = ReadingCollector(deviceID: device)
        var found = false
        for key in ["WeightDataList", "BODataList"] {
            guard let list = root[key]?.arrayValue else { continue }
            found = true
            for _ in list { collector.reject(Rejection(.unknownType, "iHealth \(key) items are not documented; not decoded")) }
        }
        if let list = root["BPDataList"]?.arrayValue {
            found = true
            let unit: (String, UCUMUnit)
            switch root["BPUnit"].flatMap(DeviceNumber.plain) {
            case nil, 0?: unit = ("mmHg", .millimetreOfMercury)
            case 1?: unit = ("kPa", .kilopascal)
            default:
                throw Rejection(.badUnit, "iHealth BPUnit is neither 0 (mmHg) nor 1 (kPa)")
            }
            for item in list {
                guard item.objectValue != nil else {
                    collector.reject(Rejection(.malformedJSON, "an iHealth list item is not an object"))
                    continue
                }
                let time = Result { () throws(Rejection) -> ReadingTime in try Self.time(item, device: device, context: context) }
                var flags: ObservationFlags = item["IsArr"]?.flag == true ? .irregularHeartbeat : []
                let manual = item["DataSource"]?.stringValue.map { $0 != "FromDevice" } ?? false
                if manual { flags.insert(.manualEntry) }
                let id = item["DataID"]?.identifier
                let before = collector.readings.count
                collector.add(.systolicBP, item["HP"], field: "HP", unit: unit.0, in: unit.1, time: time, flags: flags, vendorID: id)
                collector.add(.diastolicBP, item["LP"], field: "LP", unit: unit.0, in: unit.1, time: time, flags: flags, vendorID: id)
                if item["HR"] != nil {
                    collector.add(.heartRate, item["HR"], field: "HR", unit: "bpm", in: .perMinute, time: time, flags: flags, vendorID: id)
                }
                if manual { collector.markManual(from: before) }
            }
        }
        guard found else { throw Rejection(.unknownFormat, "payload has no iHealth BPDataList, WeightDataList or BODataList") }
        return try collector.message()
    }

    static func time(_ item: JSONValue, device: String, context: DecodeContext) throws(Rejection) -> ReadingTime {
        guard let mdate = item["MDate"].flatMap(DeviceNumber.plain) else {
            throw Rejection(.missingField, "iHealth item has no numeric MDate")
        }
        let wall = try DeviceTime.epochDate(mdate, field: "MDate")
        let offset = item["TimeZone"]?.stringValue.flatMap(DeviceTime.offsetSeconds(text:))
            ?? item["time_zone"]?.stringValue.flatMap(DeviceTime.offsetSeconds(text:))
        if let offset {
            return ReadingTime(date: try DeviceTime.checked(wall.addingTimeInterval(-Double(offset)), context: context),
                               offsetMinutes: offset / 60)
        }
        // No offset: the wall clock is a naive local time.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: wall)
        let text = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
        return try DeviceTime.text(.string(text), field: "MDate", deviceID: device, context: context)
    }
}
