/// CSV as vitalsd writes it, in every export (`--format csv` of the CLI, and any other writer):
/// RFC 4180 quoting, and cells neutralised against CSV (formula) injection.
///
/// A spreadsheet that opens a CSV runs a cell that starts with `=`, `+`, `-` or `@` as a formula
/// (`=HYPERLINK(…)` in an audit actor or a task note becomes a link that leaks data), and one that
/// starts with a tab, a carriage return or a NUL too. Such a cell gets a leading single quote, which
/// spreadsheets read as "text" (OWASP "CSV Injection"; OWASP ASVS 5.0 requirement 1.2.10, which
/// adds RFC 4180 quoting). A cell that is a plain decimal number (`-5`, `-0.25`) is left alone: it
/// cannot call anything, and quoting it would turn numbers into text.
public enum CSVText {
    /// Characters that make a spreadsheet read a cell as a formula when they come first.
    public static let formulaTriggers: Set<Character> = ["=", "+", "-", "@", "\t", "\r", "\u{0}"]

    /// `value` safe to open in a spreadsheet: with a leading `'` when it starts with a formula
    /// trigger and is not a plain decimal number.
    public static func neutralised(_ value: String) -> String {
        guard let first = value.first, formulaTriggers.contains(first), !isPlainNumber(value) else { return value }
        return "'" + value
    }

    /// One CSV field: neutralised, then quoted (RFC 4180 §2.6, §2.7) when it holds a comma, a quote,
    /// a line break or leading/trailing spaces.
    public static func field(_ value: String) -> String {
        let v = neutralised(value)
        let needsQuotes = v.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            || v.first == " " || v.last == " "
        guard needsQuotes else { return v }
        var quoted = "\""
        for c in v {
            if c == "\"" { quoted.append("\"") }
            quoted.append(c)
        }
        return quoted + "\""
    }

    /// One CSV line of fields, without the line break.
    public static func line(_ fields: [String]) -> String {
        fields.map(field).joined(separator: ",")
    }

    /// True for an optional minus sign, digits, and an optional fraction: `-12`, `-0.5`.
    static func isPlainNumber(_ s: String) -> Bool {
        var rest = Substring(s)
        if rest.first == "-" { rest = rest.dropFirst() }
        let parts = rest.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCII), whole.allSatisfy(\.isNumber) else { return false }
        if parts.count == 2 { return !parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isNumber } }
        return true
    }
}
