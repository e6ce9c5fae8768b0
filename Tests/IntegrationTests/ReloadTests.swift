import Foundation
import Glibc
import MQTTClient
import Testing
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

@Suite("configuration reload", .serialized)
struct ReloadTests {
    @Test("SIGHUP puts new thresholds and topics in force on the same MQTT session; a bad file is refused")
    func sighup() async throws {
        let env = try await TestEnvironment(logLevel: "notice")
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let pub = try await env.publisher()
        defer { pub.close() }
        let at = msAgo(3600)
        try #require(await publishUntilStored(pub, env, payload: glucoseJSON(65, at: at)))
        #expect(try env.database.tasks().first?.reason == "Glucose 65 mg/dL below warning limit 70 mg/dL")

        // Lower the warning limit to 60 and add a gateway topic.
        let original = try String(contentsOfFile: env.configPath, encoding: .utf8)
        let reloaded = original.replacingOccurrences(of: "mqtt:\n", with: "mqtt:\n  topics: [devices/+/readings, gateways/+/readings]\n")
            + "\nthresholds:\n  defaults:\n    glucose: {critical_low: 54, warning_low: 60}\n"
        try reloaded.write(toFile: env.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        let log = env.directory + "/vitalsd.log"
        #expect(await eventually { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("configuration reloaded") })
        #expect(await publishUntilStored(pub, env, topic: "gateways/g1/readings", payload: glucoseJSON(62, at: at + 60_000), readings: 2))
        // 62 mg/dL is not below the new limit of 60: the task got no new occurrence.
        #expect(try env.database.tasks().first?.occurrences == 1)
        // One connection only: the session was never dropped.
        let brokerLog = try String(contentsOfFile: env.directory + "/mosquitto.log", encoding: .utf8)
        #expect(brokerLog.components(separatedBy: "as \(env.config.mqtt.clientID) ").count - 1 == 1)

        // A broken file is refused; the daemon keeps running with what it had.
        try (original.replacingOccurrences(of: "mqtt:\n", with: "mqtt:\n  topics: [\"devices/#\"]\n")).write(
            toFile: env.configPath, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        #expect(await eventually { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("reload refused") })
        try pub.publish(topic: "gateways/g1/readings", payload: glucoseJSON(100, at: at + 120_000))
        #expect(await eventually { (try? env.statistics().readings) == 3 })
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
    }

    @Test("a reload names the changed settings that wait for a restart, and only those")
    func restartNeeded() throws {
        let old = try VitalsConfiguration.parse(yaml: "mqtt:\n  port: 1883\n  topics: [devices/+/readings]\n")
        var new = old
        new.mqtt.topics = ["devices/+/readings", "gateways/+/up"]
        new.thresholds.defaults[.heartRate] = ThresholdLimits(criticalHigh: 130)
        #expect(ReloadService.needingRestart(from: old, to: new).isEmpty)
        new.mqtt.port = 1884
        new.http.port = 9999
        new.alerts.escalationAfterSeconds = 600
        #expect(ReloadService.needingRestart(from: old, to: new)
                == ["mqtt (other than topics and subscriptions)", "http", "alerts escalation and check interval"])
    }
}
