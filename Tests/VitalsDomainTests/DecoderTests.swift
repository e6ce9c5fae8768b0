import Foundation
import Testing
import VitalsDomain

@Suite("canonical message format v1")
struct DecoderTests {
    let decoder = CanonicalMessageDecoder()
    let received = Date(timeIntervalSince1970: 1_795_871_400)  // 2026-11-28T13:10:00Z

    func decode(_ json: String, device: String = "cuff-1") throws(Rejection) -> DecodedMessage {
        try decoder.decode(payload: Array(json.utf8), deviceID: device, receivedAt: received)
    }

    @Test("the README's envelope example")
    func envelope() throws {
        let m = try decode("""
            {"measured_at": "2026-11-28T07:10:00-06:00", "message_id": "m-1",
             "readings": [{"type": "systolic_bp", "value": 182, "unit": "mm[Hg]"},
                          {"type": "diastolic_bp", "value": 96, "unit": "mm[Hg]"},
                          {"type": "heart_rate", "value": 77, "unit": "/min"}]}
            """)
        #expect(m.messageID == "m-1")
        let obs = try m.readings.map { try $0.get() }
        #expect(obs.map(\.type.loinc) == ["8480-6", "8462-4", "8867-4"])
        #expect(obs.map(\.canonicalValue) == [182, 96, 77])
        #expect(obs.allSatisfy { $0.measuredAt.timeIntervalSince1970 == 1_795_871_400 })
        // The sender's offset is kept for display at the device's local time (FHIR effectiveDateTime).
        #expect(obs.allSatisfy { $0.localOffsetMinutes == -360 })
    }

    @Test("a flat reading; numeric strings accepted")
    func flat() throws {
        let m = try decode(#"{"type": "glucose", "value": "52", "unit": "mg/dL", "measured_at": 1795871400000}"#, device: "g-1")
        let o = try m.readings[0].get()
        #expect(o.type.loinc == "41653-7")
        #expect(o.canonicalValue == 52)
        #expect(o.deviceID == "g-1")
        #expect(o.localOffsetMinutes == nil)  // epoch milliseconds carry no offset
    }

    @Test("a bad reading is rejected alone; its siblings stay")
    func partial() throws {
        let m = try decode("""
            {"measured_at": "2026-11-28T13:00:00Z", "readings": [
              {"type": "systolic_bp", "value": 2047, "unit": "mmHg"},
              {"type": "heart_rate", "value": 70, "unit": "bpm"},
              {"type": "weight", "value": 70, "unit": "kg"},
              {"type": "glucose", "value": 99, "unit": "mg/dL", "measured_at": "1970-01-01T00:00:00Z"}]}
            """)
        #expect(m.readings.count == 4)
        #expect(m.events.map(\.kind) == [.deviceError])
        #expect(m.readings.map { r -> String in
            switch r {
            case .success: "ok"
            case .failure(let e): e.reason.rawValue
            }
        } == ["device_error", "ok", "unknown_type", "bad_timestamp"])
    }

    @Test("whole-message rejections", arguments: [
        ("{\"sys\":12", DeadLetterReason.malformedJSON),
        ("[1,2,3]", .malformedJSON),
        ("{\"readings\": []}", .malformedJSON),
        ("{\"hello\": \"world\"}", .missingField),
        ("{\"device_id\": \"other\", \"type\": \"glucose\", \"value\": 90, \"unit\": \"mg/dL\", \"measured_at\": 1795871400000}", .deviceMismatch),
    ])
    func rejected(json: String, reason: DeadLetterReason) {
        #expect(throws: Rejection.self) { try decode(json) }
        do { _ = try decode(json) } catch { #expect(error.reason == reason) }
    }

    @Test("invalid UTF-8 and oversized payloads (F10, F12)")
    func bytes() {
        let invalid: [UInt8] = [0xFF, 0xFE, 0x7B, 0x22]
        do {
            _ = try decoder.decode(payload: invalid, deviceID: "d", receivedAt: received)
            Issue.record("accepted invalid UTF-8")
        } catch { #expect(error.reason == .invalidUTF8) }
        let small = CanonicalMessageDecoder(maxPayloadBytes: 100)
        do {
            _ = try small.decode(payload: Array(repeating: 0x20, count: 101), deviceID: "d", receivedAt: received)
            Issue.record("accepted an oversized payload")
        } catch { #expect(error.reason == .tooLarge) }
    }

    @Test("device id from the topic level the + matched")
    func topics() throws {
        let f = try DeviceTopicFilter("devices/+/readings")
        #expect(f.deviceID(in: "devices/cuff-17/readings") == "cuff-17")
        #expect(f.deviceID(in: "devices/cuff-17/status") == nil)
        #expect(f.deviceID(in: "devices//readings") == nil)
        #expect(f.deviceID(in: "devices/a/b/readings") == nil)
        let g = try DeviceTopicFilter("site/+/#")
        #expect(g.deviceID(in: "site/gw-2/x/y") == "gw-2")
        #expect(throws: Rejection.self) { try DeviceTopicFilter("devices/#") }
        #expect(throws: Rejection.self) { try DeviceTopicFilter("a/+/+/b") }
    }

    @Test("the device level is found without splitting the topic, with the same answers as MQTT matching")
    func topicsByPrefixAndSuffix() throws {
        let f = try DeviceTopicFilter("devices/+/readings")
        #expect(f.deviceID(in: "devices/readings") == nil)
        #expect(f.deviceID(in: "devices/x/readings/") == nil)
        #expect(f.deviceID(in: "/devices/x/readings") == nil)
        #expect(f.deviceID(in: "devices/x/readingss") == nil)
        #expect(f.deviceID(in: "devicess/x/readings") == nil)
        #expect(f.deviceID(in: "devices/ü-1/readings") == "ü-1")
        let first = try DeviceTopicFilter("+/readings")
        #expect(first.deviceID(in: "d1/readings") == "d1")
        #expect(first.deviceID(in: "/readings") == nil)
        #expect(first.deviceID(in: "a/b/readings") == nil)
        let last = try DeviceTopicFilter("gw/+")
        #expect(last.deviceID(in: "gw/d2") == "d2")
        #expect(last.deviceID(in: "gw/") == nil)
        #expect(last.deviceID(in: "gw/d2/x") == nil)
        let alone = try DeviceTopicFilter("+")
        #expect(alone.deviceID(in: "d3") == "d3")
        #expect(alone.deviceID(in: "") == nil)
        #expect(alone.deviceID(in: "a/b") == nil)
        #expect(try DeviceTopicFilter("devices/+/readings") == f)
    }

    @Test("JSON kinds stay exact: a numeric string is a string, 1 is not true")
    func jsonKinds() throws {
        let v = try JSONDecoder().decode(JSONValue.self, from: Data(#"""
            {"s":"1","n":1,"t":true,"f":false,"z":null,"a":[0,"x",[],{}],"o":{"k":-2.5e1}}
            """#.utf8))
        #expect(v == .object([
            "s": .string("1"), "n": .number(1), "t": .bool(true), "f": .bool(false), "z": .null,
            "a": .array([.number(0), .string("x"), .array([]), .object([:])]), "o": .object(["k": .number(-25)]),
        ]))
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data("[true]".utf8)) == .array([.bool(true)]))
    }
}

@Suite("topic filters that overlap")
struct TopicFilterOverlapTests {
    @Test("two filters overlap when some topic matches both (MQTT 3.1.1 §4.7)")
    func overlaps() throws {
        func overlap(_ a: String, _ b: String) throws -> Bool {
            let (x, y) = (try DeviceTopicFilter(a, deviceInTopic: false), try DeviceTopicFilter(b, deviceInTopic: false))
            #expect(x.overlaps(y) == y.overlaps(x))
            return x.overlaps(y)
        }
        #expect(try !overlap("devices/east/+/readings", "devices/west/+/readings"))
        #expect(try overlap("devices/east/+/readings", "devices/+/east-d1/readings"))  // devices/east/east-d1/readings
        #expect(try overlap("devices/east/+/readings", "devices/east/+/#"))
        #expect(try overlap("devices/+/readings", "devices/#"))
        #expect(try overlap("devices/east/#", "devices/east"))  // '#' matches its parent level too
        #expect(try !overlap("devices/east/+/readings", "devices/east/+/readings/raw"))
        #expect(try !overlap("devices/east/+/readings", "devices/east/+/readings/"))
        #expect(try !overlap("devices/+/readings", "gateways/+/readings"))
    }
}
