import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsStore

@Suite("WAL checkpoints off the commit path")
struct CheckpointTests {
    @Test("with background checkpoints commits never checkpoint; the checkpointer copies the whole WAL")
    func background() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        let db = try AppDatabase.open(path: path, backgroundCheckpoints: true)
        try db.upsertPatient(Patient(id: "p1", timezone: "UTC", programs: [.diabetes]), actor: "test")
        try db.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p1"), actor: "test")
        for minutes in 1...20 {
            _ = try await db.ingest([glucose(100, minutesAgo: Double(minutes))], pipeline: pipeline)
        }
        // SQLite's documented default is 1,000 pages; 0 turns automatic checkpoints off.
        #expect(try await db.writer.write { try Int.fetchOne($0, sql: "PRAGMA wal_autocheckpoint") } == 0)

        let checkpointer = try AppDatabase.walCheckpointer(path: path)
        let result = try await checkpointer.checkpoint()
        #expect(result.walPages > 0)
        #expect(result.checkpointed == result.walPages)
        try checkpointer.close()
        #expect(try db.statistics().readings == 20)
    }

    @Test("a WAL past 16 MiB is restarted once nearly all of it is copied, so the next commit writes it from its start")
    func boundedWAL() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        let db = try AppDatabase.open(path: path, backgroundCheckpoints: true)
        let checkpointer = try AppDatabase.walCheckpointer(path: path)
        // 20 commits of 1 MiB: about 5,200 pages of 4 KiB in the WAL, above the 4,096 of the bound.
        try await db.writer.write { try $0.execute(sql: "CREATE TABLE filler(b BLOB)") }
        for _ in 0..<20 {
            try await db.writer.write { try $0.execute(sql: "INSERT INTO filler VALUES (zeroblob(1048576))") }
        }
        // Below the bound nothing is restarted: a small WAL is left to the passive checkpoints.
        let small = try AppDatabase.open(path: dir.path + "/small.sqlite", backgroundCheckpoints: true)
        try await small.writer.write { try $0.execute(sql: "CREATE TABLE t(x)") }
        let smallResult = try await AppDatabase.walCheckpointer(path: dir.path + "/small.sqlite").checkpointBounded()
        #expect(!smallResult.restarted)

        let result = try await checkpointer.checkpointBounded()
        #expect(result.walPages > 5_000)
        #expect(result.restarted)
        // The next commit starts the WAL again: a few pages, not 5,000 more.
        try await db.writer.write { try $0.execute(sql: "INSERT INTO filler VALUES (x'00')") }
        let after = try await checkpointer.checkpoint()
        #expect(after.walPages < 10)
        try checkpointer.close()
    }

    @Test("after the daemon's connections close, removeWAL leaves only the database file, with every commit in it")
    func removeWAL() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/vitalsd.sqlite"
        let db = try AppDatabase.open(path: path, backgroundCheckpoints: true)
        try db.upsertPatient(Patient(id: "p1", timezone: "UTC", programs: [.diabetes]), actor: "test")
        try db.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p1"), actor: "test")
        for minutes in 1...5 { _ = try await db.ingest([glucose(100, minutesAgo: Double(minutes))], pipeline: pipeline) }
        _ = try await db.writer.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM readings") }
        try db.close()
        try AppDatabase.removeWAL(path: path)
        // A WAL left behind would be replayed over a backup copied into the database's place.
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
        #expect(!FileManager.default.fileExists(atPath: path + "-shm"))
        let reopened = try DatabaseQueue(path: path, configuration: { var c = Configuration(); c.readonly = true; return c }())
        #expect(try await reopened.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM readings") } == 5)
        try reopened.close()
    }

    @Test("without it, SQLite's automatic checkpoint stays on")
    func automatic() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
        #expect(try db.writer.write { try Int.fetchOne($0, sql: "PRAGMA wal_autocheckpoint") } == 1000)
    }
}
