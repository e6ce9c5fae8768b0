import Foundation

/// A unit of measure that vitalsd understands, identified by its UCUM code.
///
/// Devices spell units in many ways; ``init(spelling:)`` accepts the UCUM code and the
/// common spellings (`mmHg`, `bpm`, `lb`, `lbs`, `°C`, `°F`, `mmol/L`), case-sensitively
/// where UCUM is case-sensitive and otherwise case-insensitively. A missing or unknown unit
/// is never guessed (failure-modes F20).
public enum UCUMUnit: String, Sendable, CaseIterable, Codable, Hashable {
    case millimetreOfMercury = "mm[Hg]"
    case kilopascal = "kPa"
    case pascal = "Pa"
    case perMinute = "/min"
    case perSecond = "/s"
    case milligramPerDecilitre = "mg/dL"
    case millimolePerLitre = "mmol/L"
    case kilogramPerCubicMetre = "kg/m3"
    case kilogram = "kg"
    case gram = "g"
    case pound = "[lb_av]"
    case percent = "%"
    case celsius = "Cel"
    case fahrenheit = "[degF]"

    /// Parses a unit as a device spells it.
    ///
    /// - Parameter spelling: the unit text from the payload, e.g. `"mmHg"` or `"[lb_av]"`.
    /// - Returns: `nil` when the spelling is not recognised.
    public init?(spelling: String) {
        // Most payloads spell the unit without surrounding blanks: skip Foundation's trimming then
        // (it cost 4 % of a backlog drain's CPU, BENCHMARKS.md).
        let trimmed = Self.hasNoEdgeBlank(spelling) ? spelling : spelling.trimmingCharacters(in: .whitespaces)
        if let exact = UCUMUnit(rawValue: trimmed) {
            self = exact
            return
        }
        switch trimmed.lowercased() {
        case "mmhg", "mm hg", "mm[hg]": self = .millimetreOfMercury
        case "kpa": self = .kilopascal
        case "pa": self = .pascal
        case "1/s", "/s", "hz": self = .perSecond
        case "kg/m3", "kg/m^3", "kg.m-3": self = .kilogramPerCubicMetre
        case "bpm", "/min", "1/min", "beats/min", "{beats}/min", "min-1": self = .perMinute
        case "mg/dl": self = .milligramPerDecilitre
        case "mmol/l": self = .millimolePerLitre
        case "kg", "kgs": self = .kilogram
        case "g": self = .gram
        case "lb", "lbs", "[lb_av]": self = .pound
        case "%", "percent": self = .percent
        case "cel", "°c", "degc", "deg c": self = .celsius
        case "[degf]", "°f", "degf", "deg f": self = .fahrenheit
        default: return nil
        }
    }

    /// True when the text starts and ends with a printable ASCII character other than a space, so
    /// that trimming `.whitespaces` would not change it.
    static func hasNoEdgeBlank(_ text: String) -> Bool {
        guard let first = text.utf8.first, let last = text.utf8.last else { return true }
        return first > 0x20 && first < 0x7F && last > 0x20 && last < 0x7F
    }

    /// Converts a value in this unit to `target`, or returns `nil` when the two units measure
    /// different things.
    ///
    /// Factors: 1 kPa = 7.50062 mmHg; glucose mg/dL = mmol/L × 18.018 (molar mass 180.16 g/mol ÷ 10,
    /// `clinical-and-billing.md` §4.1); 1 [lb_av] = 0.45359237 kg (UCUM); °C = (°F − 32) × 5/9;
    /// 1 mmHg = 133.322 Pa; 1 kg/m³ = 100 mg/dL (RFC 8798; `payload-formats.md` §0); 1 /s = 60 /min.
    /// Every glucose conversion in vitalsd goes through this one function, so there is one factor.
    public func convert(_ value: Double, to target: UCUMUnit) -> Double? {
        if self == target { return value }
        guard dimension == target.dimension else { return nil }
        return target.fromBase(toBase(value))
    }

    /// The factor from mmol/L to mg/dL for glucose.
    public static let glucoseMgPerDLPerMmolPerL = 18.018

    /// Pascals in one millimetre of mercury (`payload-formats.md` §0).
    public static let pascalPerMillimetreOfMercury = 133.322

    private enum Dimension { case pressure, rate, glucoseConcentration, mass, fraction, temperature }

    private var dimension: Dimension {
        switch self {
        case .millimetreOfMercury, .kilopascal, .pascal: .pressure
        case .perMinute, .perSecond: .rate
        case .milligramPerDecilitre, .millimolePerLitre, .kilogramPerCubicMetre: .glucoseConcentration
        case .kilogram, .gram, .pound: .mass
        case .percent: .fraction
        case .celsius, .fahrenheit: .temperature
        }
    }

    /// The value in the base unit of the dimension (mmHg, /min, mg/dL, kg, %, Cel).
    private func toBase(_ v: Double) -> Double {
        switch self {
        case .millimetreOfMercury, .perMinute, .milligramPerDecilitre, .kilogram, .percent, .celsius: v
        case .kilopascal: v * 7.50062
        case .pascal: v / Self.pascalPerMillimetreOfMercury
        case .perSecond: v * 60
        case .kilogramPerCubicMetre: v * 100
        case .millimolePerLitre: v * Self.glucoseMgPerDLPerMmolPerL
        case .gram: v / 1000
        case .pound: v * 0.45359237
        case .fahrenheit: (v - 32) * 5 / 9
        }
    }

    private func fromBase(_ v: Double) -> Double {
        switch self {
        case .millimetreOfMercury, .perMinute, .milligramPerDecilitre, .kilogram, .percent, .celsius: v
        case .kilopascal: v / 7.50062
        case .pascal: v * Self.pascalPerMillimetreOfMercury
        case .perSecond: v / 60
        case .kilogramPerCubicMetre: v / 100
        case .millimolePerLitre: v / Self.glucoseMgPerDLPerMmolPerL
        case .gram: v * 1000
        case .pound: v / 0.45359237
        case .fahrenheit: v * 9 / 5 + 32
        }
    }

    /// How the unit is written for people in task reasons (`mmHg`, `°C`).
    public var display: String {
        switch self {
        case .millimetreOfMercury: "mmHg"
        case .perMinute: "/min"
        case .pound: "lb"
        case .celsius: "°C"
        case .fahrenheit: "°F"
        default: rawValue
        }
    }
}
