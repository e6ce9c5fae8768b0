import Testing
import VitalsDomain
@testable import VitalsFHIR

/// Parses serialized JSON back, for assertions on what a client receives.
func text(_ json: FHIRJSON) -> String { String(decoding: json.serialized(), as: UTF8.self) }

@Suite("FHIR time text and date search ranges")
struct FHIRTimeTests {
    @Test("instants at the device's offset, in UTC without one, with milliseconds only when not zero")
    func formatting() {
        // 1772370029000 ms = 2026-03-01T13:00:29Z (20,513 days after 1970-01-01, plus 13:00:29).
        #expect(FHIRTime.format(epochMilliseconds: 1_772_370_029_000) == "2026-03-01T13:00:29Z")
        #expect(FHIRTime.format(epochMilliseconds: 1_772_370_029_000, offsetMinutes: -300) == "2026-03-01T08:00:29-05:00")
        #expect(FHIRTime.format(epochMilliseconds: 1_772_370_029_250, offsetMinutes: 330) == "2026-03-01T18:30:29.250+05:30")
        #expect(FHIRTime.format(epochMilliseconds: 1_772_370_029_000, offsetMinutes: 0) == "2026-03-01T13:00:29+00:00")
        // Across midnight and a leap day: 2024-02-29T23:30:00Z shown at +01:00 is 2024-03-01T00:30.
        #expect(FHIRTime.format(epochMilliseconds: 1_709_249_400_000, offsetMinutes: 60) == "2024-03-01T00:30:00+01:00")
    }

    @Test("a date value stands for the range of its precision; prefixes follow FHIR R4 search")
    func ranges() throws {
        let day = try #require(FHIRTime.searchRange("2026-03-01"))
        #expect(day.start == 1_772_323_200_000)  // 2026-03-01T00:00:00Z
        #expect(day.end == day.start + 86_400_000)
        let month = try #require(FHIRTime.searchRange("2026-02"))
        #expect(month.end - month.start == 28 * 86_400_000)
        let year = try #require(FHIRTime.searchRange("2024"))
        #expect(year.end - year.start == 366 * 86_400_000)
        let second = try #require(FHIRTime.searchRange("2026-03-01T08:00:29-05:00"))
        #expect(second == (1_772_370_029_000, 1_772_370_030_000))
        // An unencoded '+' arrives as a space.
        #expect(FHIRTime.searchRange("2026-03-01T18:30:29 05:30")?.start == 1_772_370_029_000)
        for bad in ["2026-02-30", "2026-13", "26-03-01", "2026-03-01T25:00:00Z", "2026-03-01T08:00:29+0500", "yesterday"] {
            #expect(FHIRTime.searchRange(bad) == nil, "\(bad)")
        }
        #expect(try InstantCondition.parse("ge2026-03-01", parameter: "date") == [.atOrAfter(day.start)])
        #expect(try InstantCondition.parse("gt2026-03-01", parameter: "date") == [.atOrAfter(day.end)])
        #expect(try InstantCondition.parse("le2026-03-01", parameter: "date") == [.before(day.end)])
        #expect(try InstantCondition.parse("lt2026-03-01", parameter: "date") == [.before(day.start)])
        #expect(try InstantCondition.parse("2026-03-01", parameter: "date") == [.atOrAfter(day.start), .before(day.end)])
        #expect(throws: FHIRError.self) { try InstantCondition.parse("ap2026-03-01", parameter: "date") }
        #expect(throws: FHIRError.self) { try InstantCondition.parse("xx2026-03-01", parameter: "date") }
    }
}

@Suite("FHIR search parameters")
struct FHIRSearchTests {
    func query(_ s: String) -> [(name: String, value: String)] { QueryString.parse(s)! }

    @Test("Observation: patient is required, unknown parameters, modifiers and repeats are errors, _count is capped")
    func observation() throws {
        let s = try ObservationSearch(query: query("patient=Patient%2Fp1&code=http://loinc.org%7C85354-9,8867-4&date=ge2026-03-01&date=lt2026-04-01&_count=5000"),
                                      defaultCount: 100, maxCount: 1000)
        #expect(s.patientIDs == ["p1"])
        #expect(s.kinds == [.bloodPressurePanel, .single(.heartRate)])
        #expect(s.dates.count == 2)
        #expect(s.page.count == 1000)
        let both = try ObservationSearch(query: query("patient=p1&code=41653-7,8867-4&category=vital-signs"), defaultCount: 100, maxCount: 1000)
        #expect(both.kinds == [.single(.heartRate)])  // glucose is laboratory
        let other = try ObservationSearch(query: query("patient=p1&code=http://snomed.info/sct%7C271649006"), defaultCount: 100, maxCount: 1000)
        #expect(other.kinds == [])
        for bad in ["code=8867-4", "patient=p1&foo=1", "patient=p1&code:text=x", "patient=p1&patient=p2", "patient=p1&_count=0",
                    "patient=Device/d1", "patient=p1&date=sa2026"] {
            #expect(throws: FHIRError.self, "\(bad)") { try ObservationSearch(query: query(bad), defaultCount: 100, maxCount: 1000) }
        }
        // A count beyond Int's range is lowered like any other large count; a minus sign is not a count.
        #expect(try ObservationSearch(query: query("patient=p1&_count=99999999999999999999"), defaultCount: 100, maxCount: 1000).page.count == 1000)
        #expect(throws: FHIRError.self) { try ObservationSearch(query: query("patient=p1&_count=-99999999999999999999"), defaultCount: 100, maxCount: 1000) }
        let unknown = try? ObservationSearch(query: query("patient=p1&foo=1"), defaultCount: 100, maxCount: 1000)
        #expect(unknown == nil)
        do {
            _ = try ObservationSearch(query: query("patient=p1&_format=xml"), defaultCount: 100, maxCount: 1000)
            Issue.record("xml accepted")
        } catch {
            #expect(error.status == 406)
        }
    }

    @Test("Task: FHIR statuses map to stored ones; a status vitalsd never assigns matches nothing")
    func task() throws {
        let s = try TaskSearch(query: query("patient=p1&status=requested,accepted&_lastUpdated=ge2026-03-01"), defaultCount: 100, maxCount: 1000)
        #expect(s.statuses == ["open", "acknowledged"])
        #expect(try TaskSearch(query: query("status=cancelled"), defaultCount: 100, maxCount: 1000).statuses == [])
        #expect(throws: FHIRError.self) { try TaskSearch(query: query("status=done"), defaultCount: 100, maxCount: 1000) }
    }

    @Test("query strings decode percent escapes and + and reject bad escapes")
    func queryStrings() {
        #expect(QueryString.parse("a=x%7Cy&b=1+2")!.map { "\($0.name)=\($0.value)" } == ["a=x|y", "b=1 2"])
        #expect(QueryString.parse("a=%zz") == nil)
        #expect(QueryString.build([("identifier", "urn:vitalsd:patient|p 1")]) == "identifier=urn%3Avitalsd%3Apatient%7Cp%201")
    }
}

@Suite("SMART scopes and assertion claims")
struct SMARTTests {
    @Test("v2 .rs and v1 .read both give read and search; other forms are not scopes here")
    func scopes() throws {
        let v2 = try #require(SMARTScope("system/Observation.rs"))
        #expect(v2.allows(.read, on: "Observation") && v2.allows(.search, on: "Observation"))
        #expect(!v2.allows(.read, on: "Patient"))
        let v1 = try #require(SMARTScope("system/*.read"))
        #expect(v1.allows(.search, on: "Task"))
        #expect(SMARTScope("system/Observation.r")?.interactions == [.read])
        for bad in ["patient/Observation.rs", "system/Observation.sr", "system/Observation.rss", "system/Observation.rs?category=x", "openid", "system/observation.rs"] {
            #expect(SMARTScope(bad) == nil, "\(bad)")
        }
    }

    @Test("a request is granted only within the registration, for served types, with read access")
    func grants() {
        let registered = ["system/Observation.rs", "system/Patient.read"]
        if case .success(let s) = SMARTScopeGrant.grant(requested: "system/Observation.r system/Patient.rs", registered: registered) {
            #expect(s.map(\.text) == ["system/Observation.r", "system/Patient.rs"])
        } else {
            Issue.record("refused")
        }
        for refused in ["system/Task.rs", "system/*.rs", "system/Practitioner.rs", "system/Observation.c", "", "user/Observation.rs"] {
            if case .success = SMARTScopeGrant.grant(requested: refused, registered: registered) { Issue.record("granted '\(refused)'") }
        }
        if case .failure = SMARTScopeGrant.grant(requested: "system/Task.rs", registered: ["system/*.read"]) { Issue.record("wildcard refused") }
        // Asking for create, update and delete too is granted as what exists here: read and search.
        if case .success(let s) = SMARTScopeGrant.grant(requested: "system/Observation.cruds system/Patient.*", registered: registered) {
            #expect(s.map(\.text) == ["system/Observation.rs", "system/Patient.rs"])
        } else {
            Issue.record("refused")
        }
    }

    @Test("claims: iss = sub = client, aud = token URL, exp in the future and at most 5 min (+30 s skew) ahead, a jti")
    func claims() {
        let now: Int64 = 1_800_000_000
        func claims(iss: String = "c1", sub: String = "c1", aud: [String] = ["https://x/auth/token"], exp: Int64? = 1_800_000_240, jti: String? = "j")
            -> AssertionClaims { AssertionClaims(issuer: iss, subject: sub, audience: aud, expiresAt: exp, jwtID: jti) }
        func problem(_ c: AssertionClaims) -> String? { AssertionRules.problem(c, clientID: "c1", tokenURL: "https://x/auth/token", now: now) }
        #expect(problem(claims()) == nil)
        #expect(problem(claims(exp: now + 330)) == nil)
        #expect(problem(claims(exp: now + 331)) != nil)
        #expect(problem(claims(exp: now)) != nil)
        #expect(problem(claims(exp: nil)) != nil)
        #expect(problem(claims(iss: "c2")) != nil)
        #expect(problem(claims(sub: "c2")) != nil)
        #expect(problem(claims(aud: ["https://x/auth/token/"])) != nil)
        #expect(problem(claims(jti: nil)) != nil)
    }
}

@Suite("FHIR resources from stored rows")
struct FHIRMappingTests {
    let mapper = FHIRMapper(settings: FHIRMappingSettings(baseURL: "https://rpm.example.org/fhir/r4"))

    func reading(_ id: Int64, _ type: VitalType, _ value: Double, received: Int64 = 1_772_370_031_000, source: ReadingSource = .device,
                 flags: ObservationFlags = []) -> StoredReading {
        StoredReading(id: id, deviceID: "cuff-1", patientID: "p1", type: type, canonicalValue: value, measuredAt: 1_772_370_029_000,
                      receivedAt: received, source: source, flags: flags, localOffsetMinutes: -300)
    }

    @Test("a BP pair is one 85354-9 panel with 8480-6 and 8462-4 components in mm[Hg], no top-level value")
    func panel() {
        let o = mapper.observation(ObservationSource(reading: reading(7, .systolicBP, 182), diastolic: reading(8, .diastolicBP, 96)))
        #expect(text(o) == #"{"resourceType":"Observation","id":"bp-7","meta":{"profile":["http://hl7.org/fhir/StructureDefinition/bp"]},"identifier":[{"system":"urn:vitalsd:observation","value":"cuff-1/85354-9/1772370029000"}],"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"Vital Signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel with all children optional"}],"text":"Blood pressure"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-01T08:00:29-05:00","issued":"2026-03-01T13:00:31Z","component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}],"text":"Systolic blood pressure"},"valueQuantity":{"value":182,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4","display":"Diastolic blood pressure"}],"text":"Diastolic blood pressure"},"valueQuantity":{"value":96,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}],"device":{"reference":"Device/cuff-1"}}"#)
    }

    @Test("SpO2 carries 59408-5 and 2708-6; late, manual and device flags are tags")
    func tagsAndCodes() {
        let spo2 = mapper.observation(ObservationSource(reading: reading(9, .spo2, 97)))
        #expect(text(spo2).contains(#""code":"59408-5""#) && text(spo2).contains(#""code":"2708-6""#))
        #expect(text(spo2).contains(#""code":"%""#))
        // Received 25 h after measurement, entered by hand, irregular heartbeat.
        let late = ObservationSource(reading: reading(10, .heartRate, 77, received: 1_772_370_029_000 + 25 * 3_600_000, source: .manual,
                                                      flags: [.irregularHeartbeat]))
        #expect(mapper.readingTags(late).map { text($0) }.map { $0.split(separator: ",")[1] } == [#""code":"late""#, #""code":"manual""#, #""code":"irregular_heartbeat""#])
        #expect(mapper.readingTags(ObservationSource(reading: reading(11, .heartRate, 77))).isEmpty)
    }

    @Test("the push transaction creates each Observation on condition of its identifier and names the patient by identifier")
    func transaction() {
        let t = text(mapper.transaction([ObservationSource(reading: reading(12, .heartRate, 64))], fullURLs: ["urn:uuid:0"]))
        #expect(t.contains(#""ifNoneExist":"identifier=urn:vitalsd:observation|cuff-1/8867-4/1772370029000""#))
        #expect(t.contains(#""subject":{"reference":"Patient?identifier=urn:vitalsd:patient|p1"}"#))
        #expect(t.contains(#""device":{"identifier":{"system":"urn:vitalsd:device","value":"cuff-1"}}"#))
        #expect(!t.contains(#""id":"r-12""#))
    }

    @Test("JSON strings are escaped; decimals keep their shortest form")
    func json() {
        #expect(text(["a": .string("q\"\\\n\u{01}é")]) == #"{"a":"q\"\\\n\u0001é"}"#)
        #expect(text([.decimal(99.099), .decimal(120), .decimal(37.5)]) == "[99.099,120,37.5]")
    }
}
