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
