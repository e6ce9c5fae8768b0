/// The one parser that turns a payload's value into a number (failure-modes F11).
///
/// Rules, in order:
/// 1. a JSON number is taken as it is, if finite;
/// 2. a string is accepted only when it is a plain decimal number (`"145"`, `"-3.5"`, `" 98.6 "`);
///    exponents, hex, `"NaN"`, `"inf"`, `"HI"`, `"LO"` and the empty string are rejected;
/// 3. anything else (bool, null, object, array) is rejected.
///
/// A rejected value is never compared with a threshold; it becomes a dead letter with
/// reason `not_a_number`.
public enum NumericValue {
    /// Parses a decoded JSON value into a finite `Double`.
    ///
    /// - Parameter json: the value as decoded from JSON.
    /// - Returns: the number.
    /// - Throws: ``Rejection`` with reason `not_a_number` when the rules above reject it.
    public static func parse(_ json: JSONValue, field: String) throws(Rejection) -> Double {
        switch json {
        case .number(let d) where d.isFinite:
            return d
        case .string(let s):
            if let d = parseDecimalString(s) { return d }
            throw Rejection(.notANumber, "field '\(field)' is a string that is not a plain decimal number")
        default:
            throw Rejection(.notANumber, "field '\(field)' is not a number")
        }
    }

    /// Parses `[+-]digits[.digits]` with optional surrounding spaces; `nil` otherwise.
    public static func parseDecimalString(_ s: String) -> Double? {
        let t = s.trimmingCharacters(in: .whitespaces)
        var sawDigit = false
        var sawPoint = false
        for (i, c) in t.enumerated() {
            if c.isASCII, c.isNumber {
                sawDigit = true
            } else if c == "." && !sawPoint {
                sawPoint = true
            } else if (c == "-" || c == "+") && i == 0 {
                continue
            } else {
                return nil
            }
        }
        guard sawDigit, t.last?.isNumber == true, let d = Double(t), d.isFinite else { return nil }
        return d
    }
}

import Foundation
