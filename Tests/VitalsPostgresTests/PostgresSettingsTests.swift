import Foundation
import PostgresNIO
import Testing
import VitalsPostgres

@Suite("PostgreSQL settings from a URL and a password file")
struct PostgresSettingsTests {
    @Test func parsesEveryPart() throws {
        let s = try PostgresSettings(url: "postgres://vitals@db.example.org:6543/vitalsd?sslmode=require")
        #expect(s.host == "db.example.org")
        #expect(s.port == 6543)
        #expect(s.username == "vitals")
        #expect(s.database == "vitalsd")
        #expect(s.sslMode == .require)
        #expect(s.password == nil)
        #expect(s.rootCertificatePath == nil)
    }

    @Test func defaultsToPort5432AndVerifyFull() throws {
        let s = try PostgresSettings(url: "postgresql://vitals@10.0.0.5/rpm")
        #expect(s.port == 5432)
        #expect(s.sslMode == .verifyFull)
        #expect(s.description == "postgres://vitals@10.0.0.5:5432/rpm?sslmode=verify-full")
    }

    @Test func decodesPercentEscapesAndIPv6AndRootCertificate() throws {
        let s = try PostgresSettings(url: "postgres://rpm%20app@[::1]:5433/vitals%2Dprod?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(s.username == "rpm app")
        #expect(s.host == "::1")
        #expect(s.database == "vitals-prod")
        #expect(s.rootCertificatePath == "/etc/ca.pem")
        #expect(s.description == "postgres://rpm app@[::1]:5433/vitals-prod?sslmode=verify-full&sslrootcert=/etc/ca.pem")
    }

    @Test func readsThePasswordFileWithoutItsTrailingNewline() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vitalsd-pgsettings-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (content, expected) in [("s3cret\n", "s3cret"), ("two words\r\n", "two words"), ("no-newline", "no-newline"), ("x\n\n", "x")] {
            let file = dir.appendingPathComponent("pw").path
            try content.write(toFile: file, atomically: true, encoding: .utf8)
            let s = try PostgresSettings(url: "postgres://u@h/d?sslmode=disable", passwordFile: file)
            #expect(s.password?.value == expected)
            #expect(s.clientConfiguration().password == expected)
            // Never shown: not in the description, not in a dump or a reflection.
            #expect(!s.description.contains(expected))
            #expect(!String(reflecting: s).contains(expected))
            var dumped = ""
            dump(s, to: &dumped)
            #expect(!dumped.contains(expected))
        }
    }

    @Test func clientConfigurationCarriesHostPortUserDatabase() throws {
        let c = try PostgresSettings(url: "postgres://vitals@127.0.0.1:6000/rpm?sslmode=disable")
            .clientConfiguration(maximumConnections: 3)
        #expect(c.host == "127.0.0.1")
        #expect(c.port == 6000)
        #expect(c.username == "vitals")
        #expect(c.database == "rpm")
        #expect(c.password == nil)
        #expect(c.options.maximumConnections == 3)
    }

    @Test(arguments: [
        ("not a url at all", PostgresSettingsError.Code.badURL),
        ("http://u@h/d", .badURL),
        ("postgres://h/d", .badURL),
        ("postgres://u@/d", .badURL),
        ("postgres://u@h", .badURL),
        ("postgres://u@h/", .badURL),
        ("postgres://u@h/a/b", .badURL),
        ("postgres://u@h:70000/d", .badURL),
        ("postgres://u@h/d?application_name=x", .badURL),
        ("postgres://u@h/d?sslmode=prefer", .badSSLMode),
        ("postgres://u@h/d?sslmode=", .badSSLMode),
        ("postgres://u:hunter2@h/d", .passwordInURL),
    ])
    func refusesBadURLs(url: String, code: PostgresSettingsError.Code) {
        #expect {
            try PostgresSettings(url: url)
        } throws: { error in
            guard let e = error as? PostgresSettingsError else { return false }
            return e.code == code && !e.message.contains("hunter2")
        }
    }

    @Test func refusesAMissingOrEmptyPasswordFile() throws {
        let missing = "/nonexistent/vitalsd/pw"
        #expect(throws: PostgresSettingsError(code: .passwordFileUnreadable, message: "database password file \(missing) cannot be read")) {
            try PostgresSettings(url: "postgres://u@h/d", passwordFile: missing)
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("vitalsd-empty-pw-" + UUID().uuidString).path
        try "\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: PostgresSettingsError(code: .passwordFileEmpty, message: "database password file \(file) is empty")) {
            try PostgresSettings(url: "postgres://u@h/d", passwordFile: file)
        }
    }
}
