import ArgumentParser
import Foundation
import VitalsDomain

/// How a listing is printed.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table
    case json
    case csv
}

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in
            i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

/// Prints rows as RFC 4180 CSV with every cell neutralised against formula injection (``CSVText``).
func printCSV(_ header: [String], _ rows: [[String]]) {
    print(CSVText.line(header))
    for row in rows { print(CSVText.line(row)) }
}

/// Prints a value as pretty JSON with sorted keys, snake_case keys (`patient_id`, `received_at`:
/// one style in every command's JSON, as in the task events) and ISO 8601 dates.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    encoder.keyEncodingStrategy = .convertToSnakeCase
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// An instant as `2026-11-28T13:10:00Z`.
func iso(_ date: Date?) -> String {
    date.map { $0.formatted(Date.ISO8601FormatStyle()) } ?? ""
}

/// Prints a listing in the chosen format.
func emit<T: Encodable>(_ format: OutputFormat, json: T, header: [String], rows: [[String]]) throws {
    switch format {
    case .table: printTable(header, rows)
    case .csv: printCSV(header, rows)
    case .json: try printJSON(json)
    }
}
