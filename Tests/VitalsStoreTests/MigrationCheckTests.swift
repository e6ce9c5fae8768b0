import Foundation
import GRDB
import Testing
import VitalsStore

@Suite("schema migrations seen without applying them")
struct MigrationCheckTests {
    @Test("a database a build would migrate is named with its pending migrations, and left unchanged")
    func pending() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        let db = try AppDatabase.open(path: path)
        let applied = try db.writer.read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid") }
        let last = try #require(applied.last)
        #expect(try AppDatabase.pendingMigrations(path: path) == [])

        // As an older build left it: the newest migration's row missing (its tables are there, which
        // the check does not look at).
        try db.writer.write { try $0.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = ?", arguments: [last]) }
        try db.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(try AppDatabase.pendingMigrations(path: path) == [last])
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(try AppDatabase.pendingMigrations(path: path) == [last])
    }

    @Test("a database this build has not yet written has every migration pending")
    func empty() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        try DatabaseQueue(path: path).close()
        #expect(try AppDatabase.pendingMigrations(path: path).first == "v1")
    }
}
