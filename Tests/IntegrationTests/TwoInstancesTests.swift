import Foundation
import Glibc
import Testing
import VitalsConfig

/// Two daemons that share a configuration, a database, an HTTP port or an MQTT client id, through a
/// real broker and the built binary.
@Suite("two daemons on one database or one client id", .serialized)
struct TwoInstancesTests {
    /// A configuration like `env`'s with another database and HTTP port (and the same broker and client id).
    func secondConfiguration(_ env: TestEnvironment, name: String, databasePath: String? = nil, httpPort: Int? = nil) throws -> String {
        var text = try String(contentsOfFile: env.configPath, encoding: .utf8)
        if let databasePath { text = text.replacingOccurrences(of: env.config.database.path, with: databasePath) }
        if let httpPort { text = text.replacingOccurrences(of: "port: \(env.httpPort)", with: "port: \(httpPort)") }
        let path = env.directory + "/\(name).yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func metrics(_ port: Int) async -> String { await httpGet(port: port, "/metrics")?.body ?? "" }

    @Test("the same configuration started twice: the second refuses before the broker, naming the lock")
    func sameDatabase() async throws {
        let env = try await TestEnvironment()
        let first = try env.startProcess()
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })

        let log = env.directory + "/second.log"
        let second = try ChildProcess(path: try vitalsdBinary(), arguments: ["run", "--config", env.configPath], logPath: log)
        #expect(await second.waitForExit(seconds: 60))
        #expect(second.exitCode == 1)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("database.path: \(env.config.database.path) is in use by another vitalsd (pid \(first.pid))"), "\(text)")
        #expect(text.contains("holds the lock \(env.config.database.path).lock"))
        // It never connected: the first daemon was not knocked off.
        #expect(metric(await metrics(env.httpPort), "vitalsd_broker_reconnects_total") == 0)
        #expect(await httpGet(port: env.httpPort, "/readyz")?.status == 200)

        // A different database, the same HTTP port: refused naming http.port, still before the broker.
        let otherDB = try secondConfiguration(env, name: "other-db", databasePath: env.directory + "/other.sqlite")
        let log2 = env.directory + "/third.log"
        let third = try ChildProcess(path: try vitalsdBinary(), arguments: ["run", "--config", otherDB], logPath: log2)
        #expect(await third.waitForExit(seconds: 60))
        #expect(third.exitCode == 2)
        let text2 = try String(contentsOfFile: log2, encoding: .utf8)
        #expect(text2.contains("http.port: 127.0.0.1:\(env.httpPort) cannot be used for the HTTP endpoints (Address already in use)"), "\(text2)")
        #expect(metric(await metrics(env.httpPort), "vitalsd_broker_reconnects_total") == 0)
        first.signal(SIGTERM)
        #expect(await first.waitForExit(seconds: 30))
        #expect(first.exitCode == 0)
    }

    @Test("two daemons with one client id: each backs off, says so in /readyz, /metrics and one log line, and recovers alone")
    func sessionTakeover() async throws {
        let env = try await TestEnvironment()
        let otherPort = try Broker.freePort()
        let otherConfig = try secondConfiguration(
            env, name: "other", databasePath: env.directory + "/other.sqlite", httpPort: otherPort)
        let first = try env.startProcess()
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        let otherLog = env.directory + "/other.log"
        let second = try ChildProcess(path: try vitalsdBinary(), arguments: ["run", "--config", otherConfig], logPath: otherLog)

        // Both are knocked off again and again (the broker closes the older connection of a client
        // id): after 3 in a row each reports it.
        for port in [env.httpPort, otherPort] {
            #expect(await eventually {
                guard let r = await httpGet(port: port, "/readyz") else { return false }
                return r.status == 503 && r.body.contains("MQTT session taken over")
                    && r.body.contains("(mqtt.client_id): is a second vitalsd using it?")
            })
            #expect(metric(await metrics(port), "vitalsd_broker_session_taken_over") == 1)
            #expect((metric(await metrics(port), "vitalsd_broker_session_takeovers_total") ?? 0) >= 3)
        }
        // Backing off: the delay doubles from 0.2 s to 2 s (twice reconnect_max_seconds), so over 10 s
        // a daemon reconnects a few times, not thousands (without back-off: about 600 a second).
        let before = metric(await metrics(env.httpPort), "vitalsd_broker_reconnects_total") ?? 0
        try await Task.sleep(for: .seconds(10))
        let after = metric(await metrics(env.httpPort), "vitalsd_broker_reconnects_total") ?? 0
        #expect(after - before <= 20, "\(after - before) reconnects in 10 s")

        // One warning (at most one a minute) per daemon, and no per-connection flood.
        second.signal(SIGTERM)
        #expect(await second.waitForExit(seconds: 30))
        let log = try String(contentsOfFile: otherLog, encoding: .utf8)
        let warnings = log.components(separatedBy: "MQTT session taken over").count - 1
        #expect(warnings == 1, "\(log)")
        #expect(log.components(separatedBy: "broker connection lost").count - 1 <= 3, "\(log)")

        // Alone again, the first holds its session and is ready again by itself (after twice the
        // back-off cap of steady connection).
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        #expect(metric(await metrics(env.httpPort), "vitalsd_broker_session_taken_over") == 0)
        first.signal(SIGTERM)
        #expect(await first.waitForExit(seconds: 30))
    }
}
