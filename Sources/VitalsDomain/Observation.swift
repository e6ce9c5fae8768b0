import Foundation

/// Where a reading came from. Only `device` readings count as days of data for CPT 99445/99454
/// (CMS: data must be transmitted automatically by the device; `clinical-and-billing.md` §2.2 rule 2).
public enum ReadingSource: String, Sendable, Codable, Hashable {
    case device
    case manual
}

/// One normalised measurement: what a device reported, in its own unit, and the same value in the
/// canonical UCUM unit of its type.
public struct Observation: Sendable, Hashable {
    /// The device's id, as enrolled (from the topic).
    public var deviceID: String
    /// The vital type; gives the LOINC code and canonical unit.
    public var type: VitalType
    /// The value exactly as received.
    public var value: Double
    /// The unit exactly as received (e.g. `mmol/L`, `lbs`).
    public var unit: String
    /// The value in ``VitalType/canonicalUnit`` (mm[Hg], /min, mg/dL, kg, %, Cel).
    public var canonicalValue: Double
    /// When the device measured it.
    public var measuredAt: Date
    /// Device-transmitted or entered by hand.
    public var source: ReadingSource
    /// What the device said about the reading (`irregular_heartbeat`, `from_device_memory`, …).
    public var flags: ObservationFlags
    /// Where ``measuredAt`` came from: the device's own clock with an offset, a naive local time read
    /// in a configured time zone, a vendor's estimate, or the receive time.
    public var timeSource: TimeSource
    /// The device's local UTC offset at the measurement, in minutes east of UTC, when the payload gave one.
    public var localOffsetMinutes: Int?
    /// The vendor's id of the reading (`recordId`, `DataID`, `grpid`, `reading_id`), kept for tracing.
    public var vendorReadingID: String?

    public init(
        deviceID: String, type: VitalType, value: Double, unit: String, canonicalValue: Double,
        measuredAt: Date, source: ReadingSource = .device, flags: ObservationFlags = [],
        timeSource: TimeSource = .device, localOffsetMinutes: Int? = nil, vendorReadingID: String? = nil
    ) {
        self.deviceID = deviceID
        self.type = type
        self.value = value
        self.unit = unit
        self.canonicalValue = canonicalValue
        self.measuredAt = measuredAt
        self.source = source
        self.flags = flags
        self.timeSource = timeSource
        self.localOffsetMinutes = localOffsetMinutes
        self.vendorReadingID = vendorReadingID
    }

    /// Builds a checked observation from the parts every format carries.
    ///
    /// Checks, in order: the type is known (`unknown_type`), the value is a number (`not_a_number`),
    /// the unit is present, recognised and measures this type (`bad_unit`), and the canonical value
    /// lies in ``VitalType/plausibleRange`` (`implausible_value`).
    ///
    /// - Parameters:
    ///   - typeName: the canonical type name (`glucose`).
    ///   - value: the JSON value of the reading.
    ///   - unit: the JSON value of the unit.
    /// - Throws: ``Rejection``.
    public static func make(
        deviceID: String, typeName: String, value: JSONValue, unit: JSONValue?, measuredAt: Date,
        source: ReadingSource = .device
    ) throws(Rejection) -> Observation {
        guard let type = VitalType(rawValue: typeName) else {
            throw Rejection(.unknownType, "type is not one of the supported vital types")
        }
        let number = try NumericValue.parse(value, field: "value")
        guard let unitJSON = unit, case .string(let unitText) = unitJSON else {
            throw Rejection(.badUnit, "field 'unit' is missing for \(type.rawValue)")
        }
        guard let parsedUnit = UCUMUnit(spelling: unitText) else {
            throw Rejection(.badUnit, "unit of \(type.rawValue) is not a recognised UCUM code or spelling")
        }
        return try make(
            deviceID: deviceID, type: type, value: number, unit: unitText, in: parsedUnit, measuredAt: measuredAt,
            source: source)
    }

    /// Builds a checked observation from a number already parsed and a unit already recognised.
    ///
    /// - Parameters:
    ///   - value: the value as received (e.g. `17065.3` for a SenML pressure in Pa).
    ///   - unit: the unit text as received, stored unchanged (e.g. `Pa`, `/100`, `lbs`).
    ///   - ucum: the UCUM unit that `value × scale` is expressed in.
    ///   - scale: a factor the format applies before conversion (SenML `%` is a 0–1 ratio: 100). Default 1.
    /// - Throws: ``Rejection`` `bad_unit` when `ucum` does not measure `type`, `implausible_value`
    ///   outside ``VitalType/plausibleRange``.
    public static func make(
        deviceID: String, type: VitalType, value: Double, unit: String, in ucum: UCUMUnit, scale: Double = 1,
        measuredAt: Date, source: ReadingSource = .device, flags: ObservationFlags = [],
        timeSource: TimeSource = .device, localOffsetMinutes: Int? = nil, vendorReadingID: String? = nil
    ) throws(Rejection) -> Observation {
        guard value.isFinite, let canonical = ucum.convert(value * scale, to: type.canonicalUnit), canonical.isFinite else {
            throw Rejection(.badUnit, "unit '\(ucum.rawValue)' does not measure \(type.rawValue)")
        }
        let rounded = (canonical * 1_000_000).rounded() / 1_000_000
        let range = type.plausibleRange
        guard range.contains(rounded) else {
            var rejection = Rejection(
                .implausibleValue,
                "\(type.rawValue) outside plausible range \(Self.format(range.lowerBound))–\(Self.format(range.upperBound)) \(type.canonicalUnit.display)"
            )
            rejection.rejectedValue = "\(type.displayName) \(Self.format(value)) \(unit)"
            throw rejection
        }
        return Observation(
            deviceID: deviceID, type: type, value: value, unit: unit, canonicalValue: rounded,
            measuredAt: measuredAt, source: source, flags: flags, timeSource: timeSource,
            localOffsetMinutes: localOffsetMinutes, vendorReadingID: vendorReadingID)
    }

    /// Formats a number for people: no trailing zeros, at most 2 decimals (`54`, `38.5`, `2.67`).
    public static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        var s = String(format: "%.2f", value)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}
