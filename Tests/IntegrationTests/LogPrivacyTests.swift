import Foundation
import Glibc
import MQTTClient
import Testing
import VitalsStore

/// Logs carry ids and reasons, never reading values, names or payload bytes (45 CFR 164.312; OWASP).
@Suite("no PHI in logs", .serialized)
struct LogPrivacyTests {
    /// Values planted in payloads, none of which may reach the log.
    static let planted = ["47.3219", "183.77", "John Q Patient", "MRN-555-12-3456", "1962-04-17", "Springfield"]

    @Test("a full run at debug level logs none of the planted values", arguments: ["text", "json"])
    func plantedValuesStayOut(format: String) async throws {
        let env = try await TestEnvironment(logLevel: "trace", logFormat: format)
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        let pub = try await env.publisher()
        defer { pub.close() }
        let at = msAgo(3600)
        let payloads: [(String, String)] = [
            ("devices/g1/readings", #"{"type":"glucose","value":47.3219,"unit":"mg/dL","measured_at":\#(at),"message_id":"MRN-555-12-3456"}"#),
            ("devices/g1/readings", #"{"type":"glucose","value":183.77,"unit":"mg/dL John Q Patient","measured_at":\#(at + 1000)}"#),
            ("devices/g1/readings", #"{"type":"John Q Patient","value":47.3219,"unit":"mg/dL","measured_at":\#(at + 2000)}"#),
            ("devices/g1/readings", #"{"patient":"John Q Patient","dob":"1962-04-17","city":"Springfield"}"#),
            ("devices/g1/readings", #"{"type":"glucose","value":"47.3219x","unit":"mg/dL","measured_at":\#(at + 3000)}"#),
            ("devices/Springfield/readings", #"{"type":"glucose","value":183.77,"unit":"mg/dL","measured_at":\#(at)}"#),
            ("devices/g1/readings", #"{"type":"glucose","value":47.3219,"unit":"mg/dL","measured_at":\#(at)}"#),  // duplicate
        ]
        // Publish until the session exists (the first copies may precede the subscription).
        _ = await publishUntilStored(pub, env, topic: payloads[0].0, payload: Array(payloads[0].1.utf8))
        for (topic, payload) in payloads { try pub.publish(topic: topic, payload: Array(payload.utf8)) }
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().deadLetters) == 5 })
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))

        let log = try String(contentsOfFile: env.directory + "/vitalsd.log", encoding: .utf8)
        #expect(log.contains("dead-lettered"))  // the log did record the events
        // Each dead letter is named by its id, so `vitalsd dead-letters show ID` finds it.
        let logged = Set(log.matches(of: /dead_letter\.ids"?[=:]"?([0-9,]+)/).flatMap { $0.1.split(separator: ",").map(String.init) })
        let stored = Set(try env.database.deadLetters().map { String($0.id) })
        #expect(stored.count == 5 && logged == stored, "logged \(logged), stored \(stored)")
        // "Springfield" is a topic level here, so it is a device id and may be logged as one; the
        // other planted values are readings, names and payload text.
        for value in Self.planted where value != "Springfield" {
            #expect(!log.contains(value), "log contains \(value)")
        }
    }
}
