import Foundation
import VitalsDomain

/// SenML JSON packs (RFC 8428, units from the IANA SenML registry and RFC 8798;
/// `payload-formats.md` §2).
///
/// Resolution (§2.2): base fields (`bn`, `bt`, `bu`, `bv`, `bver`) apply to their record and every
/// later one until set again; name = `bn` + `n`, which must match `[A-Za-z0-9][A-Za-z0-9-:./_]*`;
/// time = `bt` + `t` in seconds, absolute from 2^28 on, otherwise relative to the receive time (0 is
/// "now"); milliseconds are recognised by magnitude (``DeviceTime``); unit = `u`, else `bu`;
/// value = `bv` + `v`. A label ending in `_` that vitalsd does not know (a "must understand"
/// extension) rejects the pack.
///
/// The measurement is the last segment of the name (after the last `/` or `:`), case-insensitive:
/// `sys`, `systolic`, `bp-systolic`, `sys-pressure` → systolic; `dia`, … → diastolic; `pulse`,
/// `heart-rate`, `hr` → heart rate; `spo2` → SpO2; `weight` → body weight; `glucose` → glucose;
/// `temperature`, `temp`, `body-temperature` → body temperature. `battery`, `rssi`, `pi` are device
/// status; `irregular` (`vb`) flags the pack's blood-pressure and pulse readings. The device is the
/// name's prefix: `urn:dev:<kind>:<id>:` gives `<id>`, otherwise the last path segment of the prefix
/// (`rpm/gw01/bpcuff-7/` gives `bpcuff-7`).
///
/// Units: registered `Pa` (BP; 1 mmHg = 133.322 Pa), `kg`, `g`, `Cel`, `1/s`, `1/min`, `beat/min`,
/// `kg/m3` (glucose; 1 kg/m³ = 100 mg/dL), `/100` (percent), and `/` and `%`, which are **0–1
/// ratios** (0.97 → 97 %); battery `%EL`, signal `dBm`. Unregistered spellings devices send anyway
/// (`mmHg`, `mm[Hg]`, `kPa`, `mg/dL`, `mmol/L`, `bpm`, `beat/m`, `lb`, `lbs`, `[degF]`, `°F`) are
/// accepted and the reading flagged `unregistered_unit`. A `vs` of `HI`/`LO` is a range marker.
public struct SenMLDecoder: PayloadDecoder {
    public var format: MessageFormat { .senml }
    public init() {}

    /// 2^28: SenML times below it are relative to now (RFC 8428 §4.5.3).
    static let relativeLimit = 268_435_456.0

    /// Registered SenML units: the UCUM unit and the factor to it.
    static let registered: [String: (UCUMUnit, Double)] = [
        "Pa": (.pascal, 1), "hPa": (.pascal, 100), "kg": (.kilogram, 1), "g": (.gram, 1), "Cel": (.celsius, 1),
        "1/s": (.perSecond, 1), "1/min": (.perMinute, 1), "beat/min": (.perMinute, 1), "kg/m3": (.kilogramPerCubicMetre, 1),
        "/": (.percent, 100), "%": (.percent, 100), "/100": (.percent, 1),
    ]

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard let records = root.arrayValue, !records.isEmpty else {
            throw Rejection(.unknownFormat, "a SenML pack is a non-empty JSON array of records")
        }
        var baseName = "", baseTime: Double?, baseUnit: String?, baseValue = 0.0
        var resolved: [(name: String, record: [String: JSONValue], time: Double?, unit: String?, value: Double?)] = []
        for (index, item) in records.enumerated() {
            guard let record = item.objectValue else {
                throw Rejection(.unknownFormat, "SenML record \(index) is not an object")
            }
            if record.keys.contains(where: { $0.hasSuffix("_") }) {
                throw Rejection(.unknownFormat, "SenML record \(index) has a must-understand label vitalsd does not know")
            }
            // RFC 8428 §4.4: a pack of a later version than the one understood (10) must not be used.
            if let bver = record["bver"] {
                guard case .number(let v) = bver, v == v.rounded(), (1...10).contains(v) else {
                    throw Rejection(.unknownFormat, "SenML record \(index): bver is not a SenML version vitalsd reads (10 or earlier)")
                }
            }
            if let bn = record["bn"] {
                guard case .string(let s) = bn else { throw Rejection(.unknownFormat, "SenML record \(index): bn is not a string") }
                baseName = s
            }
            if let bt = record["bt"] {
                guard case .number(let n) = bt, n.isFinite else { throw Rejection(.unknownFormat, "SenML record \(index): bt is not a number") }
                baseTime = n
            }
            if let bu = record["bu"] {
                guard case .string(let s) = bu else { throw Rejection(.unknownFormat, "SenML record \(index): bu is not a string") }
                baseUnit = s
            }
            if let bv = record["bv"] {
                guard case .number(let n) = bv, n.isFinite else { throw Rejection(.unknownFormat, "SenML record \(index): bv is not a number") }
                baseValue = n
            }
            var name = baseName
            if let n = record["n"] {
                guard case .string(let s) = n else { throw Rejection(.unknownFormat, "SenML record \(index): n is not a string") }
                name += s
            }
            guard Self.validName(name) else {
                throw Rejection(.unknownFormat, "SenML record \(index): the resolved name is empty or has characters RFC 8428 does not allow")
            }
            var time = baseTime
            if let t = record["t"] {
                guard case .number(let n) = t, n.isFinite else { throw Rejection(.unknownFormat, "SenML record \(index): t is not a number") }
                time = (time ?? 0) + n
            }
            var value: Double?
            if let v = record["v"] {
                if case .number(let n) = v, n.isFinite { value = baseValue + n }
            }
            let unit = record["u"]?.stringValue ?? baseUnit
            resolved.append((name, record, time, unit, value))
        }

        let payloadDevice = resolved.lazy.compactMap { Self.device(in: $0.name) }.first
        let device = try resolveDevice(root, payloadDevice: payloadDevice, context: context)
        var collector = ReadingCollector(deviceID: device)
        let irregular = resolved.contains { Self.measurement($0.name) == "irregular" && $0.record["vb"] == .bool(true) }

        for r in resolved {
            let key = Self.measurement(r.name)
            let time = Result { () throws(Rejection) -> ReadingTime in try Self.time(r.time, context: context) }
            if context.topicDeviceID == nil, let other = Self.device(in: r.name), other != device {
                collector.reject(Rejection(.deviceMismatch, "a SenML record names another device than the pack's first"))
                continue
            }
            switch key {
            case "irregular":
                continue
            case "battery", "batt", "battery-level":
                collector.status(.batteryPercent, r.value.map(JSONValue.number), at: (try? time.get().date) ?? context.receivedAt)
                continue
            case "rssi", "signal":
                collector.status(.signalDBm, r.value.map(JSONValue.number), at: (try? time.get().date) ?? context.receivedAt)
                continue
            case "pi", "perfusion-index", "perfusion_index":
                collector.status(.perfusionIndex, r.value.map(JSONValue.number), at: (try? time.get().date) ?? context.receivedAt)
                continue
            default:
                break
            }
            guard let type = Self.vitalType(key) else {
                collector.reject(Rejection(.unknownType, "SenML record name does not name a supported vital"))
                continue
            }
            let valueJSON: JSONValue? = r.value.map(JSONValue.number) ?? r.record["v"] ?? r.record["vs"]
            guard let unitText = r.unit else {
                collector.reject(Rejection(.badUnit, "SenML record for \(type.rawValue) has neither u nor bu"))
                continue
            }
            var flags: ObservationFlags = []
            let ucum: UCUMUnit
            let scale: Double
            if let (u, f) = Self.registered[unitText] {
                (ucum, scale) = (u, f)
            } else if let u = Self.alias(unitText) {
                (ucum, scale) = (u, 1)
                flags.insert(.unregisteredUnit)
            } else {
                collector.reject(Rejection(.badUnit, "SenML unit of \(type.rawValue) is neither registered nor a known spelling"))
                continue
            }
            if irregular, [.systolicBP, .diastolicBP, .heartRate].contains(type) { flags.insert(.irregularHeartbeat) }
            collector.add(type, valueJSON, field: "v", unit: unitText, in: ucum, scale: scale, time: time, flags: flags)
        }
        return try collector.message()
    }

    /// Unregistered unit spellings (`payload-formats.md` §2.3, "Not registered").
    static func alias(_ unit: String) -> UCUMUnit? {
        switch unit {
        case "beat/m", "beats/min", "bpm", "/min": return .perMinute
        case "°F", "[degF]", "degF": return .fahrenheit
        case "mm[Hg]", "mmHg", "kPa", "mg/dL", "mmol/L", "lb", "lbs", "[lb_av]": return UCUMUnit(spelling: unit)
        default: return nil
        }
    }

    static func time(_ t: Double?, context: DecodeContext) throws(Rejection) -> ReadingTime {
        guard let t else { return DeviceTime.received(context) }
        if abs(t) < relativeLimit {
            let relative = DeviceTime.received(context)
            return ReadingTime(date: try DeviceTime.checked(context.receivedAt.addingTimeInterval(t), context: context),
                               source: relative.source, flags: relative.flags)
        }
        return ReadingTime(date: try DeviceTime.checked(try DeviceTime.epochDate(t, field: "t"), context: context))
    }

    static func validName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 1024 else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
        return alnum(first) && name.utf8.allSatisfy { alnum($0) || $0 == 0x2D || $0 == 0x3A || $0 == 0x2E || $0 == 0x2F || $0 == 0x5F }
    }

    /// The last segment of a name, lower-cased.
    static func measurement(_ name: String) -> String {
        let segment = name.split(whereSeparator: { $0 == "/" || $0 == ":" }).last.map(String.init) ?? name
        return segment.lowercased()
    }

    /// The device a name's prefix names, or nil.
    static func device(in name: String) -> String? {
        let parts = name.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count >= 4, parts[0] == "urn", parts[1] == "dev", !parts[3].isEmpty {
            let id = String(parts[3])
            return DeviceIdentifier.isValid(id) ? id : nil
        }
        let segments = name.split(separator: "/", omittingEmptySubsequences: true)
        guard segments.count >= 2 else { return nil }
        let id = String(segments[segments.count - 2])
        return DeviceIdentifier.isValid(id) ? id : nil
    }

    static func vitalType(_ key: String) -> VitalType? {
        switch key {
        case "sys", "systolic", "bp-systolic", "sys-pressure", "systolic-pressure", "systolic_bp", "bp-sys": .systolicBP
        case "dia", "diastolic", "bp-diastolic", "dia-pressure", "diastolic-pressure", "diastolic_bp", "bp-dia": .diastolicBP
        case "pulse", "heart-rate", "heartrate", "heart_rate", "hr", "pulse-rate": .heartRate
        case "spo2", "oxygen-saturation", "sao2": .spo2
        case "weight", "body-weight", "body_weight", "mass": .bodyWeight
        case "glucose", "blood-glucose", "bg": .glucose
        case "temperature", "temp", "body-temperature", "body_temperature": .bodyTemperature
        default: nil
        }
    }
}
