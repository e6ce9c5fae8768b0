import VitalsDomain

/// Query strings: `a=1&b=x%2Fy` → `[("a", "1"), ("b", "x/y")]`, percent-decoded, `+` read as a space
/// (application/x-www-form-urlencoded, as FHIR search and OAuth token requests are sent).
public enum QueryString {
    /// - Returns: nil when a percent escape is malformed or the result is not UTF-8.
    public static func parse(_ query: String) -> [(name: String, value: String)]? {
        var result: [(String, String)] = []
        for part in query.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(pieces[0]), let value = decode(pieces.count > 1 ? pieces[1] : "") else { return nil }
            result.append((name, value))
        }
        return result
    }

    static func decode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "+") {
                bytes.append(0x20)
            } else if b == UInt8(ascii: "%") {
                guard let h = it.next().flatMap(hexValue), let l = it.next().flatMap(hexValue) else { return nil }
                bytes.append(h << 4 | l)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }

    /// Percent-encodes a value for a query string: everything but `A–Z a–z 0–9 - . _ ~`.
    public static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(b >> 4)])
                out.unicodeScalars.append(hex[Int(b & 0xF)])
            }
        }
        return out
    }

    /// `name=value&…`, each part percent-encoded.
    public static func build(_ parameters: [(name: String, value: String)]) -> String {
        parameters.map { encode($0.name) + "=" + encode($0.value) }.joined(separator: "&")
    }
}

/// A condition on an instant (epoch milliseconds) from a FHIR `date` parameter with its prefix.
public enum InstantCondition: Sendable, Hashable {
    /// `lower <= t`
    case atOrAfter(Int64)
    /// `t < upper`
    case before(Int64)
    /// `t < lower || t >= upper` (`ne`)
    case outside(Int64, Int64)

    /// The conditions for one `date` value: `eq` (the default), `ne`, `gt`, `lt`, `ge`, `le`, with FHIR R4's
    /// range semantics (hl7.org/fhir/R4/search.html#prefix): `ge2026-03-01` is from that day's start,
    /// `gt2026-03-01` from the next day's, `le2026-03-01` to that day's end, `lt2026-03-01` to its start.
    /// - Throws: ``FHIRError`` 400 for `sa`, `eb`, `ap` (not supported) or a value that is not a date.
    public static func parse(_ text: String, parameter: String) throws(FHIRError) -> [InstantCondition] {
        var prefix = "eq"
        var value = Substring(text)
        if let first = text.first, first.isLetter {
            prefix = String(text.prefix(2))
            value = text.dropFirst(2)
        }
        guard let range = FHIRTime.searchRange(String(value)) else {
            throw .invalid("\(parameter): '\(text)' is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with Z or ±hh:mm), with an optional prefix eq, ne, gt, ge, lt, le")
        }
        switch prefix {
        case "eq": return [.atOrAfter(range.start), .before(range.end)]
        case "ne": return [.outside(range.start, range.end)]
        case "ge": return [.atOrAfter(range.start)]
        case "gt": return [.atOrAfter(range.end)]
        case "le": return [.before(range.end)]
        case "lt": return [.before(range.start)]
        case "sa", "eb", "ap": throw .notSupported("\(parameter): prefix '\(prefix)' is not supported; use eq, ne, gt, ge, lt or le")
        default: throw .invalid("\(parameter): unknown prefix '\(prefix)'")
        }
    }

    /// Whether `t` meets the condition.
    public func holds(_ t: Int64) -> Bool {
        switch self {
        case .atOrAfter(let lower): t >= lower
        case .before(let upper): t < upper
        case .outside(let lower, let upper): t < lower || t >= upper
        }
    }
}

/// Paging and format parameters shared by every search.
public struct PageRequest: Sendable, Hashable {
    /// Entries per page (`_count`), at most the server's page limit.
    public var count: Int
    /// The keyset position after which this page starts (`_page`), opaque to clients.
    public var after: String?
    /// `_total=accurate`: count every match.
    public var total: Bool
}

/// The search parameters of one resource type, checked: an unknown parameter, modifier, repeated
/// parameter or bad value is a ``FHIRError`` 400, never ignored.
public enum FHIRSearch {
    /// Parameters every search accepts: `_count`, `_total` (`none`, `accurate`), `_format` (JSON
    /// only) and `_page`, the next link's keyset position.
    static let common: Set<String> = ["_count", "_total", "_format", "_page"]

    /// Splits a query into parameters by name, checking names against `allowed` and refusing
    /// modifiers (`code:text`) and repeats of parameters that are not in `repeatable`.
    /// - Throws: ``FHIRError`` 400.
    public static func group(
        _ query: [(name: String, value: String)], allowed: Set<String>, repeatable: Set<String> = []
    ) throws(FHIRError) -> [String: [String]] {
        var groups: [String: [String]] = [:]
        for (name, value) in query {
            if name.contains(":") {
                let base = String(name.prefix { $0 != ":" })
                guard allowed.contains(base) || common.contains(base) else { throw unknown(name, allowed) }
                throw .notSupported("search modifier '\(name)' is not supported")
            }
            guard allowed.contains(name) || common.contains(name) else { throw unknown(name, allowed) }
            if groups[name] != nil, !repeatable.contains(name) {
                throw .notSupported("parameter '\(name)' may appear once; list alternatives separated by commas")
            }
            groups[name, default: []].append(value)
        }
        return groups
    }

    static func unknown(_ name: String, _ allowed: Set<String>) -> FHIRError {
        .invalid("unknown search parameter '\(name)'; supported: \((allowed.union(common.subtracting(["_page"]))).sorted().joined(separator: ", "))")
    }

    /// `_count` (1 to `maxCount`, default `defaultCount`; a larger value is lowered to `maxCount`,
    /// as FHIR lets a server do), `_page`, `_total` and `_format`.
    /// - Throws: ``FHIRError`` 400.
    public static func page(_ groups: [String: [String]], defaultCount: Int, maxCount: Int) throws(FHIRError) -> PageRequest {
        var count = defaultCount
        if let text = groups["_count"]?.first {
            // Digits beyond Int's range are a large count like any other: lowered.
            let digits = !text.isEmpty && text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            guard let n = Int(text) ?? (digits ? Int.max : nil), n >= 1 else {
                throw .invalid("_count must be a whole number of at least 1 (got '\(text)')")
            }
            count = min(n, maxCount)
        }
        var total = false
        if let t = groups["_total"]?.first {
            switch t {
            case "none": total = false
            case "accurate", "estimate": total = true
            default: throw .invalid("_total must be none, estimate or accurate")
            }
        }
        if let format = groups["_format"]?.first, !["json", "application/json", "application/fhir+json"].contains(format) {
            throw FHIRError(status: 406, code: "not-supported", "_format '\(format)' is not supported; only JSON is served")
        }
        return PageRequest(count: count, after: groups["_page"]?.first, total: total)
    }

    /// At most this many comma-separated alternatives in one parameter value.
    public static let maxAlternatives = 100
    /// At most this many bytes in one alternative (an id is at most 128; a reference or a token with
    /// its system is longer).
    public static let maxAlternativeBytes = 512

    /// Comma-separated alternatives of a token or reference parameter, without empty ones.
    /// - Throws: ``FHIRError`` 400 for more than ``maxAlternatives`` alternatives, or one longer than
    ///   ``maxAlternativeBytes``: such a value is no search a client needs, and would only fill the access log.
    public static func alternatives(_ value: String) throws(FHIRError) -> [String] {
        let list = value.split(separator: ",").map { String($0) }.filter { !$0.isEmpty }
        guard list.count <= maxAlternatives else { throw .invalid("at most \(maxAlternatives) comma-separated values in one parameter") }
        guard list.allSatisfy({ $0.utf8.count <= maxAlternativeBytes }) else {
            throw .invalid("a search value is longer than \(maxAlternativeBytes) bytes")
        }
        return list
    }

    /// A patient reference value: `P`, `Patient/P`, or `<base>/Patient/P`.
    /// - Throws: ``FHIRError`` 400 for a reference to another resource type.
    public static func patientID(_ value: String, parameter: String) throws(FHIRError) -> String {
        if let slash = value.lastIndex(of: "/") {
            let type = value[..<slash].split(separator: "/").last.map(String.init)
            guard type == "Patient" else { throw .invalid("\(parameter) must reference a Patient (got '\(value)')") }
            return String(value[value.index(after: slash)...])
        }
        return value
    }

    /// A token value `system|code`, `|code` or `code`: the code, if the system (when given) is `system`.
    /// - Returns: nil when the value names another system (it matches nothing here).
    public static func token(_ value: String, system: String?) -> String? {
        guard let bar = value.firstIndex(of: "|") else { return value }
        let s = String(value[..<bar])
        guard s.isEmpty || s == system else { return nil }
        return String(value[value.index(after: bar)...])
    }
}

/// An Observation search (`GET [base]/Observation?…`).
public struct ObservationSearch: Sendable, Hashable {
    /// Parameters: `patient` (or `subject`, a Patient reference; required), `code` (LOINC, with or
    /// without `http://loinc.org|`), `category` (`vital-signs`, `laboratory`), `date` (repeatable,
    /// with prefixes), and the common ones.
    public static let parameters: Set<String> = ["patient", "subject", "code", "category", "date", "_id"]

    /// The patients, one of which the Observation's subject is.
    public var patientIDs: [String]
    /// The kinds asked for by `code` and `category` together; nil: any.
    public var kinds: Set<ObservationKind>?
    /// Logical ids (`_id`), nil: any.
    public var ids: [String]?
    /// Conditions on the effective instant, all of which hold.
    public var dates: [InstantCondition]
    public var page: PageRequest

    /// - Throws: ``FHIRError`` 400 for an unknown parameter, a bad value, or no `patient`.
    public init(query: [(name: String, value: String)], defaultCount: Int, maxCount: Int) throws(FHIRError) {
        let g = try FHIRSearch.group(query, allowed: Self.parameters, repeatable: ["date"])
        page = try FHIRSearch.page(g, defaultCount: defaultCount, maxCount: maxCount)
        var patients: [String] = []
        for name in ["patient", "subject"] {
            for value in g[name] ?? [] {
                for alternative in try FHIRSearch.alternatives(value) {
                    patients.append(try FHIRSearch.patientID(alternative, parameter: name))
                }
            }
        }
        if let values = g["_id"] {
            var all: [String] = []
            for value in values { all += try FHIRSearch.alternatives(value) }
            ids = all
        }
        guard !patients.isEmpty || ids != nil else {
            throw .invalid("Observation search needs patient (or subject, or _id): searches run per patient")
        }
        patientIDs = patients
        var kinds: Set<ObservationKind>?
        if let codes = g["code"]?.first {
            var set = Set<ObservationKind>()
            for value in try FHIRSearch.alternatives(codes) {
                if let code = FHIRSearch.token(value, system: FHIRSystems.loinc), let kind = ObservationKind.forLOINC(code) {
                    set.insert(kind)
                }
            }
            kinds = set
        }
        if let categories = g["category"]?.first {
            var set = Set<ObservationKind>()
            for value in try FHIRSearch.alternatives(categories) {
                if let code = FHIRSearch.token(value, system: FHIRSystems.observationCategory),
                   let category = ObservationCategory(rawValue: code) {
                    set.formUnion(ObservationKind.forCategory(category))
                }
            }
            kinds = kinds.map { $0.intersection(set) } ?? set
        }
        self.kinds = kinds
        var dates: [InstantCondition] = []
        for value in g["date"] ?? [] { dates += try InstantCondition.parse(value, parameter: "date") }
        self.dates = dates
    }

    /// The keyset position of the last entry of a page: `<measured_at ms>.<reading id>`.
    public static func cursor(measuredAt: Int64, readingID: Int64) -> String { "\(measuredAt).\(readingID)" }

    /// The position `_page` names, or nil when there is none.
    /// - Throws: ``FHIRError`` 400 for a malformed `_page`.
    public func position() throws(FHIRError) -> (measuredAt: Int64, readingID: Int64)? {
        guard let after = page.after else { return nil }
        let parts = after.split(separator: ".")
        guard parts.count == 2, let m = Int64(parts[0]), let id = Int64(parts[1]) else {
            throw .invalid("_page is not a position this server wrote; follow the next link as given")
        }
        return (m, id)
    }
}

/// A Task search (`GET [base]/Task?…`): `patient` (or `subject`/`for`), `status`
/// (`requested`, `accepted`, `completed`), `_lastUpdated` (repeatable, with prefixes), `_id`.
public struct TaskSearch: Sendable, Hashable {
    public static let parameters: Set<String> = ["patient", "subject", "status", "_lastUpdated", "_id"]

    public var patientIDs: [String]?
    /// Stored statuses (`open`, `acknowledged`, `resolved`); nil: any.
    public var statuses: [String]?
    public var ids: [Int64]?
    public var lastUpdated: [InstantCondition]
    public var page: PageRequest

    /// - Throws: ``FHIRError`` 400.
    public init(query: [(name: String, value: String)], defaultCount: Int, maxCount: Int) throws(FHIRError) {
        let g = try FHIRSearch.group(query, allowed: Self.parameters, repeatable: ["_lastUpdated"])
        page = try FHIRSearch.page(g, defaultCount: defaultCount, maxCount: maxCount)
        var patients: [String]?
        for name in ["patient", "subject"] {
            for value in g[name] ?? [] {
                for alternative in try FHIRSearch.alternatives(value) {
                    patients = (patients ?? []) + [try FHIRSearch.patientID(alternative, parameter: name)]
                }
            }
        }
        patientIDs = patients
        if let status = g["status"]?.first {
            var stored: [String] = []
            for value in try FHIRSearch.alternatives(status) {
                guard let s = TaskVocabulary.storedStatus(value) else {
                    // A valid FHIR status vitalsd never assigns matches nothing; anything else is an error.
                    let known = ["draft", "received", "rejected", "ready", "cancelled", "in-progress", "on-hold", "failed",
                                 "entered-in-error"]
                    guard known.contains(value) else { throw .invalid("status '\(value)' is not a FHIR Task status") }
                    continue
                }
                stored.append(s)
            }
            statuses = stored
        }
        if let idValues = g["_id"] {
            var all: [String] = []
            for value in idValues { all += try FHIRSearch.alternatives(value) }
            ids = all.compactMap { Int64($0) }
        }
        var conditions: [InstantCondition] = []
        for value in g["_lastUpdated"] ?? [] { conditions += try InstantCondition.parse(value, parameter: "_lastUpdated") }
        lastUpdated = conditions
    }
}

/// A Patient or Device search: `identifier` (`system|value` or `value`), `_id`; Device also `patient`.
public struct EnrollmentSearch: Sendable, Hashable {
    public var ids: [String]?
    /// Identifier values (the enrolled ids) in the resource's identifier system.
    public var identifiers: [String]?
    public var patientIDs: [String]?
    public var page: PageRequest

    /// - Parameters:
    ///   - identifierSystem: the system of the resource's identifier; a value naming another matches nothing.
    ///   - withPatient: accept `patient` (Device).
    /// - Throws: ``FHIRError`` 400.
    public init(
        query: [(name: String, value: String)], identifierSystem: String, withPatient: Bool, defaultCount: Int, maxCount: Int
    ) throws(FHIRError) {
        let allowed: Set<String> = withPatient ? ["identifier", "_id", "patient"] : ["identifier", "_id"]
        let g = try FHIRSearch.group(query, allowed: allowed)
        page = try FHIRSearch.page(g, defaultCount: defaultCount, maxCount: maxCount)
        if let value = g["_id"]?.first { ids = try FHIRSearch.alternatives(value) }
        if let value = g["identifier"]?.first {
            identifiers = try FHIRSearch.alternatives(value).compactMap { FHIRSearch.token($0, system: identifierSystem) }
        }
        var patients: [String]?
        if let value = g["patient"]?.first {
            patients = []
            for alternative in try FHIRSearch.alternatives(value) {
                patients?.append(try FHIRSearch.patientID(alternative, parameter: "patient"))
            }
        }
        patientIDs = patients
    }
}
