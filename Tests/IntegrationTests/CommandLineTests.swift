import Foundation
import Testing
import VitalsDomain
import VitalsFormats
import HummingbirdBcrypt
import VitalsStore

/// The admin commands, run as an operator would run them.
@Suite("admin commands")
struct CommandLineTests {
    func run(_ env: TestEnvironment, _ arguments: [String]) async throws -> (code: Int32?, output: String) {
        let log = env.directory + "/cli-\(UUID().uuidString.prefix(6)).log"
        let p = try ChildProcess(path: try vitalsdBinary(), arguments: arguments + ["--config", env.configPath], logPath: log)
        _ = await p.waitForExit(seconds: 30)
        return (p.exitCode, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Runs a command; returns its exit code and standard output.
    func output(_ env: TestEnvironment, _ arguments: [String]) async throws -> (code: Int32?, output: String) {
        let name = env.directory + "/cli-\(UUID().uuidString.prefix(6))"
        let p = try ChildProcess(path: try vitalsdBinary(), arguments: arguments + ["--config", env.configPath],
                                 logPath: name + ".log", outputPath: name + ".out")
        _ = await p.waitForExit(seconds: 30)
        return (p.exitCode, (try? String(contentsOfFile: name + ".out", encoding: .utf8)) ?? "")
    }

    @Test("task note adds a note without a status change; task show lists notes, latest and worst; patient show the suppressed breaches")
    func notesAndSuppression() async throws {
        let env = try TestEnvironment()
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        let at = msAgo(3_600)
        func glucose(_ value: Double, _ offset: Int64) -> IncomingMessage {
            IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: glucoseJSON(value, at: at + offset), receivedAt: Date())
        }
        _ = try env.database.ingestBlocking([glucose(260, 0)], pipeline: pipeline)
        _ = try env.database.ingestBlocking([glucose(270, 60_000)], pipeline: pipeline)
        let task = try #require(try env.database.tasks().first)
        let noted = try await run(env, ["task", "note", String(task.id), "--by", "nurse.a", "--text", "left a voicemail"])
        #expect(noted.code == 0)
        let second = try await run(env, ["task", "note", String(task.id), "--by", "nurse.b", "--text", "patient called back"])
        #expect(second.code == 0)
        #expect(try env.database.task(id: task.id)?.task.status == .open)
        let shown = try await output(env, ["task", "show", String(task.id)])
        #expect(shown.output.contains("nurse.a: left a voicemail"))
        #expect(shown.output.contains("nurse.b: patient called back"))
        #expect(shown.output.contains("latest:       Glucose 270 mg/dL, measured "))
        #expect(shown.output.contains("worst:        Glucose 270 mg/dL, measured "))
        _ = try env.database.resolveTask(id: task.id, by: "nurse.a")
        _ = try env.database.ingestBlocking([glucose(262, 120_000)], pipeline: pipeline)
        let patient = try await output(env, ["patient", "show", "p1"])
        #expect(patient.output.contains("#\(task.id) glucose high: 1, last measured "))
    }

    @Test("a patient limit that would cross the program's other limit is refused")
    func inconsistentThreshold() async throws {
        let env = try TestEnvironment()
        // Default glucose critical_low is 54: a warning_low of 50 would sit below it.
        let refused = try await run(env, ["threshold", "set", "--patient", "p1", "--type", "glucose", "--level", "warning",
                                          "--direction", "low", "--value", "50", "--by", "dr.x"])
        #expect(refused.code != 0)
        #expect(refused.output.contains("warning_low must not be below critical_low"))
        #expect(try env.database.thresholdOverrides(patientID: "p1").isEmpty)
        // 3.3 mmol/L = 59.4594 mg/dL is a valid warning_low.
        let ok = try await run(env, ["threshold", "set", "--patient", "p1", "--type", "glucose", "--level", "warning",
                                     "--direction", "low", "--value", "3.3", "--unit", "mmol/L", "--by", "dr.x"])
        #expect(ok.code == 0)
        #expect(try env.database.thresholdOverrides(patientID: "p1").values.first == 59.4594)
    }

    @Test("a trend rule can be changed or switched off for one patient, never for a rule that does not apply")
    func ruleOverride() async throws {
        let env = try TestEnvironment()
        // p1 is in program diabetes: the heart-failure weight rules do not apply.
        let refused = try await run(env, ["threshold", "rule", "--patient", "p1", "--rule", "weight_gain_7d", "--off"])
        #expect(refused.code != 0)
        #expect(refused.output.contains("no rule 'weight_gain_7d' applies to patient p1; rules in force: none"))
        try env.database.upsertPatient(Patient(id: "hf2", timezone: "UTC", programs: [.heartFailure]), actor: "test")
        let ok = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--bound", "2", "--by", "dr.x"])
        #expect(ok.code == 0)
        #expect(try env.database.ruleOverrides(patientID: "hf2")["weight_gain_7d"] == RuleOverride(bound: 2, disabled: false))
        let negative = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--bound=-1"])
        #expect(negative.output.contains("a delta bound must be above 0"))
        _ = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--clear"])
        #expect(try env.database.ruleOverrides(patientID: "hf2").isEmpty)
        #expect(try env.database.auditEntries().contains { $0.action == "rule.override" })
    }

    @Test("users: the password comes from a file, never an argument; disable ends sessions and releases tasks")
    func users() async throws {
        let env = try TestEnvironment()
        let file = env.directory + "/password"
        try "correct horse battery 9\nsecond line ignored\n".write(toFile: file, atomically: true, encoding: .utf8)
        let added = try await run(env, ["user", "add", "--username", "Ana", "--name", "Ana Ruiz, RN", "--role", "care_manager",
                                        "--password-file", file, "--by", "admin"])
        #expect(added.code == 0)
        let short = env.directory + "/short"
        try "hunter2\n".write(toFile: short, atomically: true, encoding: .utf8)
        let refused = try await run(env, ["user", "add", "--username", "bo", "--name", "Bo", "--role", "clinician", "--password-file", short])
        #expect(refused.code != 0 && refused.output.contains("at least 12 characters"))
        #expect(try await run(env, ["user", "add", "--username", "bo", "--name", "Bo", "--role", "clinician", "--password", "x"]).code != 0)
        let hash = try #require(try await env.database.credentials(username: "ana")?.passwordHash)
        #expect(hash.hasPrefix("$2b$12$"))
        #expect(Bcrypt.verify("correct horse battery 9", hash: hash))

        #expect(try await run(env, ["patient", "assign", "--patient", "p1", "--care-manager", "ana", "--by", "admin"]).code == 0)
        #expect(try env.database.patient(id: "p1")?.careManager == "ana")
        _ = try await env.database.ingest([IncomingMessage(
            topic: "devices/g1/readings", deviceID: "g1",
            payload: Array(#"{"type":"glucose","value":45,"unit":"mg/dL","measured_at":\#(Int64(Date().timeIntervalSince1970 * 1000) - 60_000)}"#.utf8),
            receivedAt: Date())], pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        #expect(try env.database.tasks().first?.owner == "ana")
        #expect(try await run(env, ["user", "disable", "ana", "--by", "admin"]).code == 0)
        #expect(try env.database.tasks().first?.owner == nil)
        #expect(try env.database.user(username: "ana")?.disabled == true)
        let reset = try await run(env, ["user", "reset-password", "ana", "--password-file", file])
        #expect(reset.code == 0)
        let actions = try env.database.auditEntries().map(\.action)
        #expect(actions.contains("user.create") && actions.contains("patient.assign") && actions.contains("user.disable")
                && actions.contains("user.reset_password"))
        #expect(!(try env.database.auditEntries().contains { ($0.detail ?? "").contains("horse") }))
    }

    @Test("device status and device events list telemetry and sentinels, which are not readings")
    func deviceStatusAndEvents() async throws {
        let env = try TestEnvironment()
        let payload = #"[{"metric":"blood_pressure","hwi_device_id":"g1","value_1":2047,"value_2":2047,"timestamp":"2026-01-05T10:00:00Z"},{"metric":"battery_percentage","hwi_device_id":"g1","value_1":"64","timestamp":"2026-01-05T10:00:00Z"}]"#
        let summary = try env.database.ingestBlocking(
            [IncomingMessage(topic: "vendors/tenovi", deviceID: nil, payload: Array(payload.utf8), receivedAt: Date(),
                             format: .tenovi, matchedSubscription: true)],
            pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        #expect(summary.deviceEvents == 2 && summary.deviceStatusUpdated == 1 && summary.readingsStored == 0)
        // The commands run (their table goes to standard output, which `run` discards) …
        #expect(try await run(env, ["device", "status", "--device", "g1"]).code == 0)
        #expect(try await run(env, ["device", "events", "--format", "csv"]).code == 0)
        // … over these rows.
        let status = try env.database.deviceStatus(deviceID: "g1")
        #expect(status.map(\.name) == ["battery_percent"] && status.map(\.value) == [64])
        let events = try env.database.deviceEvents().map { "\($0.kind) \($0.type ?? "-") \($0.code)" }
        #expect(Set(events) == ["device_error systolic_bp sfloat_nan", "device_error diastolic_bp sfloat_nan"])
    }
}
