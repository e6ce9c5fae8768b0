import Foundation
import Glibc
import Hummingbird
import JWTKit
import Logging
import MQTTClient
import ServiceLifecycle
import Synchronization
import Testing
import VitalsDomain
import VitalsFHIR
import VitalsFHIRServer
import VitalsStore

/// A stand-in EHR: a SMART token endpoint that verifies vitalsd's assertions with jwt-kit against
/// vitalsd's public JWK Set, and a FHIR endpoint that takes transaction Bundles, creating each
/// Observation unless its `ifNoneExist` identifier exists (as a FHIR server would).
final class EHRReceiver: Sendable {
    struct State {
        /// Each transaction Bundle's JSON.
        var bundles: [Data] = []
        /// Identifiers in the order they were created.
        var created: [String] = []
        var repeats = 0
        var tokensIssued = 0
        var refusals: [String] = []
    }

    let port: Int
    let jwks: String
    let clientID: String
    let state = Mutex<State>(State())
    private let server = LoopbackServer()

    init(port: Int, jwks: String, clientID: String) {
        self.port = port
        self.jwks = jwks
        self.clientID = clientID
    }

    var tokenURL: String { "http://127.0.0.1:\(port)/token" }

    struct Claims: JWTPayload {
        var iss: String
        var sub: String
        var aud: String
        var exp: Int64
        var jti: String
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    func start() async throws {
        let router = Router()
        router.post("token") { request, _ -> Response in
            var request = request
            let body = String(buffer: try await request.collectBody(upTo: 65_536))
            let form = Dictionary(QueryString.parse(body)!.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
            let keys = JWTKeyCollection()
            try await keys.add(jwksJSON: self.jwks)
            let now = Int64(Date().timeIntervalSince1970)
            guard form["grant_type"] == "client_credentials",
                  form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                  let assertion = form["client_assertion"],
                  let claims = try? await keys.verify(assertion, as: Claims.self),
                  claims.iss == self.clientID, claims.sub == self.clientID, claims.aud == self.tokenURL,
                  claims.exp > now, claims.exp <= now + 300
            else {
                self.state.withLock { $0.refusals.append("token") }
                return Response(status: .unauthorized, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error":"invalid_client"}"#)))
            }
            let n = self.state.withLock { $0.tokensIssued += 1; return $0.tokensIssued }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(
                string: #"{"access_token":"ehr-token-\#(n)","token_type":"bearer","expires_in":300,"scope":"\#(form["scope"] ?? "")"}"#)))
        }
        router.post("fhir") { request, _ -> Response in
            guard request.headers[.authorization]?.hasPrefix("Bearer ehr-token-") == true else {
                self.state.withLock { $0.refusals.append("fhir") }
                return Response(status: .unauthorized)
            }
            var request = request
            let data = Data((try await request.collectBody(upTo: 16 << 20)).readableBytesView)
            guard let bundle = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { return Response(status: .badRequest) }
            let identifiers = ((bundle["entry"] as? [[String: Any]]) ?? []).map { entry in
                String(((value(entry, "request", "ifNoneExist") as? String) ?? "").dropFirst("identifier=urn:vitalsd:observation|".count))
            }
            self.state.withLock { s in
                s.bundles.append(data)
                for identifier in identifiers {
                    if s.created.contains(identifier) { s.repeats += 1 } else { s.created.append(identifier) }
                }
            }
            return Response(status: .ok, headers: [.contentType: "application/fhir+json"], body: ResponseBody(byteBuffer: ByteBuffer(
                string: #"{"resourceType":"Bundle","type":"transaction-response"}"#)))
        }
        try await server.start(router, port: port)
    }

    func stop() async { await server.stop() }
}

@Suite("FHIR push to an EHR through a real broker and daemon", .serialized)
struct FHIRPushTests {
    @Test("an EHR down for the outage gets every Observation afterwards, in order, once per identifier, as valid transactions")
    func outage() async throws {
        let environment = ProcessInfo.processInfo.environment
        let outage = Double(environment["VITALSD_TEST_FHIR_OUTAGE_SECONDS"] ?? environment["VITALSD_TEST_WEBHOOK_OUTAGE_SECONDS"] ?? "") ?? 30
        let ehrPort = try Broker.freePort()
        let keyDirectory = NSTemporaryDirectory() + "vitalsd-push-\(UUID().uuidString)"
        let key = try await TestKey("ES384", kid: "vitalsd-push-1", directory: keyDirectory)
        defer { try? FileManager.default.removeItem(atPath: keyDirectory) }
        let env = try await TestEnvironment(extraYAML: """
            delivery:
              mqtt_enabled: false
              retry_max_seconds: 2
              fhir:
                base_url: http://127.0.0.1:\(ehrPort)/fhir
                token_url: http://127.0.0.1:\(ehrPort)/token
                client_id: vitalsd-at-ehr
                private_key_file: \(key.pemPath)
                algorithm: ES384
                key_id: vitalsd-push-1
                scope: system/Observation.write
                timeout_seconds: 2
                bundle_max_entries: 3
            """)
        try env.database.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p1"), actor: "test")
        // The JWK Set vitalsd prints for registration with the EHR.
        let (printed, jwks) = try await runVitalsd(["client", "push-jwks", "--config", env.configPath])
        #expect(printed == 0)
        let started = Date()
        let pub = try await env.publisher()
        defer { pub.close() }
        var daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }

        // While the EHR is down: a BP pair with pulse, glucose readings, one late (30 h old), one entered by hand.
        let bpInstant = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 600).rounded(.down))
        let bp = #"{"measured_at":"\#(rfc3339(bpInstant, offsetSeconds: -5 * 3600))","readings":[{"type":"systolic_bp","value":128,"unit":"mmHg"},{"type":"diastolic_bp","value":82,"unit":"mmHg"},{"type":"heart_rate","value":64,"unit":"/min"}]}"#
        #expect(await publishUntilStored(pub, env, topic: "devices/c1/readings", payload: Array(bp.utf8), readings: 3))
        let glucoseTimes = (0..<5).map { msAgo(500 - Double($0) * 60) }
        for t in glucoseTimes { try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(110, at: t)) }
        let lateTime = msAgo(30 * 3600)
        try pub.publish(topic: "devices/g2/readings", payload: glucoseJSON(120, at: lateTime))
        #expect(await eventually { (try? env.statistics().readings) == 9 })

        // A restart in the middle of the outage; then a manual reading.
        try await Task.sleep(for: .seconds(max(0, outage / 2 - Date().timeIntervalSince(started))))
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        daemon = try env.startProcess()
        let manualTime = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 120).rounded(.down))
        _ = try env.database.recordManualReading(
            deviceID: "g1", typeName: "glucose", value: 130, unit: "mg/dL", measuredAt: manualTime, actor: "nurse.a",
            pipeline: .init(thresholds: .clinicalDefaults))
        #expect(try FHIRStore(database: env.database).pushBacklog(channel: "fhir") == 10)

        try await Task.sleep(for: .seconds(max(0, outage - Date().timeIntervalSince(started))))
        let ehr = EHRReceiver(port: ehrPort, jwks: jwks, clientID: "vitalsd-at-ehr")
        try await ehr.start()
        let expected = ["c1/85354-9/\(Int64(bpInstant.timeIntervalSince1970) * 1000)", "c1/8867-4/\(Int64(bpInstant.timeIntervalSince1970) * 1000)"]
            + glucoseTimes.map { "g1/41653-7/\($0)" } + ["g2/41653-7/\(lateTime)", "g1/41653-7/\(Int64(manualTime.timeIntervalSince1970) * 1000)"]
        #expect(await eventually { ehr.state.withLock { $0.created.count } >= expected.count })
        try await Task.sleep(for: .seconds(2))  // room for a stray repeat to show up
        let state = ehr.state.withLock { $0 }
        #expect(state.created == expected)  // every Observation, in reading order, the BP pair as one panel
        #expect(state.repeats == 0)
        #expect(state.refusals.isEmpty)
        #expect(state.tokensIssued >= 1)
        #expect(try FHIRStore(database: env.database).pushBacklog(channel: "fhir") == 0)
        let exposition = try #require(await httpGet(port: env.httpPort, "/metrics")).body
        #expect(metric(exposition, #"vitalsd_outbox_backlog{channel="fhir"}"#) == 0)
        #expect(metric(exposition, #"vitalsd_task_events_delivered_total{channel="fhir"}"#) == 9)  // since the restart: all 9
        #expect((metric(exposition, #"vitalsd_delivery_failures_total{channel="fhir"}"#) ?? 0) >= 1)

        // What was sent: transactions of conditional creates, references by identifier, late and manual tagged.
        let bundles = state.bundles.compactMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        let entries = bundles.flatMap { ($0["entry"] as? [[String: Any]]) ?? [] }
        #expect(bundles.allSatisfy { $0["type"] as? String == "transaction" && (($0["entry"] as? [Any])?.count ?? 0) <= 3 })
        #expect(entries.allSatisfy { value($0, "request", "method") as? String == "POST" && value($0, "request", "url") as? String == "Observation" })
        let observations = entries.compactMap { $0["resource"] as? [String: Any] }
        #expect(observations.allSatisfy { value($0, "subject", "reference") as? String == "Patient?identifier=urn:vitalsd:patient|p1" })
        let panel = try #require(observations.first)
        #expect(value(panel, "component", 0, "valueQuantity", "value") as? Double == 128)
        #expect(value(panel, "component", 1, "valueQuantity", "value") as? Double == 82)
        #expect(value(panel, "effectiveDateTime") as? String == rfc3339(bpInstant, offsetSeconds: -5 * 3600))
        #expect(value(panel, "device", "identifier", "value") as? String == "c1")
        func tags(_ o: [String: Any]) -> [String] { ((value(o, "meta", "tag") as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }
        #expect(tags(observations[7]) == ["late"])
        #expect(tags(observations[8]) == ["manual"])
        #expect(tags(observations[2]).isEmpty)
        try await expectValidFHIR(bundles.enumerated().map { ("transaction \($0.offset)", $0.element) })

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        await ehr.stop()
    }
}
