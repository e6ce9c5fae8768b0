/// A JSON value whose object members keep the order they were added in, so that a FHIR resource
/// serialises with `resourceType` first and its elements in the order of the specification.
///
/// Serialisation is a single pass into a byte buffer (``serialized()``); no Foundation encoder is
/// involved, which keeps a 1,000-entry search page cheap to produce.
public indirect enum FHIRJSON: Sendable, Equatable {
    case object(FHIRObject)
    case array([FHIRJSON])
    case string(String)
    case integer(Int64)
    /// A FHIR `decimal`: written in the shortest form that reads back as the same `Double` (`120`, `5.55`).
    case decimal(Double)
    case bool(Bool)
    case null

    /// UTF-8 JSON text, without insignificant white space.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    /// Appends the UTF-8 JSON text of this value to `out`.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            for (i, member) in object.members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(member.name, into: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .string(let s):
            Self.writeString(s, into: &out)
        case .integer(let i):
            out.append(contentsOf: String(i).utf8)
        case .decimal(let d):
            out.append(contentsOf: Self.decimalText(d).utf8)
        case .bool(let b):
            out.append(contentsOf: (b ? "true" : "false").utf8)
        case .null:
            out.append(contentsOf: "null".utf8)
        }
    }

    /// The JSON text of a finite number: integers without a fraction (`120`), others in Swift's
    /// shortest round-trip form (`5.55`). Non-finite values, which JSON cannot carry, become `0`.
    static func decimalText(_ d: Double) -> String {
        guard d.isFinite else { return "0" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// The members of a JSON object in insertion order. Assigning nil through the subscript adds nothing,
/// so that optional FHIR elements are simply absent.
public struct FHIRObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public struct Member: Sendable, Equatable {
        public var name: String
        public var value: FHIRJSON
    }

    public private(set) var members: [Member] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, FHIRJSON)...) {
        members = elements.map { Member(name: $0.0, value: $0.1) }
    }

    /// The value of member `name`, or nil. Setting a value replaces an existing member in place or
    /// appends a new one; setting nil leaves the object unchanged.
    public subscript(name: String) -> FHIRJSON? {
        get { members.first { $0.name == name }?.value }
        set {
            guard let newValue else { return }
            if let i = members.firstIndex(where: { $0.name == name }) {
                members[i].value = newValue
            } else {
                members.append(Member(name: name, value: newValue))
            }
        }
    }
}

extension FHIRJSON: ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral,
    ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: FHIRJSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, FHIRJSON)...) {
        var object = FHIRObject()
        for (k, v) in elements { object[k] = v }
        self = .object(object)
    }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}
