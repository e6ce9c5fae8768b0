import Foundation
import VitalsDomain

/// LibreView / LibreLinkUp glucose items (`payload-formats.md` §1.8; an unofficial follower API):
/// `{"FactoryTimestamp":"9/18/2026 9:23:45 PM","Timestamp":"9/18/2026 11:23:45 PM","type":1,
/// "ValueInMgPerDl":112,"TrendArrow":4,"GlucoseUnits":1,"Value":112,"isHigh":false,"isLow":false}`.
///
/// - Shapes: one item; an array of items; an object with `glucoseMeasurement` and/or `graphData[]`,
///   at the top, in `data`, or in `data.connection` (the graph response); the logbook response
///   (`GET /llu/connections/{id}/logbook`: `{"status":0,"data":[items],"ticket":{…}}`, the
///   `LibreLogbookResponse` of public LibreLinkUp clients, whose `data` is an array of the same
///   glucose items). Every item is a reading
///   (`type` 0 graph, 1 logbook, 2 alarm, 3 hybrid). `status` other than 0, or a region redirect
///   (`data.redirect: true`), carries no readings: `unknown_format`.
/// - Time: `FactoryTimestamp` is UTC in the US format `M/D/YYYY h:mm:ss AM|PM`, parsed strictly
///   (``DeviceTime/usDateTime(_:)``): anything else (`"bad"`, 24-hour times, `13/1/2026`) is
///   `bad_timestamp`. `Timestamp`, the same instant in local time without offset, gives the recorded
///   local offset (`Timestamp − FactoryTimestamp`, in minutes, when within ±14 h).
/// - Value: `ValueInMgPerDl` is always mg/dL and is stored as received; without it, `Value` in the
///   unit `GlucoseUnits` names (0 = mmol/L, 1 = mg/dL; any other is `bad_unit`).
/// - `isHigh`/`isLow` say the value is above or below the follower's alarm limits: the value is real,
///   not a meter marker, and is stored like any other (vitalsd's thresholds decide alerts).
///   `TrendArrow`, `MeasurementColor` and `TrendMessage` are not stored.
/// - The items carry no device id: the device comes from the topic (or the configured device field).
public struct LibreLinkUpDecoder: PayloadDecoder {
    public var format: MessageFormat { .librelinkup }
    public init() {}

    /// The glucose items of a payload in the shapes above, or nil when it has none of them.
    static func items(_ root: JSONValue) -> [JSONValue]? {
        if let a = root.arrayValue { return a }
        if root["FactoryTimestamp"] != nil { return [root] }
        if let logbook = root["data"]?.arrayValue { return logbook }
        var found: [JSONValue] = []
        var any = false
        for holder in [root, root["data"], root["data"]?["connection"]] {
            guard let holder, holder.objectValue != nil else { continue }
            if let latest = holder["glucoseMeasurement"], latest != .null {
                found.append(latest)
                any = true
            }
            if let graph = holder["graphData"]?.arrayValue {
                found.append(contentsOf: graph)
                any = true
            }
        }
        return any ? found : nil
    }

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        if let status = root["status"], status != .number(0) {
            throw Rejection(.unknownFormat, "LibreLinkUp status is not 0: the response carries an error, not readings")
        }
        if root["data"]?["redirect"]?.flag == true {
            throw Rejection(.unknownFormat, "LibreLinkUp region redirect: no readings")
        }
        guard let items = Self.items(root) else {
            throw Rejection(.unknownFormat, "payload has no LibreLinkUp glucoseMeasurement, graphData, logbook data or FactoryTimestamp")
        }
        let device = try resolveDevice(root, payloadDevice: nil, context: context)
        guard !items.isEmpty else { throw Rejection(.missingField, "the LibreLinkUp payload holds no glucose item") }
        var collector = ReadingCollector(deviceID: device)
        for item in items {
            guard item.objectValue != nil else {
                collector.reject(Rejection(.malformedJSON, "a LibreLinkUp glucose item is not an object"))
                continue
            }
            let time = Result { () throws(Rejection) -> ReadingTime in try Self.time(item, context: context) }
            if let mgdl = item["ValueInMgPerDl"], mgdl != .null {
                collector.add(.glucose, mgdl, field: "ValueInMgPerDl", unit: "mg/dL", in: .milligramPerDecilitre, time: time)
                continue
            }
            let unit: (String, UCUMUnit)
            switch item["GlucoseUnits"].flatMap(DeviceNumber.plain) {
            case 0?: unit = ("mmol/L", .millimolePerLitre)
            case 1?: unit = ("mg/dL", .milligramPerDecilitre)
            default:
                collector.reject(Rejection(.badUnit, "LibreLinkUp GlucoseUnits is neither 0 (mmol/L) nor 1 (mg/dL)"))
                continue
            }
            collector.add(.glucose, item["Value"], field: "Value", unit: unit.0, in: unit.1, time: time)
        }
        return try collector.message()
    }

    static func time(_ item: JSONValue, context: DecodeContext) throws(Rejection) -> ReadingTime {
        guard let factory = item["FactoryTimestamp"] else { throw Rejection(.missingField, "field 'FactoryTimestamp' is missing") }
        guard let text = factory.stringValue, let utc = DeviceTime.usDateTime(text),
              let date = try? DeviceTime.instant(utc, in: TimeZone(identifier: "UTC")!, field: "FactoryTimestamp") else {
            throw Rejection(.badTimestamp, "field 'FactoryTimestamp' is not a date-time in the form M/D/YYYY h:mm:ss AM|PM")
        }
        var t = ReadingTime(date: try DeviceTime.checked(date, context: context))
        if let localText = item["Timestamp"]?.stringValue, let local = DeviceTime.usDateTime(localText),
           let wall = try? DeviceTime.instant(local, in: TimeZone(identifier: "UTC")!, field: "Timestamp") {
            let minutes = (wall.timeIntervalSince(date) / 60).rounded()
            if abs(minutes) <= 14 * 60 { t.offsetMinutes = Int(minutes) }
        }
        return t
    }
}
