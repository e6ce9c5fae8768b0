import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsFormats
import VitalsStore

@Suite("dead-letter replay")
struct DeadLetterReplayTests {
    let routes = [try! SubscriptionRoute(topic: "devices/+/readings")]

    /// A glucose reading of `device` measured `measuredHoursAgo` hours before `now`, received `receivedHoursAgo` hours before it.
    func reading(_ device: String, _ value: Double, measuredHoursAgo: Double, receivedHoursAgo: Double, now: Date) -> IncomingMessage {
        let ms = Int64((now.timeIntervalSince1970 - measuredHoursAgo * 3_600) * 1000)
        return message(device, #"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":\#(ms)}"#,
                       receivedAt: now.addingTimeInterval(-receivedHoursAgo * 3_600))
    }

    @Test("a device enrolled later: its dead letters are stored once, marked, and a second replay does nothing")
    func enrolledLater() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let now = Date()
        _ = try await db.ingest([
            reading("g9", 45, measuredHoursAgo: 1, receivedHoursAgo: 1, now: now),    // enrolled below
            reading("g8", 100, measuredHoursAgo: 1, receivedHoursAgo: 1, now: now),   // never enrolled
        ], pipeline: pipeline)
        #expect(try db.statistics().deadLettersByReason == ["unknown_device": 2])
        try db.upsertDevice(Device(id: "g9", kind: .glucometer, patientID: "p1"), actor: "test")

        let first = try await db.replayDeadLetters(reason: .unknownDevice, since: nil, routes: routes, pipeline: pipeline,
                                                   actor: "ops", now: now)
        #expect(first.messages == 2 && first.deadLetters == 2)
        #expect(first.readingsStored == 1)
        #expect(first.resolved == 1)
        #expect(first.stillFailing == ["unknown_device": 1])
        #expect(first.newDeadLetters.isEmpty)
        // 45 mg/dL measured an hour ago is below the critical limit of 54: a critical task, not late.
        #expect(first.tasksOpened == 1)
        #expect(try db.tasks().map { "\($0.kind.rawValue) \($0.priority.rawValue)" } == ["threshold critical"])
        let letters = try db.deadLetters()
        #expect(letters.first { $0.deviceID == "g9" }?.replayedAt != nil)
        #expect(letters.first { $0.deviceID == "g9" }?.replayResult == "stored 1, duplicates 0")
        #expect(letters.first { $0.deviceID == "g8" }?.replayedAt == nil)
        #expect(try db.auditEntries().contains { $0.action == "dead_letter.replay" && $0.actor == "ops" })

        // Again: only the still-failing one is tried, and it writes no second dead letter.
        let second = try await db.replayDeadLetters(reason: nil, since: nil, routes: routes, pipeline: pipeline, actor: "ops", now: now)
        #expect(second.messages == 1 && second.readingsStored == 0 && second.resolved == 0)
        #expect(try db.statistics().readings == 1)
        #expect(try db.statistics().deadLetters == 2)
    }

    @Test("a reading measured more than late_after_hours before the replay goes to the late-data review task")
    func lateByReplay() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let now = Date()
        // Measured 30 h ago and received 29 h ago: not late when it came (1 h), late now (30 h > 24 h).
        _ = try await db.ingest([reading("g7", 45, measuredHoursAgo: 30, receivedHoursAgo: 29, now: now)], pipeline: pipeline)
        try db.upsertDevice(Device(id: "g7", kind: .glucometer, patientID: "p1"), actor: "test")
        let s = try await db.replayDeadLetters(reason: nil, since: nil, routes: routes, pipeline: pipeline, actor: "ops", now: now)
        #expect(s.readingsStored == 1)
        #expect(try db.tasks().map(\.kind) == [.lateData])
        #expect(try db.tasks().map(\.priority) == [.critical])  // 45 mg/dL < 54
    }

    @Test("--since and --reason select; purged and too_large payloads are counted, not replayed")
    func selection() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let now = Date()
        _ = try await db.ingest([reading("old1", 100, measuredHoursAgo: 24 * 40, receivedHoursAgo: 24 * 40, now: now)], pipeline: pipeline)
        _ = try await db.ingest([reading("new1", 100, measuredHoursAgo: 2, receivedHoursAgo: 2, now: now),
                                 message("g1", String(repeating: " ", count: 300_000))], pipeline: pipeline)
        #expect(try db.purgeDeadLetterPayloads(before: now.addingTimeInterval(-30 * 86_400)) == 1)
        let recent = try await db.replayDeadLetters(reason: .unknownDevice, since: now.addingTimeInterval(-3 * 3_600), routes: routes,
                                                    pipeline: pipeline, actor: "ops", now: now)
        #expect(recent.messages == 1 && recent.stillFailing == ["unknown_device": 1] && recent.payloadPurged == 0)
        let all = try await db.replayDeadLetters(reason: nil, since: nil, routes: routes, pipeline: pipeline, actor: "ops", now: now)
        #expect(all.payloadPurged == 1 && all.payloadTruncated == 1 && all.messages == 1)
    }
}
