import Foundation
import Glibc
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization
import MQTTClient
import Testing
import VitalsDomain
import VitalsFHIRServer
import VitalsStore

/// `2026-12-01T02:10:00-06:00` for an instant, at a fixed offset.
func rfc3339(_ date: Date, offsetSeconds: Int) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    f.timeZone = TimeZone(secondsFromGMT: offsetSeconds)!
    return f.string(from: date)
}

/// The entries' resources of a Bundle.
func resources(_ bundle: [String: Any]) -> [[String: Any]] {
    ((bundle["entry"] as? [[String: Any]]) ?? []).compactMap { $0["resource"] as? [String: Any] }
}

func link(_ bundle: [String: Any], _ relation: String) -> String? {
    ((bundle["link"] as? [[String: Any]]) ?? []).first { $0["relation"] as? String == relation }?["url"] as? String
}

@Suite("FHIR R4 API with SMART Backend Services, through a real broker and daemon", .serialized)
struct FHIRAPITests {
    @Test("readings published through the broker come back as valid FHIR: BP panel, heart rate, glucose, Patient, Device, Task, errors")
    func endToEnd() async throws {
        let port = try Broker.freePort()
        let env = try await TestEnvironment(webPort: port, extraYAML: TestEnvironment.fhirYAML(port: port))
        try env.database.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p1"), actor: "test")
        try env.database.upsertPatient(
            Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes], name: "Ada Example", birthDate: "1948-02-29",
                    phone: "+1 555 0100"),
            actor: "test")
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })

        // A cuff reading at the patient's local time (UTC-06:00), a critical glucose and one in mmol/L.
        let bpInstant = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 3_600).rounded(.down))
        let bpTime = rfc3339(bpInstant, offsetSeconds: -6 * 3600)
        let pub = try await env.publisher()
        defer { pub.close() }
        let bp = #"{"measured_at":"\#(bpTime)","readings":[{"type":"systolic_bp","value":182,"unit":"mmHg"},{"type":"diastolic_bp","value":96,"unit":"mmHg"},{"type":"heart_rate","value":77,"unit":"bpm"}]}"#
        #expect(await publishUntilStored(pub, env, topic: "devices/c1/readings", payload: Array(bp.utf8), readings: 3))
        let lowMs = msAgo(1_800)
        let mmolMs = msAgo(1_200)
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(45, at: lowMs))
        try pub.publish(topic: "devices/g1/readings", payload: Array(#"{"type":"glucose","value":5.5,"unit":"mmol/L","measured_at":\#(mmolMs)}"#.utf8))
        #expect(await eventually { (try? env.statistics().readings) == 5 && (try? env.database.tasks().count) == 2 })

        // Discovery and the CapabilityStatement need no token.
        let metadata = try await request("GET", "\(env.fhirBase)/metadata")
        #expect(metadata.status == 200)
        #expect(metadata.headers["content-type"]?.hasPrefix("application/fhir+json") == true)
        #expect(value(metadata.json, "fhirVersion") as? String == "4.0.1")
        let served = ((value(metadata.json, "rest", 0, "resource") as? [[String: Any]]) ?? []).compactMap { $0["type"] as? String }
        #expect(served == ["Observation", "Patient", "Device", "Task"])
        let smart = try await request("GET", "http://127.0.0.1:\(port)/.well-known/smart-configuration")
        #expect(smart.json["token_endpoint"] as? String == env.tokenURL)
        #expect(smart.json["token_endpoint_auth_signing_alg_values_supported"] as? [String] == ["RS384", "ES384"])

        let client = try await env.registerClient(scopes: ["system/Observation.rs", "system/Patient.rs", "system/Device.rs", "system/Task.rs"])
        let token = try await env.bearer(client, scope: "system/Observation.rs system/Patient.rs system/Device.rs system/Task.rs")
        let auth = ["Authorization": "Bearer \(token)"]

        let search = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&_total=accurate", headers: auth)
        #expect(search.status == 200)
        #expect(search.headers["content-type"]?.hasPrefix("application/fhir+json") == true)
        #expect(search.json["type"] as? String == "searchset")
        #expect(search.json["total"] as? Int == 4)
        let observations = resources(search.json)
        #expect(observations.count == 4)  // the BP pair is one panel; heart rate apart; two glucose readings
        func byCode(_ code: String) -> [String: Any]? { observations.first { value($0, "code", "coding", 0, "code") as? String == code } }

        // Vital-signs shape, checked against hl7.org/fhir/R4/bp.html and observation-vitalsigns.html.
        let panel = try #require(byCode("85354-9"))
        #expect(value(panel, "code", "coding", 0, "system") as? String == "http://loinc.org")
        #expect(value(panel, "category", 0, "coding", 0, "system") as? String == "http://terminology.hl7.org/CodeSystem/observation-category")
        #expect(value(panel, "category", 0, "coding", 0, "code") as? String == "vital-signs")
        #expect(value(panel, "status") as? String == "final")
        #expect(value(panel, "valueQuantity") == nil)
        #expect(value(panel, "component", 0, "code", "coding", 0, "code") as? String == "8480-6")
        #expect(value(panel, "component", 0, "valueQuantity", "value") as? Double == 182)
        #expect(value(panel, "component", 0, "valueQuantity", "system") as? String == "http://unitsofmeasure.org")
        #expect(value(panel, "component", 0, "valueQuantity", "code") as? String == "mm[Hg]")
        #expect(value(panel, "component", 1, "code", "coding", 0, "code") as? String == "8462-4")
        #expect(value(panel, "component", 1, "valueQuantity", "value") as? Double == 96)
        #expect(value(panel, "effectiveDateTime") as? String == bpTime)  // the device's own offset, -06:00
        #expect(value(panel, "subject", "reference") as? String == "Patient/p1")
        #expect(value(panel, "device", "reference") as? String == "Device/c1")
        #expect(value(panel, "meta", "profile", 0) as? String == "http://hl7.org/fhir/StructureDefinition/bp")
        #expect(value(panel, "identifier", 0, "value") as? String == "c1/85354-9/\(Int64(bpInstant.timeIntervalSince1970) * 1000)")
        let heart = try #require(byCode("8867-4"))
        #expect(value(heart, "valueQuantity", "value") as? Double == 77)
        #expect(value(heart, "valueQuantity", "code") as? String == "/min")
        #expect(value(heart, "effectiveDateTime") as? String == bpTime)
        let glucose = observations.filter { value($0, "code", "coding", 0, "code") as? String == "41653-7" }
        #expect(glucose.count == 2)
        #expect(value(glucose[0], "category", 0, "coding", 0, "code") as? String == "laboratory")
        #expect(value(glucose[0], "valueQuantity", "value") as? Double == 45)
        #expect(value(glucose[0], "effectiveDateTime") as? String == rfc3339(Date(timeIntervalSince1970: Double(lowMs) / 1000), offsetSeconds: 0).replacingOccurrences(of: "+00:00", with: "Z"))
        #expect(value(glucose[1], "valueQuantity", "value") as? Double == 99.099)  // 5.5 mmol/L × 18.018
        #expect(value(glucose[1], "valueQuantity", "code") as? String == "mg/dL")

        // The identifier is stable across calls; each Observation reads back by id.
        let again = try await request("GET", "\(env.fhirBase)/Observation?patient=Patient/p1", headers: auth)
        #expect(resources(again.json).map { value($0, "identifier", 0, "value") as? String } == observations.map { value($0, "identifier", 0, "value") as? String })
        var validated: [(name: String, resource: Any)] = [("searchset", search.json), ("CapabilityStatement", metadata.json)]
        for o in observations {
            let id = try #require(o["id"] as? String)
            let read = try await request("GET", "\(env.fhirBase)/Observation/\(id)", headers: auth)
            #expect(read.status == 200)
            #expect(read.json["id"] as? String == id)
            validated.append(("Observation/\(id)", read.json))
        }
        let codeSearch = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&code=http://loinc.org%7C85354-9", headers: auth)
        #expect(resources(codeSearch.json).count == 1)
        let vitals = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&category=vital-signs", headers: auth)
        #expect(resources(vitals.json).count == 2)
        let afterBP = rfc3339(bpInstant.addingTimeInterval(1), offsetSeconds: 0)
        let dated = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&date=ge\(afterBP)", headers: auth)
        #expect(resources(dated.json).count == 2)  // the two glucose readings, measured after the cuff
        let datedLE = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&date=le\(rfc3339(bpInstant, offsetSeconds: 0))", headers: auth)
        #expect(resources(datedLE.json).count == 2)  // the panel and the heart rate, at that second

        let patient = try await request("GET", "\(env.fhirBase)/Patient/p1", headers: auth)
        #expect(patient.status == 200)
        #expect(value(patient.json, "identifier", 0, "value") as? String == "p1")
        #expect(value(patient.json, "name", 0, "text") as? String == "Ada Example")
        #expect(value(patient.json, "birthDate") as? String == "1948-02-29")
        #expect(value(patient.json, "telecom", 0, "system") as? String == "phone")
        #expect(value(patient.json, "telecom", 0, "value") as? String == "+1 555 0100")
        let byIdentifier = try await request("GET", "\(env.fhirBase)/Patient?identifier=urn:vitalsd:patient%7Cp1", headers: auth)
        #expect(resources(byIdentifier.json).count == 1)
        let device = try await request("GET", "\(env.fhirBase)/Device/c1", headers: auth)
        #expect(value(device.json, "patient", "reference") as? String == "Patient/p1")
        #expect(value(device.json, "type", "coding", 0, "code") as? String == "bp_cuff")
        let devices = try await request("GET", "\(env.fhirBase)/Device?patient=p1", headers: auth)
        #expect(resources(devices.json).count == 3)

        // Two critical tasks: blood pressure (182/96 ≥ 180 systolic), focus on the panel, and low
        // glucose: requested, stat, focus on the 45 mg/dL Observation.
        let tasks = try await request("GET", "\(env.fhirBase)/Task?patient=p1&status=requested", headers: auth)
        #expect(resources(tasks.json).count == 2)
        let bpTask = try #require(resources(tasks.json).first { value($0, "reasonCode", "coding", 0, "code") as? String == "blood_pressure-high" })
        #expect(value(bpTask, "focus", "reference") as? String == "Observation/\(panel["id"] as! String)")
        let task = try #require(resources(tasks.json).first { value($0, "reasonCode", "coding", 0, "code") as? String == "glucose-low" })
        #expect(value(task, "status") as? String == "requested")
        #expect(value(task, "intent") as? String == "order")
        #expect(value(task, "priority") as? String == "stat")
        #expect(value(task, "for", "reference") as? String == "Patient/p1")
        #expect(value(task, "focus", "reference") as? String == "Observation/\(glucose[0]["id"] as! String)")
        #expect((value(task, "description") as? String)?.contains("45 mg/dL") == true)
        // The 99 mg/dL 10 minutes later is the re-measurement within 15 minutes: not confirmed.
        #expect((value(task, "businessStatus", "text") as? String)?.contains("confirmation not confirmed") == true)
        let confirmation = (task["extension"] as? [[String: Any]])?.first { $0["url"] as? String == "urn:vitalsd:extension:confirmation" }
        #expect(confirmation?["valueCode"] as? String == "not_confirmed")
        let completed = try await request("GET", "\(env.fhirBase)/Task?patient=p1&status=completed", headers: auth)
        #expect(resources(completed.json).isEmpty)
        let recent = try await request("GET", "\(env.fhirBase)/Task?_lastUpdated=ge\(rfc3339(Date().addingTimeInterval(-600), offsetSeconds: 0))", headers: auth)
        #expect(resources(recent.json).count == 2)
        // The care managers' notes, oldest first, each with its author and time (they were never served).
        let noteTimes = [Date(timeIntervalSince1970: 1_780_000_000), Date(timeIntervalSince1970: 1_780_000_060)]
        _ = try env.database.noteTask(id: Int64(task["id"] as! String)!, by: "rn.cara", text: "Called: juice taken", at: noteTimes[0])
        _ = try env.database.noteTask(id: Int64(task["id"] as! String)!, by: "rn.cara", text: "Re-measured 99 mg/dL", at: noteTimes[1])
        let taskRead = try await request("GET", "\(env.fhirBase)/Task/\(task["id"] as! String)", headers: auth)
        let notes = try #require(taskRead.json["note"] as? [[String: Any]])
        #expect(notes.map { $0["text"] as? String } == ["Called: juice taken", "Re-measured 99 mg/dL"])
        #expect(notes.map { $0["authorString"] as? String } == ["rn.cara", "rn.cara"])
        #expect(notes.map { $0["time"] as? String } == ["2026-05-28T20:26:40Z", "2026-05-28T20:27:40Z"])

        // Errors are OperationOutcomes with the right status; unknown parameters are refused.
        let unknown = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&foo=1", headers: auth)
        #expect(unknown.status == 400)
        #expect(value(unknown.json, "issue", 0, "code") as? String == "invalid")
        #expect((value(unknown.json, "issue", 0, "diagnostics") as? String)?.contains("'foo'") == true)
        let modifier = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&code:text=x", headers: auth)
        #expect(modifier.status == 400)
        let badDate = try await request("GET", "\(env.fhirBase)/Observation?patient=p1&date=ge2026-13-01", headers: auth)
        #expect(badDate.status == 400)
        let missing = try await request("GET", "\(env.fhirBase)/Observation/r-999999", headers: auth)
        #expect(missing.status == 404)
        #expect(value(missing.json, "resourceType") as? String == "OperationOutcome")
        let unserved = try await request("GET", "\(env.fhirBase)/Practitioner", headers: auth)
        #expect(unserved.status == 404)
        for path in ["/Patient/p1/_history", "/Patient/p1/$everything", "/Patient/p1/Observation/x"] {
            let other = try await request("GET", "\(env.fhirBase)\(path)", headers: auth)
            #expect(other.status == 404 && value(other.json, "resourceType") as? String == "OperationOutcome", "\(path)")
        }
        let write = try await request("POST", "\(env.fhirBase)/Observation", headers: auth, body: Data("{}".utf8))
        #expect(write.status == 405)
        // A value with more alternatives than any client needs is refused, not logged whole.
        let many = (0...100).map { "p\($0)" }.joined(separator: ",")
        #expect(try await request("GET", "\(env.fhirBase)/Observation?patient=\(many)", headers: auth).status == 400)
        let long = String(repeating: "A", count: 600)
        #expect(try await request("GET", "\(env.fhirBase)/Patient?_id=\(long)", headers: auth).status == 400)

        validated += [("Patient", patient.json), ("Device", device.json), ("Task", taskRead.json), ("Task searchset", tasks.json),
                      ("Device searchset", devices.json), ("OperationOutcome 400", unknown.json), ("OperationOutcome 404", missing.json)]
        #expect(try await expectValidFHIR(validated) == validated.count)

        // Every access is in the access log under the client, with ids and parameter names only.
        let log = try env.database.accessEntries(actor: "client:\(client.id)")
        #expect(log.contains { $0.action == "token.issued" })
        #expect(log.contains { $0.action == "fhir.search" && $0.targetType == "Observation" && $0.targetID == nil
            && $0.detail?.contains("params=_total,patient patients=1 ") == true })
        // Each patient whose data a search or read returned has an entry of their own, which
        // `audit list --access --patient` finds.
        let disclosed = try env.database.accessEntries(patientID: "p1").filter { $0.action == "fhir.disclosed" }
        #expect(disclosed.contains { $0.actor == "client:\(client.id)" && $0.detail?.hasPrefix("fhir.search Observation: ") == true })
        #expect(disclosed.contains { $0.detail?.hasPrefix("fhir.search Device: ") == true })
        #expect(log.contains { $0.action == "fhir.read" && $0.targetType == "Patient" && $0.targetID == "p1" })
        #expect(!log.contains { ($0.detail ?? "").contains("182") || ($0.detail ?? "").contains("mg/dL") })

        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }

    @Test("paging over 1,050 Observations returns each exactly once, also while readings arrive between pages")
    func paging() async throws {
        let port = try Broker.freePort()
        let env = try await TestEnvironment(webPort: port, extraYAML: TestEnvironment.fhirYAML(port: port))
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        let pub = try await env.publisher()
        defer { pub.close() }
        // One CGM upload of 1,050 readings a minute apart, all within the last 18 hours.
        let base = msAgo(18 * 3600)
        func upload(_ times: [Int64]) -> [UInt8] {
            let items = times.enumerated().map { #"{"type":"glucose","value":\#(100 + $0.offset % 50),"unit":"mg/dL","measured_at":\#($0.element)}"# }
            return Array(#"{"readings":[\#(items.joined(separator: ","))]}"#.utf8)
        }
        let times = (0..<1_050).map { base + Int64($0) * 60_000 }
        #expect(await publishUntilStored(pub, env, topic: "devices/g2/readings", payload: upload(times), readings: 1_050))
        let client = try await env.registerClient(scopes: ["system/Observation.rs"])
        let auth = ["Authorization": "Bearer \(try await env.bearer(client, scope: "system/Observation.rs"))"]

        var next: String? = "\(env.fhirBase)/Observation?patient=p1&_count=100"
        var seen: [String] = []
        var pages = 0
        var bundles: [(name: String, resource: Any)] = []
        while let url = next {
            let page = try await request("GET", url, headers: auth)
            #expect(page.status == 200)
            seen += resources(page.json).compactMap { value($0, "identifier", 0, "value") as? String }
            next = link(page.json, "next")
            pages += 1
            if pages <= 2 { bundles.append(("page \(pages)", page.json)) }
            if pages == 2 {
                // New readings arrive between pages: 10 before the position reached, 10 after the last.
                let early = (0..<10).map { times[5] + 1_000 + Int64($0) }
                let late = (0..<10).map { times.last! + 60_000 * Int64($0 + 1) }
                try pub.publish(topic: "devices/g2/readings", payload: upload(early + late))
                #expect(await eventually { (try? env.statistics().readings) == 1_070 })
            }
            #expect(pages < 30)
        }
        #expect(pages == 11)  // 1,060 entries, 100 a page
        #expect(seen.count == Set(seen).count)  // never twice
        let expected = Set(times.map { "g2/41653-7/\($0)" })
        #expect(expected.isSubset(of: Set(seen)))  // every stored one once
        #expect(seen.count == 1_060)  // the 10 later ones too; the 10 earlier ones lie behind the position reached
        let effective = seen.compactMap { Int64($0.split(separator: "/").last!) }
        #expect(effective == effective.sorted())
        try await expectValidFHIR(bundles)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }

    @Test("tokens: a foreign key, an expired or replayed assertion, a wrong audience, excess scope and a missing scope are refused")
    func refusals() async throws {
        let port = try Broker.freePort()
        let env = try await TestEnvironment(webPort: port, extraYAML: TestEnvironment.fhirYAML(port: port))
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        let client = try await env.registerClient(scopes: ["system/Observation.rs", "system/Patient.read"])
        let now = Int64(Date().timeIntervalSince1970)

        // No token, or a made-up one: 401 with WWW-Authenticate.
        let anonymous = try await request("GET", "\(env.fhirBase)/Observation?patient=p1")
        #expect(anonymous.status == 401)
        #expect(anonymous.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
        #expect(value(anonymous.json, "issue", 0, "code") as? String == "login")
        let madeUp = try await request("GET", "\(env.fhirBase)/Observation?patient=p1", headers: ["Authorization": "Bearer abc"])
        #expect(madeUp.status == 401)
        #expect(madeUp.headers["www-authenticate"]?.contains("invalid_token") == true)

        // Signed with a key that is not in the client's JWK Set (same kid): invalid_client, 401.
        let stranger = try await TestKey("ES384", kid: client.key.kid, directory: env.directory + "/other")
        let foreign = try await tokenRequest(env.tokenURL, assertion: try await signAssertion(stranger, clientID: client.id, aud: env.tokenURL, exp: now + 240), scope: "system/Observation.rs")
        #expect(foreign.status == 401)
        #expect(foreign.json["error"] as? String == "invalid_client")
        // Expired, and too far ahead.
        let expired = try await tokenRequest(env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now - 10), scope: "system/Observation.rs")
        #expect(expired.status == 401)
        #expect(expired.json["error"] as? String == "invalid_client")
        // SMART Backend Services: the JWT header's typ is required, fixed value JWT.
        for assertion in [try signAssertionWithoutTyp(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 60),
                          try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 60, typ: "JOSE")] {
            let refused = try await tokenRequest(env.tokenURL, assertion: assertion, scope: "system/Observation.rs")
            #expect(refused.status == 401 && refused.json["error_description"] as? String == "the JWT header needs typ JWT")
        }
        // A correctly signed assertion whose exp is a string: named as a claim problem, not a bad signature.
        let stringExp = try signRawAssertion(
            client.key, header: #"{"alg":"ES384","kid":"\#(client.key.kid)","typ":"JWT"}"#,
            claims: #"{"iss":"\#(client.id)","sub":"\#(client.id)","aud":"\#(env.tokenURL)","exp":"\#(now + 60)","jti":"\#(UUID().uuidString)"}"#)
        let typed = try await tokenRequest(env.tokenURL, assertion: stringExp, scope: "system/Observation.rs")
        #expect(typed.status == 401)
        #expect((typed.json["error_description"] as? String)?.hasPrefix("the assertion's claims have the wrong types") == true,
                "\(typed.json)")
        let ahead = try await tokenRequest(env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 600), scope: "system/Observation.rs")
        #expect(ahead.status == 401)
        // Another audience.
        let audience = try await tokenRequest(env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: "https://elsewhere.example/token", exp: now + 240), scope: "system/Observation.rs")
        #expect(audience.status == 401)
        // The same jti twice: the first is accepted, the replay refused.
        let assertion = try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 240, jti: "once-only")
        let first = try await tokenRequest(env.tokenURL, assertion: assertion, scope: "system/Patient.read")
        #expect(first.status == 200)
        #expect(first.json["token_type"] as? String == "bearer")
        #expect(first.json["expires_in"] as? Int == 300)
        #expect(first.headers["cache-control"] == "no-store")
        let replay = try await tokenRequest(env.tokenURL, assertion: assertion, scope: "system/Patient.read")
        #expect(replay.status == 401)
        #expect(replay.json["error"] as? String == "invalid_client")
        // A scope beyond the registration: invalid_scope, 400. Another grant type: 400.
        let excess = try await tokenRequest(env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 240), scope: "system/Task.rs")
        #expect(excess.status == 400)
        #expect(excess.json["error"] as? String == "invalid_scope")
        // Asking for write rights as well: granted, and said to be, as read and search only.
        let narrowed = try await tokenRequest(
            env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 240),
            scope: "system/Observation.cruds")
        #expect(narrowed.status == 200 && narrowed.json["scope"] as? String == "system/Observation.rs")
        // A client_id that names another client than the assertion (RFC 7521 §4.2): refused; the same one is fine.
        let mismatch = try await tokenRequest(
            env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 240),
            scope: "system/Observation.rs", clientID: "someone-else")
        #expect(mismatch.status == 401 && mismatch.json["error"] as? String == "invalid_client")
        let matching = try await tokenRequest(
            env.tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: env.tokenURL, exp: now + 240),
            scope: "system/Observation.rs", clientID: client.id)
        #expect(matching.status == 200)

        // A token without system/Observation.rs: 403 on Observation, 200 on Patient (v1 .read).
        let patientOnly = try #require(first.json["access_token"] as? String)
        let forbidden = try await request("GET", "\(env.fhirBase)/Observation?patient=p1", headers: ["Authorization": "Bearer \(patientOnly)"])
        #expect(forbidden.status == 403)
        #expect(forbidden.headers["www-authenticate"]?.contains("insufficient_scope") == true)
        #expect(value(forbidden.json, "issue", 0, "code") as? String == "forbidden")
        let allowed = try await request("GET", "\(env.fhirBase)/Patient/p1", headers: ["Authorization": "Bearer \(patientOnly)"])
        #expect(allowed.status == 200)

        // PyJWT, as an EHR would sign: RS384 from an RSA key registered as a JWK Set file, and an expired one.
        let rsa = try await TestKey("RS384", kid: "ehr-rsa-1", directory: env.directory)
        let jwksPath = env.directory + "/ehr-jwks.json"
        try rsa.jwks().write(toFile: jwksPath, atomically: true, encoding: .utf8)
        let (added, addOutput) = try await runVitalsd(["client", "add", "--config", env.configPath, "--name", "EHR RSA", "--jwks", jwksPath,
                                                 "--scope", "system/Observation.rs system/Patient.rs"])
        #expect(added == 0)
        let rsaClient = addOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let common = ["--token-url", env.tokenURL, "--client-id", rsaClient, "--key", rsa.pemPath, "--kid", "ehr-rsa-1", "--alg", "RS384"]
        let (ok, okOutput) = try await runPython("smart_token.py", common + ["--scope", "system/Observation.rs"])
        #expect(ok == 0, "\(okOutput)")
        let pyToken = try #require((try? JSONSerialization.jsonObject(with: Data(okOutput.utf8)) as? [String: Any])?["access_token"] as? String)
        let pySearch = try await request("GET", "\(env.fhirBase)/Observation?patient=p1", headers: ["Authorization": "Bearer \(pyToken)"])
        #expect(pySearch.status == 200)
        let (old, oldOutput) = try await runPython("smart_token.py", common + ["--exp-seconds", "-5"])
        #expect(old == 1)
        #expect(oldOutput.contains("\"status\": 401") && oldOutput.contains("invalid_client"))

        // A disabled client's tokens stop working at once.
        let (disabled, _) = try await runVitalsd(["client", "disable", "--config", env.configPath, rsaClient])
        #expect(disabled == 0)
        let revoked = try await request("GET", "\(env.fhirBase)/Observation?patient=p1", headers: ["Authorization": "Bearer \(pyToken)"])
        #expect(revoked.status == 401)

        // Issues and refusals are in the access log, and `audit list --access` shows them.
        let log = try env.database.accessEntries()
        // Refused: foreign key, expired, typ ×2, string exp, ahead, audience, replay, excess scope,
        // client_id mismatch, old (PyJWT); issued: once-only, narrowed, matching, PyJWT.
        #expect(log.filter { $0.action == "token.refused" }.count == 11)
        #expect(log.filter { $0.action == "token.issued" }.count == 4)
        #expect(log.contains { $0.action == "fhir.forbidden" && $0.actor == "client:\(client.id)" })
        let (listed, listing) = try await runVitalsd(["audit", "list", "--config", env.configPath, "--access", "--actor", "client:\(client.id)"])
        #expect(listed == 0)
        #expect(listing.contains("token.refused") && listing.contains("fhir.forbidden"))
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }
}


/// Serves a JWK Set at /jwks.json with a Cache-Control max-age, and counts the fetches.
final class JWKSServer: Sendable {
    let jwks = Mutex<String>("")
    let fetches = Mutex(0)
    private let port = Mutex(0)
    private let server = LoopbackServer()

    /// Valid once ``start()`` has returned.
    var url: String { "http://127.0.0.1:\(port.withLock { $0 })/jwks.json" }

    /// Listens on a port the kernel picks, so that no other test's server can hold it.
    func start() async throws {
        let router = Router()
        router.get("jwks.json") { _, _ -> Response in
            self.fetches.withLock { $0 += 1 }
            return Response(status: .ok, headers: [.contentType: "application/json", .cacheControl: "max-age=60"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: self.jwks.withLock { $0 })))
        }
        let bound = try await server.start(router, port: 0)
        port.withLock { $0 = bound }
    }

    func stop() async { await server.stop() }
}

@Suite("SMART clients registered with a JWK Set URL", .serialized)
struct JWKSURLTests {
    @Test("the JWK Set URL is fetched once within its max-age and again for a new kid (key rotation); a retired key is refused")
    func jwksURL() async throws {
        let port = try Broker.freePort()
        // The fetch may wait for a loaded test machine: this test is about the cache, not the timeout.
        let env = try await TestEnvironment(webPort: port, extraYAML: TestEnvironment.fhirYAML(port: port) + "\n  jwks_timeout_seconds: 60")
        let daemon = try env.startProcess()
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        let server = JWKSServer()
        let first = try await TestKey("ES384", kid: "rot-1", directory: env.directory)
        server.jwks.withLock { $0 = (try? first.jwks()) ?? "" }
        try await server.start()  // listening before the first token request
        let client = try FHIRStore(database: env.database).addClient(
            name: "EHR", jwks: nil, jwksURL: server.url, scopes: ["system/Observation.rs"], actor: "test")
        func token(_ key: TestKey) async throws -> HTTPAnswer {
            try await tokenRequest(env.tokenURL, assertion: try await signAssertion(
                key, clientID: client.id, aud: env.tokenURL, exp: Int64(Date().timeIntervalSince1970) + 240), scope: "system/Observation.rs")
        }
        let beforeFirstFetch = Date()
        #expect(try await token(first).status == 200)
        #expect(try await token(first).status == 200)
        #expect(server.fetches.withLock { $0 } == 1)  // cached for its max-age
        // The client rotates to a new key: an unknown kid fetches the set again (after 10 s at most once).
        let second = try await TestKey("ES384", kid: "rot-2", directory: env.directory)
        server.jwks.withLock { $0 = (try? second.jwks()) ?? "" }
        let rotated = try await token(second)
        if Date().timeIntervalSince(beforeFirstFetch) < 10 {
            // Certainly within 10 s of the last fetch: the cached set is used.
            #expect(rotated.status == 401)
        } else {
            // A busy machine took longer than that: either answer is right, with what it implies.
            #expect(rotated.status == 401 || (rotated.status == 200 && server.fetches.withLock { $0 } == 2))
        }
        try await Task.sleep(for: .seconds(10.5))
        #expect(try await token(second).status == 200)
        #expect(server.fetches.withLock { $0 } == 2)
        await server.stop()
        // The retired key is not in the current set: invalid_client.
        let answer = try await token(first)
        #expect(answer.status == 401)
        #expect(answer.json["error"] as? String == "invalid_client")
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }
}
