import Foundation
import Testing
import VitalsConfig
import VitalsDomain
import VitalsFormats

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

    @Test("subscriptions name their format; topics stay canonical; routes match in order")
    func subscriptions() throws {
        let c = try VitalsConfiguration.parse(yaml: """
            mqtt:
              topics: [devices/+/readings]
              subscriptions:
                - {topic: "gateways/+/senml", format: senml}
                - {topic: "vendors/tenovi", format: tenovi, device_field: hwi_device_id}
                - {topic: "phones/+/fhir", format: fhir, timezone: America/Chicago}
            """)
        #expect(c.mqtt.subscriptions.map(\.format) == [.senml, .tenovi, .fhir])
        #expect(c.mqtt.allTopicFilters == ["devices/+/readings", "gateways/+/senml", "vendors/tenovi", "phones/+/fhir"])
        let routes = try c.mqtt.routes()
        let canonical = try #require(SubscriptionRoute.match("devices/c1/readings", in: routes))
        #expect(canonical.route.format == .canonical && canonical.deviceID == "c1")
        let senml = try #require(SubscriptionRoute.match("gateways/gw-1/senml", in: routes))
        #expect(senml.route.format == .senml && senml.deviceID == "gw-1")
        let tenovi = try #require(SubscriptionRoute.match("vendors/tenovi", in: routes))
        #expect(tenovi.deviceID == nil && tenovi.route.deviceField == "hwi_device_id")
        #expect(try #require(SubscriptionRoute.match("phones/p/fhir", in: routes)).route.timeZone == TimeZone(identifier: "America/Chicago"))
        #expect(SubscriptionRoute.match("elsewhere/x", in: routes) == nil)
    }

    @Test("bad subscriptions are refused, each naming its key")
    func badSubscriptions() {
        let yaml = """
            mqtt:
              subscriptions:
                - {topic: "a/+/x", format: hl7v2}
                - {topic: "b/+/+/x", format: senml}
                - {topic: "c/+/x", format: fhir, timezone: Mars/Olympus}
                - {topic: "devices/+/readings", format: senml}
                - {topic: "d/x", format: ihealth}
                - {topic: "e/+/x", format: telli, colour: blue}
                - {topic: "f/+/x"}
            """
        do {
            _ = try VitalsConfiguration.parse(yaml: yaml)
            Issue.record("accepted bad subscriptions")
        } catch let error as ConfigurationErrors {
            let keys = Set(error.errors.map(\.key))
            #expect(keys.isSuperset(of: [
                "mqtt.subscriptions[0].format", "mqtt.subscriptions[1].topic", "mqtt.subscriptions[2].timezone",
                "mqtt.subscriptions[3].topic", "mqtt.subscriptions[4].topic", "mqtt.subscriptions[5].colour",
                "mqtt.subscriptions[6].format",
            ]))
        } catch {
            Issue.record("unexpected error \(error)")
        }
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
