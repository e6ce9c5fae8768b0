import Foundation
import PostgresNIO
import PostgresTestSupport
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsPostgres

@Suite("vitalsd task on a PostgreSQL database: list, acknowledge, resolve, note; an acknowledgement stops the escalation", .serialized)
struct PostgresTaskCommandTests {
    @Test("a critical low listed, acknowledged (no escalation 30 minutes on), refused twice, resolved and shown with its history, audited")
    func acknowledgeAndResolve() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        try await cluster.withDatabase { client, name in
            try await PostgresAlertingTests.enrollGlucometer(client)
            // 45 mg/dL, below the critical 54: task #1, critical, open, escalating 30 minutes after it opened.
            let received = Date()
            _ = try await PostgresAlertingTests.storeGlucose(client, 45, measured: received.addingTimeInterval(-60), received: received)
            let yaml = PostgresCommandTests.yaml(cluster, database: name)

            let list = try await vitalsd(["task", "list"], yaml: yaml)
            #expect(list.status == 0, "\(list.errors)")
            let lines = list.output.split(separator: "\n")
            #expect(lines.count == 2)
            #expect(lines.last?.hasPrefix("1   critical  open    p1          glucose low") == true, "\(list.output)")
            #expect(lines.last?.hasSuffix("Glucose 45 mg/dL below critical limit 54 mg/dL") == true, "\(list.output)")

            let ack = try await vitalsd(["task", "ack", "1", "--by", "ana", "--note", "called the patient"], yaml: yaml)
            #expect(ack.status == 0, "\(ack.errors)")
            #expect(ack.output == "task #1 acknowledged by ana\n")
            let row = try await client.query(
                "SELECT status, acknowledged_by, next_escalation_at FROM tasks WHERE id = 1", logger: testLogger
            ).decode((String, String?, Int64?).self).collected()
            #expect(row.first?.0 == "acknowledged" && row.first?.1 == "ana" && row.first?.2 == nil)
            // Past the 30 minutes (alerts.escalation_after_minutes): acknowledged, so nothing escalates;
            // the 15-minute confirmation window ended without a re-measurement (an event of its own).
            let timers = try await PostgresTimers(client: client, logger: testLogger).run(
                policy: .clinicalDefaults, now: received.addingTimeInterval(1_801), incarnation: "t")
            #expect(timers.escalated == 0 && timers.notRepeated == 1)

            let again = try await vitalsd(["task", "ack", "1", "--by", "ana"], yaml: yaml)
            #expect(again.status == 1)
            #expect(again.errors.contains("task 1 is acknowledged; cannot mark it acknowledged"), "\(again.errors)")
            let minutes = try await vitalsd(["task", "resolve", "1", "--by", "ana", "--minutes", "5"], yaml: yaml)
            #expect(minutes.status == 1)
            #expect(minutes.errors.contains("--minutes: time entries are kept on SQLite only so far"), "\(minutes.errors)")
            let missing = try await vitalsd(["task", "resolve", "7", "--by", "ana"], yaml: yaml)
            #expect(missing.status != 0)
            #expect(missing.errors.contains("task 7 does not exist"), "\(missing.errors)")

            #expect(try await vitalsd(["task", "resolve", "1", "--by", "ana"], yaml: yaml).output == "task #1 resolved by ana\n")
            #expect(try await vitalsd(["task", "note", "1", "--by", "ana", "--text", "recheck tomorrow"], yaml: yaml).status == 0)
            let show = try await vitalsd(["task", "show", "1"], yaml: yaml)
            #expect(show.status == 0, "\(show.errors)")
            #expect(show.output.hasPrefix("task #1  critical  resolved\n"), "\(show.output)")
            #expect(show.output.contains("acknowledged: ") && show.output.contains(" by ana\n"))
            #expect(show.output.contains(": called the patient\n") && show.output.contains(": recheck tomorrow\n"))
            let history = show.output.components(separatedBy: "history:\n").last?.split(separator: "\n")
                .map { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "" }
            #expect(history == ["opened", "acknowledged", "confirmation", "resolved"], "\(show.output)")

            let audit = try await client.query(
                "SELECT actor, action, detail FROM audit_log WHERE target_type = 'task' ORDER BY id", logger: testLogger
            ).decode((String, String, String?).self).collected().map { "\($0.0) \($0.1) \($0.2 ?? "-")" }
            #expect(audit == ["ana task.acknowledged open -> acknowledged", "ana task.resolved acknowledged -> resolved", "ana task.note -"])
            // Each change's event has its outbox copy for the delivery channels.
            #expect(try await rowCount(client, "outbox") == 4)
        }
    }
}
