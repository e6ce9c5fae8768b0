import Foundation

/// The one numeric parser of every format, canonical included (failure-modes F11, F21).
///
/// Rules, in order:
/// 1. A JSON number, or a string holding a plain decimal number (`"128.00"`, `" 98.6 "`; see
///    ``NumericValue/parseDecimalString(_:)``), is a number.
/// 2. A string marker is a sentinel, never a value, compared case-insensitively after trimming:
///    `HI`, `HIGH`, `>` followed by a number → above the meter's range; `LO`, `LOW`, `<` followed by a
///    number → below it; `ERR`, `ERROR`, `E` followed by digits (`E1`, `E-2`), `Err CUF` → device error.
/// 3. A number that is an error code for the vital is a sentinel (device error), by ``SentinelRules``:
///    the IEEE 11073-20601 SFLOAT special values read as integers (2047 NaN, 2048 NRes, 2046 +INF,
///    2050 −INF, 2049 reserved; blood-pressure-monitor-fl#80), and for blood pressure and pulse the
///    cuff error fills 0 and 255 (failure-modes F21 test input).
/// 4. Anything else (other strings, bool, null, object, array, non-finite) is `not_a_number`.
///
/// A sentinel becomes a ``DeviceEvent`` and a dead letter (`device_error`, `out_of_meter_range`).
public enum DeviceNumber {
    /// A parsed value.
    public enum Parsed: Sendable, Hashable {
        case number(Double)
        /// A sentinel and a short code naming which rule matched (`sfloat_nan`, `hi_marker`).
        case sentinel(DeviceEvent.Kind, code: String)
    }

    /// Parses a value of a vital.
    /// - Throws: ``Rejection`` `not_a_number` by rule 4.
    public static func parse(
        _ json: JSONValue, field: String, type: VitalType?, rules: SentinelRules = .standard
    ) throws(Rejection) -> Parsed {
        switch json {
        case .number(let d) where d.isFinite:
            return classify(d, type: type, rules: rules)
        case .string(let s):
            if let d = NumericValue.parseDecimalString(s) { return classify(d, type: type, rules: rules) }
            if let marker = marker(s) { return marker }
            throw Rejection(.notANumber, "field '\(field)' is a string that is neither a plain decimal number nor a device marker")
        default:
            throw Rejection(.notANumber, "field '\(field)' is not a number")
        }
    }

    /// A number or plain numeric string without sentinel rules, for telemetry; nil otherwise.
    public static func plain(_ json: JSONValue) -> Double? {
        switch json {
        case .number(let d) where d.isFinite: return d
        case .string(let s): return NumericValue.parseDecimalString(s)
        default: return nil
        }
    }

    /// The dead-letter rejection for a sentinel.
    public static func rejection(_ kind: DeviceEvent.Kind, code: String, field: String) -> Rejection {
        switch kind {
        case .deviceError:
            Rejection(.deviceError, "field '\(field)' carries a device error code (\(code)), not a measurement")
        case .aboveRange:
            Rejection(.outOfMeterRange, "field '\(field)' is the meter's above-range marker (\(code)), not a measurement")
        case .belowRange:
            Rejection(.outOfMeterRange, "field '\(field)' is the meter's below-range marker (\(code)), not a measurement")
        }
    }

    static func classify(_ d: Double, type: VitalType?, rules: SentinelRules) -> Parsed {
        if rules.sfloatSpecials, let code = sfloatSpecials[d] { return .sentinel(.deviceError, code: code) }
        if let type, rules.cuffFills, [.systolicBP, .diastolicBP, .heartRate].contains(type), d == 0 || d == 255 {
            return .sentinel(.deviceError, code: d == 0 ? "cuff_zero_fill" : "cuff_255_fill")
        }
        if let low = rules.belowRangeValue, type == .glucose, d == low { return .sentinel(.belowRange, code: "lo_placeholder") }
        if let high = rules.aboveRangeValue, type == .glucose, d == high { return .sentinel(.aboveRange, code: "hi_placeholder") }
        return .number(d)
    }

    /// IEEE 11073-20601 SFLOAT special values as integers (failure-modes F21; [K] in the reference).
    static let sfloatSpecials: [Double: String] = [
        2047: "sfloat_nan", 2048: "sfloat_nres", 2046: "sfloat_plus_infinity", 2050: "sfloat_minus_infinity",
        2049: "sfloat_reserved",
    ]

    /// A device marker string, or nil.
    static func marker(_ s: String) -> Parsed? {
        let t = s.trimmingCharacters(in: .whitespaces).uppercased()
        switch t {
        case "HI", "HIGH", "H": return .sentinel(.aboveRange, code: "hi_marker")
        case "LO", "LOW", "L": return .sentinel(.belowRange, code: "lo_marker")
        case "ERR", "ERROR", "ERR CUF", "E", "---", "--": return .sentinel(.deviceError, code: "error_marker")
        default: break
        }
        if let first = t.first, first == ">" || first == "<",
           NumericValue.parseDecimalString(String(t.dropFirst()).trimmingCharacters(in: .whitespaces)) != nil {
            return .sentinel(first == ">" ? .aboveRange : .belowRange, code: first == ">" ? "above_marker" : "below_marker")
        }
        if t.hasPrefix("E"), t.count <= 5, t.dropFirst().allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }),
           t.dropFirst().contains(where: \.isNumber) {
            return .sentinel(.deviceError, code: "error_code")
        }
        return nil
    }
}

/// Which number-valued sentinels apply to a source.
public struct SentinelRules: Sendable, Hashable {
    /// 2046–2050 are SFLOAT specials, not values.
    public var sfloatSpecials = true
    /// 0 and 255 for blood pressure or pulse are cuff error fills.
    public var cuffFills = true
    /// A glucose value that stands for "below range" (Dexcom: 39 mg/dL; LoopKit#397), or nil.
    public var belowRangeValue: Double?
    /// A glucose value that stands for "above range" (Dexcom: 401 mg/dL), or nil.
    public var aboveRangeValue: Double?

    public init(sfloatSpecials: Bool = true, cuffFills: Bool = true, belowRangeValue: Double? = nil, aboveRangeValue: Double? = nil) {
        self.sfloatSpecials = sfloatSpecials
        self.cuffFills = cuffFills
        self.belowRangeValue = belowRangeValue
        self.aboveRangeValue = aboveRangeValue
    }

    /// The rules for device formats: SFLOAT specials and cuff fills.
    public static let standard = SentinelRules()

    /// The rules for the canonical format: SFLOAT specials, no cuff fills (a gateway that writes the
    /// canonical format has already read the cuff's status; 255 mmHg there is a value).
    public static let canonical = SentinelRules(cuffFills: false)
}
