import Foundation
import GRDB
import MQTTClient
import Testing
import VitalsAlerting
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// 2026-03-02T07:00:00Z, as in ClockedDaemonTests.
private let start = Date(timeIntervalSince1970: 1_772_434_800)
private let hash = "$2b$12$" + String(repeating: "a", count: 53)
private func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

@Suite("escalation reaches a person; monitoring pauses", .serialized)
struct EscalationAndPauseTests {
    @Test("an unacknowledged critical task escalates to the care manager, then to the backup role; /metrics counts by level")
    func escalationReachesPeople() async throws {
        let env = try await TestEnvironment(extraYAML: """
            alerts:
              check_interval_seconds: 30
              escalation_backup_role: clinician
            """)
        _ = try env.database.addUser(username: "rn.cara", displayName: "Cara, RN", role: .careManager, passwordHash: hash, actor: "test")
        _ = try env.database.addUser(username: "dr.lee", displayName: "Dr. Lee", role: .clinician, passwordHash: hash, actor: "test")
        let clock = ManualWallClock(start)
        let daemon = try await ClockedDaemon.start(env, clock: clock, http: true)
        let pub = try await env.publisher()
        defer { pub.close() }
        // Unowned when it opens: p1 has no care manager yet; then rn.cara takes the caseload.
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(45, at: ms(start.addingTimeInterval(-30))))
        #expect(await eventually { (try? env.database.tasks().first?.priority) == .critical })
        let task = try #require(try env.database.tasks().first)
        #expect(task.owner == nil)
        _ = try env.database.assignCareManager(patientID: "p1", username: "rn.cara", actor: "test")

        // The timer service may be between runs when the clock moves: move it on in steps until it ran.
        func advance(until level: Int) async -> Bool {
            await eventually(advancing: clock, by: 30) { (try? env.database.task(id: task.id)?.task.escalationLevel) == level }
        }
        clock.advance(by: 30 * 60)
        #expect(await advance(until: 1))
        #expect(try env.database.task(id: task.id)?.task.escalatedTo == "rn.cara")
        clock.advance(by: 29 * 60)
        #expect(await advance(until: 2))
        #expect(try env.database.task(id: task.id)?.task.escalatedTo == "role:clinician")
        let details = try await env.database.taskHistory(taskID: task.id).filter { $0.event == "escalated" }.map(\.detail)
        #expect(details == ["level 1 to rn.cara", "level 2 to role:clinician"])

        // The clinician's Mine tab holds it, on top, though nobody assigned it to them.
        let mine = try await env.database.worklist(tab: .mine, username: "dr.lee", page: 1, pageSize: 50, now: clock.now(), role: "clinician")
        #expect(mine.entries.first?.task.id == task.id)
        #expect(mine.counts[.mine] == 1)
        let other = try await env.database.worklist(tab: .mine, username: "rn.cara", page: 1, pageSize: 50, now: clock.now(), role: "care_manager")
        #expect(other.entries.isEmpty)

        let body = try #require(await httpGet(port: env.httpPort, "/metrics")).body
        #expect(body.contains(#"vitalsd_escalations_total{level="1"} 1"#))
        #expect(body.contains(#"vitalsd_escalations_total{level="2"} 1"#))
        #expect(body.contains(#"vitalsd_escalations_total{level="3+"} 0"#))
        await daemon.stop()
    }

    @Test("a breaching reading during a pause is stored and opens no task; after resuming, one does")
    func pausedPatient() async throws {
        let env = try await TestEnvironment()
        let clock = ManualWallClock(start)
        let daemon = try await ClockedDaemon.start(env, clock: clock)
        let pub = try await env.publisher()
        defer { pub.close() }
        // p1 lives in Chicago: 2026-03-02T07:00Z is 01:00 there; paused through 2026-03-04.
        let pause = try env.database.pauseMonitoring(
            patientID: "p1", through: LocalDate("2026-03-04")!, reason: "hospital stay", actor: "rn.cara", now: start)
        #expect(pause.endsAt == MeasurementTimePolicy.parseRFC3339("2026-03-05T00:00:00-06:00")!)
        #expect(throws: MonitoringPauseError.self) {
            try env.database.pauseMonitoring(patientID: "p1", through: LocalDate("2026-03-06")!, reason: "again", actor: "x", now: start)
        }
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(45, at: ms(start.addingTimeInterval(60))))
        #expect(await eventually { (try? env.database.readingRows(patientID: "p1").count) == 1 })
        #expect(try env.database.tasks().isEmpty)
        // The schema keeps the history: a pause is never deleted, and gets its close only once.
        #expect(throws: (any Error).self) { try env.database.writer.write { try $0.execute(sql: "DELETE FROM monitoring_pauses") } }

        try env.database.resumeMonitoring(patientID: "p1", actor: "rn.cara", now: start.addingTimeInterval(600))
        #expect(throws: (any Error).self) {
            try env.database.writer.write { try $0.execute(sql: "UPDATE monitoring_pauses SET closed_at = 1, closed_by = 'x'") }
        }
        clock.advance(by: 900)
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(44, at: ms(start.addingTimeInterval(900))))
        #expect(await eventually { (try? env.database.tasks().count) == 1 })
        let audit = try await env.database.writer.read { db in
            try String.fetchAll(db, sql: "SELECT action FROM audit_log WHERE action LIKE 'monitoring.%' ORDER BY id")
        }
        #expect(audit == ["monitoring.pause", "monitoring.resume"])
        await daemon.stop()
    }
}
