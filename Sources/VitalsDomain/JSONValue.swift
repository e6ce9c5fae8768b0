import Foundation

/// A decoded JSON value, kept loose so that decoders can report exactly which field is wrong
/// instead of failing the whole message on the first type mismatch.
public enum JSONValue: Sendable, Hashable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    /// The member `key` of an object, or `nil`.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The string value, or `nil` for any other kind.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}

extension JSONValue {
    /// True when some object in `bytes` (valid JSON) names the same member twice.
    ///
    /// JSON parsers disagree on which of two equal keys wins (Foundation keeps the first, Python and
    /// JavaScript the last), so `{"value": 120, "value": 45}` is ambiguous: vitalsd refuses it rather
    /// than guess a glucose of 120 where the device may have meant 45.
    public static func hasDuplicateKey(_ bytes: [UInt8]) -> Bool {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        var objects: [Set<String>?] = []  // one entry per open container; nil for arrays
        var expectingKey = false
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "{"):
                objects.append([])
                expectingKey = true
            case UInt8(ascii: "["):
                objects.append(nil)
                expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if !objects.isEmpty { objects.removeLast() }
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = objects.last.map { $0 != nil } ?? false
            case quote:
                let start = i
                var escaped = false
                i += 1
                while i < bytes.count && bytes[i] != quote {
                    if bytes[i] == backslash {
                        escaped = true
                        i += 1
                    }
                    i += 1
                }
                if expectingKey, let last = objects.indices.last, var keys = objects[last] {
                    let token = Array(bytes[start...min(i, bytes.count - 1)])
                    // Compare keys as decoded text, so that "\u0076alue" and "value" are the same key.
                    let key = escaped
                        ? (try? JSONDecoder().decode(String.self, from: Data(token))) ?? String(decoding: token, as: UTF8.self)
                        : String(decoding: token.dropFirst().dropLast(), as: UTF8.self)
                    if keys.contains(key) { return true }
                    keys.insert(key)
                    objects[last] = keys
                }
                expectingKey = false
            default:
                break
            }
            i += 1
        }
        return false
    }
}

/// A fast reader for the common shape of device payloads: JSON whose strings are printable ASCII
/// (with the short escapes encoders write, such as `\/`), nested at most ``CanonicalMessageDecoder/maxNestingDepth`` levels, with no object
/// naming a member twice. It builds the ``JSONValue`` in one pass over the bytes, without
/// Foundation's decoder.
///
/// It decides nothing on its own: for any payload outside that shape, valid or not, it returns nil and
/// the caller uses the full path (UTF-8 check, depth check, `JSONDecoder`, duplicate-member scan),
/// which accepts or refuses it. For a payload inside it, both paths give the same value.
enum FastJSON {
    static func parse(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBufferPointer { buffer -> JSONValue? in
            var reader = Reader(bytes: buffer)
            reader.skipSpace()
            guard let value = reader.value(depth: 1) else { return nil }
            reader.skipSpace()
            return reader.i == buffer.count ? value : nil
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func literal(_ text: StaticString, _ value: JSONValue) -> JSONValue? {
            let n = text.utf8CodeUnitCount
            guard i + n <= bytes.count else { return nil }
            for k in 0..<n where bytes[i + k] != text.utf8Start[k] { return nil }
            i += n
            return value
        }

        mutating func value(depth: Int) -> JSONValue? {
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                guard depth <= CanonicalMessageDecoder.maxNestingDepth else { return nil }
                i += 1
                var members: [String: JSONValue] = [:]
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                    i += 1
                    return .object(members)
                }
                while true {
                    skipSpace()
                    guard let key = string() else { return nil }
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
                    i += 1
                    skipSpace()
                    guard let v = value(depth: depth + 1), members.updateValue(v, forKey: key) == nil else { return nil }
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard bytes[i] == UInt8(ascii: "}") else { return nil }
                    i += 1
                    return .object(members)
                }
            case UInt8(ascii: "["):
                guard depth <= CanonicalMessageDecoder.maxNestingDepth else { return nil }
                i += 1
                var items: [JSONValue] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                    i += 1
                    return .array(items)
                }
                while true {
                    skipSpace()
                    guard let v = value(depth: depth + 1) else { return nil }
                    items.append(v)
                    skipSpace()
                    guard i < bytes.count else { return nil }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard bytes[i] == UInt8(ascii: "]") else { return nil }
                    i += 1
                    return .array(items)
                }
            case UInt8(ascii: "\""):
                return string().map(JSONValue.string)
            case UInt8(ascii: "t"): return literal("true", .bool(true))
            case UInt8(ascii: "f"): return literal("false", .bool(false))
            case UInt8(ascii: "n"): return literal("null", .null)
            default: return number()
            }
        }

        /// A string of printable ASCII, with the escapes `\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t`
        /// (encoders write `mg\/dL`); nil for anything else (other bytes, `\u` escapes).
        mutating func string() -> String? {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
            let start = i + 1
            var k = start
            var unescaped: [UInt8]?
            while k < bytes.count {
                let b = bytes[k]
                if b == UInt8(ascii: "\"") {
                    i = k + 1
                    if let unescaped { return String(decoding: unescaped, as: UTF8.self) }
                    return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<k]), as: UTF8.self)
                }
                guard b >= 0x20, b < 0x7F else { return nil }
                if b == UInt8(ascii: "\\") {
                    guard k + 1 < bytes.count else { return nil }
                    let replacement: UInt8
                    switch bytes[k + 1] {
                    case UInt8(ascii: "\""): replacement = UInt8(ascii: "\"")
                    case UInt8(ascii: "\\"): replacement = UInt8(ascii: "\\")
                    case UInt8(ascii: "/"): replacement = UInt8(ascii: "/")
                    case UInt8(ascii: "b"): replacement = 0x08
                    case UInt8(ascii: "f"): replacement = 0x0C
                    case UInt8(ascii: "n"): replacement = 0x0A
                    case UInt8(ascii: "r"): replacement = 0x0D
                    case UInt8(ascii: "t"): replacement = 0x09
                    default: return nil
                    }
                    if unescaped == nil { unescaped = Array(bytes[start..<k]) }
                    unescaped!.append(replacement)
                    k += 2
                    continue
                }
                unescaped?.append(b)
                k += 1
            }
            return nil
        }

        /// A number in RFC 8259's grammar (`-? int frac? exp?`), finite as a Double; nil otherwise.
        mutating func number() -> JSONValue? {
            let start = i
            func digits() -> Int {
                let s = i
                while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
                return i - s
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else {
                guard digits() > 0 else { return nil }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { return nil }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { return nil }
            }
            // A number too long to be a reading is left to the full path.
            guard i - start <= 40 else { return nil }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            guard let d = Double(text), d.isFinite else { return nil }
            return .number(d)
        }
    }
}
