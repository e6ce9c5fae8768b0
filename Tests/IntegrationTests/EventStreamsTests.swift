import Foundation
import Testing
import VitalsDomain
import VitalsStore
@testable import VitalsWeb

@Suite("live-update streams: one cursor read for all, a bound per session")
struct EventStreamsTests {
    @Test("a session holds at most 8 streams; a closed one frees its place; another session has its own")
    func perSession() async throws {
        let dir = try TemporaryDirectoryPath()
        defer { dir.remove() }
        let streams = EventStreams(database: try AppDatabase.open(path: dir.path + "/v.sqlite"))
        let ana = Data([1]), bo = Data([2])
        for _ in 1...8 { #expect(await streams.open(session: ana)) }
        #expect(await streams.open(session: ana) == false)
        #expect(await streams.open(session: bo))
        await streams.close(session: ana)
        #expect(await streams.open(session: ana))
        #expect(await streams.open(session: ana) == false)
    }

    @Test("fifty streams asking at once get the same cursor; a change shows in a later read")
    func sharedCursor() async throws {
        let dir = try TemporaryDirectoryPath()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/v.sqlite")
        let streams = EventStreams(database: db)
        let direct = try await db.worklistCursor()
        let cursors = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 1...50 { group.addTask { try await streams.cursor() } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(cursors == ["\(direct.taskEvent).\(direct.audit)"])
        // Enrolling a patient writes the audit trail: its id moves the cursor, within the cache's age.
        try db.upsertPatient(Patient(id: "p1", timezone: "UTC", programs: [.diabetes]), actor: "test")
        let moved = try await db.worklistCursor()
        #expect(moved.audit > direct.audit)
        #expect(await eventually(30) { (try? await streams.cursor()) == "\(moved.taskEvent).\(moved.audit)" })
    }
}
