import Foundation
import Testing
import VitalsConfig
import VitalsDomain

@Suite("configuration")
struct ConfigurationTests {
    static let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Config/vitalsd.yaml").path

    @Test("the shipped file parses, and its thresholds are the built-in defaults")
    func shipped() throws {
        let c = try VitalsConfiguration.load(path: Self.shipped, environment: [:])
        #expect(c.mqtt.topics == ["devices/+/readings"])
        #expect(c.thresholds == ThresholdPolicy.clinicalDefaults)
    }

    @Test("environment variables override keys")
    func environment() throws {
        let c = try VitalsConfiguration.load(path: Self.shipped, environment: [
            "VITALSD_MQTT_HOST": "broker.local", "VITALSD_MQTT_PORT": "8883", "VITALSD_MQTT_CLIENT_ID": "vitalsd-7",
            "VITALSD_DATABASE_PATH": "/tmp/x.sqlite", "VITALSD_MQTT_TOPICS": "a/+/r, b/+/r",
        ])
        #expect(c.mqtt.host == "broker.local")
        #expect(c.mqtt.port == 8883)
        #expect(c.mqtt.clientID == "vitalsd-7")
        #expect(c.database.path == "/tmp/x.sqlite")
        #expect(c.mqtt.topics == ["a/+/r", "b/+/r"])
    }

    @Test("bad values are refused, each naming its key")
    func refused() {
        let yaml = """
            mqtt:
              port: 70000
              hots: x
              topics: ["devices/#"]
            database:
              synchronous: off
            thresholds:
              defaults:
                glucose: {critical_low: 80, warning_low: 70}
                pulse: {critical_high: 150}
            """
        do {
            _ = try VitalsConfiguration.parse(yaml: yaml)
            Issue.record("accepted a bad configuration")
        } catch let error as ConfigurationErrors {
            let keys = Set(error.errors.map(\.key))
            #expect(keys.isSuperset(of: ["mqtt.port", "mqtt.hots", "mqtt.topics[0]", "database.synchronous",
                                         "thresholds.defaults.glucose.warning_low", "thresholds.defaults.pulse"]))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(throws: ConfigurationErrors.self) { try VitalsConfiguration.parse(yaml: "mqtt:\n  port: [1]\n") }
        #expect(throws: ConfigurationErrors.self) {
            try VitalsConfiguration.parse(yaml: "mqtt: {port: 1883}", environment: ["VITALSD_MQTT_PORT": "abc"])
        }
    }

    @Test("five different mistakes are reported together, each with its key")
    func fiveMistakes() {
        let yaml = """
            mqtt:
              port: 0
              client_id: "has space"
            database:
              synchronous: sometimes
            log:
              level: chatty
            http:
              port: 99999
            """
        do {
            _ = try VitalsConfiguration.parse(yaml: yaml)
            Issue.record("accepted five mistakes")
        } catch let error as ConfigurationErrors {
            #expect(error.errors.map(\.key).sorted() == ["database.synchronous", "http.port", "log.level", "mqtt.client_id", "mqtt.port"])
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
