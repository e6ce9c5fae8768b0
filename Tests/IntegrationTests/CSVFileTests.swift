import Foundation
import Testing
import VitalsDaemon
import VitalsStore

@Suite("enrollment and replay CSV files")
struct CSVFileTests {
    private func file(_ text: String) throws -> (path: String, remove: () -> Void) {
        let path = NSTemporaryDirectory() + "vitalsd-csv-\(UUID().uuidString).csv"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, { try? FileManager.default.removeItem(atPath: path) })
    }

    private func refusal(_ text: String) throws -> String? {
        let f = try file(text)
        defer { f.remove() }
        do {
            _ = try EnrollmentCSV.read(path: f.path)
            return nil
        } catch let error as CSVFileError {
            return error.description.replacingOccurrences(of: f.path, with: "FILE")
        }
    }

    @Test("blank lines, a trailing one included, are skipped; line numbers count them")
    func blankLines() throws {
        let f = try file("patient_id,program,timezone,device_id\np1,diabetes,UTC,g1\n\np2,hypertension,UTC,c2\n,,,\n\n")
        defer { f.remove() }
        let rows = try EnrollmentCSV.read(path: f.path)
        #expect(rows.map(\.patient.id) == ["p1", "p2"])
        #expect(try refusal("patient_id,program,timezone,device_id\np1,diabetes,UTC,g1\n\np2,diet,UTC,c2\n")
            == "FILE:4: program 'diet' is not one of hypertension, diabetes, heart_failure, copd")
    }

    @Test("a value beyond the header's last column is refused with its line, not dropped; a quoted comma is kept")
    func cellsBeyondTheHeader() throws {
        let header = "patient_id,program,timezone,device_id,device_kind,name\n"
        // "Lopez, Maria" without quotes: seven cells under six columns; "Maria" would be lost.
        #expect(try refusal(header + "p1,diabetes,UTC,g1,glucometer,Ana\np2,diabetes,UTC,g2,glucometer,Lopez, Maria\n")
            == #"FILE:3: 7 cells, the header has 6 columns; a value with a comma must be quoted ("Lopez, Maria")"#)
        #expect(try refusal(header + "p1,diabetes,UTC,g1,glucometer,Ana,,999\n")
            == #"FILE:2: 8 cells, the header has 6 columns; a value with a comma must be quoted ("Lopez, Maria")"#)
        // Empty cells past the last column lose nothing (a spreadsheet's trailing commas), and a
        // quoted comma is part of the value.
        let f = try file(header + "p1,diabetes,UTC,g1,glucometer,Ana,,\np2,diabetes,UTC,g2,glucometer,\"Lopez, Maria\"\n")
        defer { f.remove() }
        #expect(try EnrollmentCSV.read(path: f.path).map(\.patient.name) == ["Ana", "Lopez, Maria"])
    }

    @Test("one device listed for two patients in one file is refused with both lines; twice for one patient is fine")
    func deviceUnderTwoPatients() throws {
        let header = "patient_id,program,timezone,device_id\n"
        #expect(try refusal(header + "p1,diabetes,UTC,g1\np1,hypertension,UTC,g1\np2,diabetes,UTC,g2\np3,diabetes,UTC,g1\n")
            == "FILE:5: device g1 is listed for patient p1 on line 2 and for patient p3 here; a device belongs to one patient")
        #expect(try refusal(header + "p1,diabetes,UTC,g1\np1,hypertension,UTC,g1\n") == nil)
    }

    @Test("broken quoting and text that is not UTF-8 are refused with the line, never a character of the file")
    func quotingAndEncoding() throws {
        let header = "patient_id,program,timezone,device_id,device_kind,name\n"
        #expect(try refusal(header + "p1,diabetes,UTC,g1,glucometer,Ana\np2,diabetes,UTC,g2,cgm,Jo \"Secret\" Smith\n")
            == #"FILE:3: a quotation mark inside a field that does not start with one; quote the whole field and write the mark twice ("Jo ""J"" Smith")"#)
        #expect(try refusal(header + "p1,diabetes,UTC,g1,cgm,\"Secret\" Smith\n")
            == "FILE:2: a character after the closing quotation mark of a field; inside a quoted field, write a quotation mark twice")
        #expect(try refusal(header + "p1,diabetes,UTC,g1,glucometer,Ana\np2,diabetes,UTC,g2,cgm,\"Secret Smith\n")
            == "FILE:3: a quoted field that does not end before the end of the file")
        // A mark written twice inside a quoted field is CSV, and so are CRLF line ends.
        let f = try file(header + "p1,diabetes,UTC,g1,cgm,\"Jo \"\"J\"\" Smith\"\r\np2,diabetes,UTC,g2,cgm,\"Ana B\"\r\n")
        defer { f.remove() }
        #expect(try EnrollmentCSV.read(path: f.path).map(\.patient.id) == ["p1", "p2"])
        // Latin-1 "é" (0xE9) on line 3.
        let path = NSTemporaryDirectory() + "vitalsd-csv-\(UUID().uuidString).csv"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (Data((header + "p1,diabetes,UTC,g1,cgm,Ana\np2,diabetes,UTC,g2,cgm,Ren").utf8) + Data([0xE9, 0x0A]))
            .write(to: URL(fileURLWithPath: path))
        do {
            _ = try EnrollmentCSV.read(path: path)
            Issue.record("read a file that is not UTF-8")
        } catch let error as CSVFileError {
            #expect(error.description == "\(path):3: not UTF-8 text; save the file as UTF-8 (CSV UTF-8 in a spreadsheet)")
        }
    }

    @Test("a missing file is named with the reason, not Foundation's error dump")
    func missingFile() throws {
        let path = NSTemporaryDirectory() + "vitalsd-csv-missing-\(UUID().uuidString).csv"
        do {
            _ = try EnrollmentCSV.read(path: path)
            Issue.record("read a missing file")
        } catch let error as CSVFileError {
            #expect(error.description == "\(path): cannot read: no such file")
        }
    }

    @Test("a misspelt column is refused, naming it, instead of losing its values")
    func unknownColumn() throws {
        #expect(try refusal("patient_id,program,timezone,device_id,nmae\np1,diabetes,UTC,g1,Ann Lee\n")
            == "FILE: unknown column(s) 'nmae'; the columns are patient_id,program,timezone,device_id,device_kind,name,birth_date,phone,care_manager")
    }

    @Test("a name, date of birth, phone or id that enrollment refuses is named with its line, never its value")
    func cellsWithLines() throws {
        let header = "patient_id,program,timezone,device_id,name,birth_date,phone\n"
        let good = "p1,diabetes,UTC,g1,Ann Lee,1950-02-03,+1 555 0100\n"
        #expect(try refusal(header + good + "p2,diabetes,UTC,g2,A\u{200B}B,,\n")
            == "FILE:3: name must have 1 to 200 characters and no control, invisible or text-direction characters")
        #expect(try refusal(header + good + good + "p3,diabetes,UTC,g3,,1850-01-01,\n")
            == "FILE:4: birth date must be a date YYYY-MM-DD from 1900 up to today")
        #expect(try refusal(header + "p4,diabetes,UTC,g4,,,call me\n")
            == "FILE:2: phone must have 3 to 40 characters: digits, spaces, + - ( ) . and x for an extension")
        let longID = String(repeating: "x", count: 129)
        let idRefusal = try #require(try refusal(header + "\(longID),diabetes,UTC,g5,,,\n"))
        #expect(idRefusal.hasPrefix("FILE:2: patient id"))
        #expect(!idRefusal.contains(longID))
    }
}
