import Foundation
import PostgresNIO
import PostgresTestSupport
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsPostgres

@Suite("Alert timers on PostgreSQL: escalation on schedule, once across nodes")
struct PostgresTimersTests {
    @Test("an unacknowledged critical task escalates to its owner 30 minutes after opening, and two nodes' runs escalate it once")
    func escalation() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        try await cluster.withDatabase { client, database in
            try await PostgresAlertingTests.enrollGlucometer(client)
            // 45 mg/dL, below the critical 54: a critical task, opened when received.
            let received = PostgresAlertingTests.t0.addingTimeInterval(60)
            let outcome = try await PostgresAlertingTests.storeGlucose(client, 45, measured: PostgresAlertingTests.t0, received: received)
            #expect(outcome.alerting.opened[.critical] == 1)

            // alerts.escalation_after_minutes 30 and escalation_repeat_minutes [30] (the defaults).
            let policy = AlertPolicy.clinicalDefaults
            #expect(policy.escalationAfterSeconds == 1_800 && policy.escalationRepeatSeconds == [1_800])
            let timers = PostgresTimers(client: client, logger: testLogger)
            #expect(try await timers.waitingForAcknowledgement() == 1)
            // A minute early: no escalation yet, but the 15-minute confirmation window of the critical
            // low ended without a re-measurement (alerts.confirmation_window_minutes).
            let early = try await timers.run(policy: policy, now: received.addingTimeInterval(1_799), incarnation: "t")
            #expect(early.escalated == 0)
            #expect(early.notRepeated == 1)
            let first = try await timers.run(policy: policy, now: received.addingTimeInterval(1_800), incarnation: "t")
            #expect(first.escalated == 1)
            #expect(first.escalatedByLevel == [1: 1])
            #expect(first.unreached.isEmpty)
            var row: [(Int, String?)] = []
            for try await r in try await client.query("SELECT escalation_level, escalated_to FROM tasks", logger: testLogger)
                .decode((Int, String?).self) { row.append(r) }
            #expect(row.first?.0 == 1 && row.first?.1 == "ana")

            // The second escalation is due 30 minutes later; two nodes run their timers at once.
            let second = received.addingTimeInterval(3_600)
            let runs = try await withThrowingTaskGroup(of: AlertTimerSummary.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await cluster.withClient(database: database, maximumConnections: 2) { node in
                            try await PostgresTimers(client: node, logger: testLogger).run(policy: policy, now: second, incarnation: "t")
                        }
                    }
                }
                var all: [AlertTimerSummary] = []
                for try await r in group { all.append(r) }
                return all
            }
            // One did it; the other found the lock taken or the task no longer due.
            #expect(runs.map(\.escalated).reduce(0, +) == 1)
            var events: [String] = []
            for try await e in try await client.query("SELECT event FROM task_events ORDER BY id", logger: testLogger)
                .decode(String.self) { events.append(e) }
            #expect(events == ["opened", "confirmation", "escalated", "escalated"])
            #expect(try await rowCount(client, "outbox") == 4)
        }
    }
}
