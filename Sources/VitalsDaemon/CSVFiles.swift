import Foundation
import SwiftCSV
import VitalsDomain
import VitalsStore

/// A CSV file that cannot be used, with the line at fault.
public struct CSVFileError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Reads a CSV file with a header row into rows keyed by column name, each with its line number (1
/// is the header). Rows with every cell empty (blank lines, a trailing newline too many) are skipped.
/// - Parameters:
///   - required: columns the file must have.
///   - optional: the other columns it may have; nil lets it have any others (they are ignored).
///     Given, a column outside both lists is refused: a misspelt optional column would otherwise be
///     ignored, and the values under it lost without a word.
/// - Throws: ``CSVFileError`` when the file is unreadable or not UTF-8, breaks CSV quoting, lacks a
///   required column, has an unknown one, or has a row with a value beyond the last column (each with
///   its line; never a value of the file).
func readCSV(path: String, required: [String], optional: [String]? = nil) throws -> [(line: Int, row: [String: String])] {
    // The file's own problem in words ("No such file or directory"), not Foundation's error dump.
    guard FileManager.default.isReadableFile(atPath: path), let data = FileManager.default.contents(atPath: path) else {
        let reason = access(path, F_OK) == 0 ? "permission denied" : "no such file"
        throw CSVFileError("\(path): cannot read: \(reason)")
    }
    guard let text = String(data: data, encoding: .utf8) else {
        let line = CSVStructure.firstLineNotUTF8(data) ?? 1
        throw CSVFileError("\(path):\(line): not UTF-8 text; save the file as UTF-8 (CSV UTF-8 in a spreadsheet)")
    }
    if let problem = CSVStructure.quotingProblem(text) {
        throw CSVFileError("\(path):\(problem.line): \(problem.reason)")
    }
    let csv: CSV<Enumerated>
    do {
        csv = try CSV<Enumerated>(string: text, delimiter: .comma, loadColumns: false)
    } catch {
        // Not reached for what quotingProblem checks; never the parser's message, which quotes the text.
        throw CSVFileError("\(path): cannot read as CSV (RFC 4180)")
    }
    let header = csv.header.map { $0.trimmingCharacters(in: .whitespaces) }
    let missing = required.filter { !header.contains($0) }
    guard missing.isEmpty else {
        throw CSVFileError("\(path): missing column(s) \(missing.joined(separator: ", ")); expected \(required.joined(separator: ","))")
    }
    if let optional {
        let unknown = header.filter { !required.contains($0) && !optional.contains($0) }
        guard unknown.isEmpty else {
            throw CSVFileError(
                "\(path): unknown column(s) \(unknown.map { "'\($0)'" }.joined(separator: ", ")); the columns are \((required + optional).joined(separator: ","))")
        }
    }
    func filled(_ cell: String) -> Bool { !cell.trimmingCharacters(in: .whitespaces).isEmpty }
    var rows: [(line: Int, row: [String: String])] = []
    for (index, cells) in csv.rows.enumerated() {
        let line = index + 2
        // Blank lines are skipped; a row's length is up to its last filled cell.
        guard let last = cells.lastIndex(where: filled) else { continue }
        // A cell beyond the header's last column would be dropped without a word: most often a
        // value with an unquoted comma ("Lopez, Maria"), whose second half is lost.
        guard last < header.count else {
            throw CSVFileError("""
                \(path):\(line): \(last + 1) cells, the header has \(header.count) columns; a value with a comma \
                must be quoted ("Lopez, Maria")
                """)
        }
        var row: [String: String] = [:]
        for (column, name) in header.enumerated() { row[name] = column < cells.count ? cells[column] : "" }
        rows.append((line, row))
    }
    return rows
}

/// Checks of a CSV file's structure that name the line at fault, before it is parsed.
enum CSVStructure {
    /// The first line (from 1) at which `text` breaks RFC 4180's quoting, with the reason in words
    /// (never a character of the text): a quotation mark inside a field that does not start with one,
    /// a character after a field's closing quotation mark, or a quoted field still open at the end.
    static func quotingProblem(_ text: String) -> (line: Int, reason: String)? {
        var line = 1, openedOn = 1
        var inQuotes = false, afterClosingQuote = false, fieldStart = true
        for scalar in text.unicodeScalars.drop(while: { $0 == "\u{FEFF}" }) {
            if inQuotes {
                if scalar == "\"" { inQuotes = false; afterClosingQuote = true } else if scalar == "\n" { line += 1 }
                continue
            }
            if afterClosingQuote {
                afterClosingQuote = false
                switch scalar {
                case "\"": inQuotes = true   // a quotation mark written twice inside a quoted field
                case ",": fieldStart = true
                case "\n": line += 1; fieldStart = true
                case "\r": afterClosingQuote = true
                default:
                    return (line, "a character after the closing quotation mark of a field; inside a quoted field, write a quotation mark twice")
                }
                continue
            }
            switch scalar {
            case "\"":
                guard fieldStart else {
                    return (line, #"a quotation mark inside a field that does not start with one; quote the whole field and write the mark twice ("Jo ""J"" Smith")"#)
                }
                inQuotes = true
                openedOn = line
                fieldStart = false
            case ",": fieldStart = true
            case "\n": line += 1; fieldStart = true
            case "\r": break
            default: fieldStart = false
            }
        }
        return inQuotes ? (openedOn, "a quoted field that does not end before the end of the file") : nil
    }

    /// The first line (from 1) that is not valid UTF-8, or nil when every line is.
    static func firstLineNotUTF8(_ data: Data) -> Int? {
        for (index, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated()
        where String(data: Data(line), encoding: .utf8) == nil {
            return index + 1
        }
        return nil
    }
}

/// The enrollment file of `vitalsd import`: `patient_id,program,timezone,device_id` and the optional
/// columns `device_kind`, `name`, `birth_date`, `phone`, `care_manager`.
///
/// One row per patient device; a patient in several programs may be listed once per program
/// (programs are merged). `device_id` may be empty for a patient without a device yet;
/// `device_kind` defaults to `other`. An empty name, birth date, phone or care manager cell leaves the
/// stored value as it is.
public enum EnrollmentCSV {
    /// The columns a file must have.
    public static let requiredColumns = ["patient_id", "program", "timezone", "device_id"]
    /// The columns it may have; any other is refused.
    public static let optionalColumns = ["device_kind", "name", "birth_date", "phone", "care_manager"]

    /// Parses the file and checks each cell as enrollment will (ids, names, dates of birth, phone
    /// numbers), so that an error names its line; blank lines are skipped.
    /// - Throws: ``CSVFileError`` naming the line (1 is the header) and the field at fault, or an
    ///   unknown column.
    public static func read(path: String) throws -> [AppDatabase.ImportRow] {
        let rows = try readCSV(path: path, required: requiredColumns, optional: optionalColumns)
        // Where each device was first listed, and for whom: one device under two patients in one file
        // is a mistake in the file, named with both lines.
        var listed: [String: (patientID: String, line: Int)] = [:]
        return try rows.map { line, row in
            func field(_ name: String) -> String { (row[name] ?? "").trimmingCharacters(in: .whitespaces) }
            let patientID = field("patient_id")
            guard !patientID.isEmpty else { throw CSVFileError("\(path):\(line): patient_id is empty") }
            let programs = try field("program").split(separator: ";").map { name -> Program in
                let trimmed = name.trimmingCharacters(in: .whitespaces)
                guard let p = Program(rawValue: trimmed) else {
                    throw CSVFileError(
                        "\(path):\(line): program '\(trimmed)' is not one of \(Program.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return p
            }
            guard !programs.isEmpty else { throw CSVFileError("\(path):\(line): program is empty") }
            let timezone = field("timezone")
            guard TimeZone(identifier: timezone) != nil else {
                throw CSVFileError("\(path):\(line): timezone '\(timezone)' is not an IANA time zone")
            }
            let deviceID = field("device_id")
            if !deviceID.isEmpty {
                if let first = listed[deviceID], first.patientID != patientID {
                    throw CSVFileError("""
                        \(path):\(line): device \(deviceID) is listed for patient \(first.patientID) on line \(first.line) \
                        and for patient \(patientID) here; a device belongs to one patient
                        """)
                }
                if listed[deviceID] == nil { listed[deviceID] = (patientID, line) }
            }
            let kindText = field("device_kind")
            guard let kind = kindText.isEmpty ? .other : DeviceKind(rawValue: kindText) else {
                throw CSVFileError("\(path):\(line): device_kind '\(kindText)' is not one of \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            func optional(_ name: String) -> String? { field(name).isEmpty ? nil : field(name) }
            do {
                try EnrollmentIdentifier.validate(patientID, "patient")
                if !deviceID.isEmpty { try EnrollmentIdentifier.validate(deviceID, "device") }
                _ = try optional("name").map(PatientDetails.name)
                _ = try optional("birth_date").map { try PatientDetails.birthDate($0, today: LocalDate(Date(), in: TimeZone(identifier: timezone)!)) }
                _ = try optional("phone").map(PatientDetails.phone)
            } catch let error as EnrollmentError {
                throw CSVFileError("\(path):\(line): \(error)")
            }
            return AppDatabase.ImportRow(
                patient: Patient(id: patientID, timezone: timezone, programs: programs, name: optional("name"),
                                 birthDate: optional("birth_date"), phone: optional("phone"), careManager: optional("care_manager")),
                device: deviceID.isEmpty ? nil : Device(id: deviceID, kind: kind, patientID: patientID))
        }
    }
}

/// One row of a replay file: a reading to publish as a canonical message.
public struct ReplayReading: Sendable, Hashable {
    public var deviceID: String
    public var measuredAt: Date
    public var type: String
    /// The value text as in the file; published as a JSON number when it is one.
    public var value: String
    public var unit: String

    public init(deviceID: String, measuredAt: Date, type: String, value: String, unit: String) {
        self.deviceID = deviceID
        self.measuredAt = measuredAt
        self.type = type
        self.value = value
        self.unit = unit
    }

    /// The canonical message v1 for this reading, with `measured_at` in UTC (`Z`) to the millisecond.
    public func canonicalPayload() -> [UInt8] {
        let time = measuredAt.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        let valueJSON: String
        if let number = NumericValue.parseDecimalString(value) {
            // Swift prints the shortest text that reads back as the same Double: valid JSON.
            valueJSON = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        } else {
            valueJSON = jsonString(value)
        }
        let json = "{\"measured_at\":\(jsonString(time)),\"type\":\(jsonString(type)),\"value\":\(valueJSON),\"unit\":\(jsonString(unit))}"
        return Array(json.utf8)
    }
}

private func jsonString(_ s: String) -> String {
    let data = try! JSONEncoder().encode(s)
    return String(decoding: data, as: UTF8.self)
}

/// The replay file of `vitalsd replay`: `device_id,measured_at,type,value,unit`.
///
/// `measured_at` is RFC 3339 with an offset, or a naive local time (`2015-06-06 16:50:27`) read in
/// the time zone given with `--timezone`.
public enum ReplayCSV {
    /// Parses the file.
    /// - Throws: ``CSVFileError`` naming the line and field at fault.
    public static func read(path: String, timeZone: TimeZone?) throws -> [ReplayReading] {
        let rows = try readCSV(path: path, required: ["device_id", "measured_at", "type", "value", "unit"])
        return try rows.map { line, row in
            func field(_ name: String) -> String { (row[name] ?? "").trimmingCharacters(in: .whitespaces) }
            let text = field("measured_at")
            let date: Date
            if let d = MeasurementTimePolicy.parseRFC3339(text) {
                date = d
            } else if let timeZone, let d = LocalDateTime.parse(text, in: timeZone) {
                date = d
            } else if let timeZone, LocalDateTime.isInDaylightSavingGap(text, in: timeZone) {
                throw CSVFileError(
                    "\(path):\(line): measured_at '\(text)' does not exist in \(timeZone.identifier) (skipped by daylight saving); the device clock probably does not follow daylight saving: pass a fixed offset such as --timezone -05:00")
            } else if timeZone == nil, LocalDateTime.parse(text, in: .gmt) != nil {
                throw CSVFileError("\(path):\(line): measured_at '\(text)' has no UTC offset; pass --timezone")
            } else {
                throw CSVFileError("\(path):\(line): measured_at '\(text)' is not a date-time")
            }
            let deviceID = field("device_id")
            guard !deviceID.isEmpty, !deviceID.contains(where: { "/+#".contains($0) }) else {
                throw CSVFileError("\(path):\(line): device_id is empty or contains / + #")
            }
            return ReplayReading(deviceID: deviceID, measuredAt: date, type: field("type"), value: field("value"), unit: field("unit"))
        }
    }
}
