import Foundation
import Testing
import VitalsConfig
import VitalsDaemon

@Suite("start-up")
struct StartupTests {
    @Test("a database directory that does not exist is refused under database.path")
    func missingDatabaseDirectory() throws {
        var config = VitalsConfiguration()
        config.database.path = "/nonexistent-vitalsd-dir/vitalsd.sqlite"
        do {
            _ = try Daemon.openDatabase(config)
            Issue.record("opened a database in a missing directory")
        } catch let error as ConfigurationErrors {
            #expect(error.errors.map(\.key) == ["database.path"])
            #expect(error.description == "database.path: directory /nonexistent-vitalsd-dir does not exist")
        }
    }
}
