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
        #expect(c.alerts == AlertPolicy.clinicalDefaults)
        #expect(c.delivery.mqttEnabled && c.delivery.mqttTopic == "alerts/{patient_id}/tasks" && c.delivery.webhookURL == nil)
        #expect(c.fhir == VitalsConfiguration.FHIR() && c.delivery.fhir == nil)
    }

    @Test("cluster.sessions: filters of two sessions that some topic matches both are refused; disjoint shards pass")
    func overlappingSessions() throws {
        let path = NSTemporaryDirectory() + "vitalsd-sessions-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        func sessions(_ east: String, _ west: String) throws -> VitalsConfiguration {
            try """
                database:
                  url: postgres://vitalsd@db.example.org/vitalsd
                cluster:
                  sessions:
                    - client_id: vitalsd-east
                      topics: [\(east)]
                    - client_id: vitalsd-west
                      topics: [\(west)]
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return try VitalsConfiguration.load(path: path, environment: [:])
        }
        #expect(try sessions("devices/east/+/readings", "devices/west/+/readings").cluster.sessions.count == 2)
        for (east, west) in [
            ("devices/east/+/readings", "devices/east/+/readings"),
            ("devices/east/+/readings", "devices/east/+/#"),
            ("devices/east/+/readings", "devices/+/east-d1/readings"),
            ("devices/east/+/readings", "devices/+/#"),
        ] {
            do {
                _ = try sessions(east, west)
                Issue.record("accepted \(east) and \(west)")
            } catch let error as ConfigurationErrors {
                #expect(error.description.contains("cluster.sessions[1].topics[0]: '\(west)' overlaps '\(east)' of cluster.sessions[0]"), "\(error)")
            }
        }
    }

    @Test("a YAML syntax error names the file, the line and the problem on one line, without the file's text")
    func yamlSyntax() throws {
        let path = NSTemporaryDirectory() + "vitalsd-yaml-\(UUID().uuidString).yaml"
        try "mqtt:\n  port: 1883\n  host: [unclosed\nweb:\n  enabled: true\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try VitalsConfiguration.load(path: path, environment: [:])
            Issue.record("accepted")
        } catch let error as ConfigurationErrors {
            let text = error.description
            #expect(text.hasPrefix("\(path): not valid YAML: line "), "\(text)")
            #expect(!text.contains("\n") && !text.contains("enabled"), "\(text)")
        }
    }

    @Test("durations far beyond sense are refused naming their key (they crashed the daemon when converted to integers)")
    func durationBounds() {
        let huge = "9223372036854775807"
        for (yaml, key) in [("database:\n  busy_timeout_seconds: 2200000", "database.busy_timeout_seconds"),
                            ("database:\n  checkpoint_interval_seconds: \(huge)", "database.checkpoint_interval_seconds"),
                            ("alerts:\n  escalation_after_minutes: \(huge)", "alerts.escalation_after_minutes"),
                            ("alerts:\n  confirmation_window_minutes: \(huge)", "alerts.confirmation_window_minutes"),
                            ("alerts:\n  late_after_hours: \(huge)", "alerts.late_after_hours"),
                            ("alerts:\n  escalation_repeat_minutes: [30, \(huge)]", "alerts.escalation_repeat_minutes")] {
            do {
                _ = try VitalsConfiguration.parse(yaml: yaml)
                Issue.record("accepted \(yaml)")
            } catch let error as ConfigurationErrors {
                #expect(error.errors.map(\.key) == [key], "\(error)")
            } catch { Issue.record("\(error)") }
        }
        // The shipped values and a week of escalation still pass.
        #expect(throws: Never.self) { try VitalsConfiguration.parse(yaml: "alerts:\n  escalation_after_minutes: 10080") }
        // scripts/demo replays years-old CGM data with late_after_hours: 1000000.
        #expect(throws: Never.self) { try VitalsConfiguration.parse(yaml: "alerts:\n  late_after_hours: 1000000") }
    }

    @Test("fhir and delivery.fhir are read and checked, each problem naming its key")
    func fhir() throws {
        let key = NSTemporaryDirectory() + "vitalsd-key-\(UUID().uuidString).pem"
        try "-----BEGIN PRIVATE KEY-----\n".write(toFile: key, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: key) }
        let c = try VitalsConfiguration.parse(yaml: """
            web:
              enabled: true
            fhir:
              enabled: true
              public_base_url: https://rpm.example.org
              max_count: 500
              patient_identifier_system: urn:oid:2.16.840.1.113883.19.5
            delivery:
              fhir:
                base_url: https://ehr.example.org/fhir/r4
                token_url: https://ehr.example.org/token
                client_id: vitalsd
                private_key_file: \(key)
                algorithm: RS384
            """, environment: ["VITALSD_FHIR_PUBLIC_BASE_URL": "https://rpm2.example.org"])
        #expect(c.fhir.enabled && c.fhir.publicBaseURL == "https://rpm2.example.org" && c.fhir.maxCount == 500)
        #expect(c.fhir.patientIdentifierSystem == "urn:oid:2.16.840.1.113883.19.5")
        #expect(c.delivery.fhir?.algorithm == "RS384" && c.delivery.fhir?.scope == "system/Observation.write")
        #expect(c.delivery.fhir?.bundleMaxEntries == 50)
        do {
            _ = try VitalsConfiguration.parse(yaml: """
                fhir:
                  enabled: true
                  public_base_url: https://rpm.example.org/
                  token_lifetime_seconds: 3600
                  colour: blue
                delivery:
                  fhir:
                    base_url: ftp://ehr
                    algorithm: HS256
                    bundle_max_entries: 0
                """)
            Issue.record("accepted")
        } catch let e as ConfigurationErrors {
            let keys = Set(e.errors.map(\.key))
            #expect(keys == ["fhir.enabled", "fhir.public_base_url", "fhir.token_lifetime_seconds", "fhir.colour", "delivery.fhir.base_url",
                             "delivery.fhir.algorithm", "delivery.fhir.bundle_max_entries", "delivery.fhir.token_url",
                             "delivery.fhir.client_id", "delivery.fhir.private_key_file"])
        }
    }

    @Test("a unit on a type's limits converts them to the canonical unit, as threshold set does")
    func thresholdUnits() throws {
        let c = try VitalsConfiguration.parse(yaml: """
            thresholds:
              defaults:
                body_weight: {critical_high: 220, unit: "[lb_av]"}
                glucose: {unit: mmol/L, critical_low: 3.0, warning_low: 3.9}
                body_temperature: {unit: "[degF]", critical_high: 100.4, warning_high: 100}
            """)
        // 220 lb × 0.45359237 = 99.7903214 kg, rounded to 6 decimals.
        #expect(c.thresholds.defaults[.bodyWeight]?.criticalHigh == 99.790321)
        // 3.0 and 3.9 mmol/L × 18.018 = 54.054 and 70.2702 mg/dL.
        #expect(c.thresholds.defaults[.glucose]?.criticalLow == 54.054)
        #expect(c.thresholds.defaults[.glucose]?.warningLow == 70.2702)
        // (100.4 − 32) × 5/9 = 38 °C; (100 − 32) × 5/9 = 37.777778 °C.
        #expect(c.thresholds.defaults[.bodyTemperature]?.criticalHigh == 38)
        #expect(c.thresholds.defaults[.bodyTemperature]?.warningHigh == 37.777778)
        #expect(c.warnings.isEmpty)
    }

    @Test("a limit implausible in the canonical unit is refused with the unit it fits; an ambiguous one is a warning")
    func thresholdUnitsImplausibleOrAmbiguous() throws {
        // 250 as kg (the canonical unit) is a plausible weight, and so is 250 lb (113.4 kg): which was meant?
        let c = try VitalsConfiguration.parse(yaml: "thresholds:\n  defaults:\n    body_weight: {critical_high: 250}\n")
        #expect(c.thresholds.defaults[.bodyWeight]?.criticalHigh == 250)
        #expect(c.warnings.map(\.description) == [
            #"thresholds.defaults.body_weight.critical_high: 250 is read as 250 kg, but as [lb_av] (113.4 kg) it would be plausible too: add unit: "kg" or unit: "[lb_av]" to this type"#,
        ])
        func errors(_ yaml: String) -> [String] {
            do {
                _ = try VitalsConfiguration.parse(yaml: yaml)
                return []
            } catch let e as ConfigurationErrors { return e.errors.map(\.description) } catch { return ["\(error)"] }
        }
        // 3.9 mg/dL is below any meter; 3.9 mmol/L = 70.27 mg/dL.
        #expect(errors("thresholds:\n  defaults:\n    glucose: {warning_low: 3.9}\n") == [
            #"thresholds.defaults.glucose.warning_low: 3.9 is outside the plausible range of glucose in mg/dL (10–600 mg/dL); if it is mmol/L (3.9 mmol/L = 70.27 mg/dL), write unit: "mmol/L""#,
        ])
        // 900 lb × 0.45359237 = 408.233133 kg (shown to 2 decimals): no scale weighs it.
        #expect(errors("thresholds:\n  defaults:\n    body_weight: {unit: lb, critical_high: 900}\n") == [
            "thresholds.defaults.body_weight.critical_high: 900 [lb_av] = 408.23 kg is outside the plausible range of body_weight (2–400 kg)",
        ])
        #expect(errors("thresholds:\n  defaults:\n    glucose: {unit: kg, critical_high: 400}\n") == [
            "thresholds.defaults.glucose.unit: must be a unit of glucose: mg/dL, mmol/L, kg/m3",
        ])
    }

    @Test("a thresholds section changes only the limits it names; none removes one")
    func thresholdsMergeOverDefaults() throws {
        // One heart-rate limit must not drop the blood-pressure and glucose red flags.
        let c = try VitalsConfiguration.parse(yaml: """
            thresholds:
              defaults:
                heart_rate: {critical_high: 130}
                glucose: {critical_high: none, warning_high: 300}
              programs:
                copd:
                  spo2: {critical_low: 87}
            """)
        let builtIn = ThresholdPolicy.clinicalDefaults
        #expect(c.thresholds.defaults[.heartRate] == ThresholdLimits(criticalHigh: 130))
        #expect(c.thresholds.defaults[.systolicBP] == builtIn.defaults[.systolicBP])
        #expect(c.thresholds.defaults[.diastolicBP] == builtIn.defaults[.diastolicBP])
        let glucose = try #require(c.thresholds.defaults[.glucose])
        #expect(glucose.criticalHigh == nil && glucose.warningHigh == 300 && glucose.criticalLow == 54 && glucose.warningLow == 70)
        #expect(c.thresholds.programs[.copd]?[.spo2]?.criticalLow == 87)
        #expect(c.thresholds.defaults[.spo2] == builtIn.defaults[.spo2])
    }

    @Test("web: off by default; plain HTTP off loopback is refused unless a TLS proxy is in front")
    func web() throws {
        let shipped = try VitalsConfiguration.load(path: Self.shipped, environment: [:])
        #expect(!shipped.web.enabled && shipped.web.host == "127.0.0.1" && shipped.web.sessionIdleMinutes == 15)
        #expect(!shipped.web.secureCookies)
        func problems(_ yaml: String, _ env: [String: String] = [:]) -> [String] {
            do {
                _ = try VitalsConfiguration.parse(yaml: yaml, environment: env)
                return []
            } catch let error as ConfigurationErrors {
                return error.errors.map(\.key)
            } catch {
                return ["?"]
            }
        }
        #expect(problems("web:\n  enabled: true\n  host: 0.0.0.0\n") == ["web.host"])
        #expect(problems("web:\n  enabled: true\n", ["VITALSD_WEB_HOST": "10.1.2.3"]) == ["web.host"])
        #expect(problems("web:\n  enabled: true\n  host: 0.0.0.0\n  behind_tls_proxy: true\n").isEmpty)
        #expect(problems("web:\n  enabled: true\n  host: 127.0.0.2\n").isEmpty)
        #expect(problems("web:\n  enabled: false\n  host: 0.0.0.0\n").isEmpty)
        // A cert without its key is refused when parsed; that the files can be read is checked where
        // they are used (the daemon, config check), since a key may live under /run/credentials/.
        #expect(problems("web:\n  tls_cert_file: /no/such.crt\n").sorted() == ["web.tls_key_file"])
        let unreadable = try VitalsConfiguration.parse(yaml: "web:\n  tls_cert_file: /no/such.crt\n  tls_key_file: /no/such.key\n")
        #expect(unreadable.webTLSFileProblems.map(\.key) == ["web.tls_cert_file", "web.tls_key_file"])
        #expect(problems("web:\n  session_idle_minutes: 0\n  page_size: 5\n  display_timezone: Mars/Base\n").sorted()
                == ["web.display_timezone", "web.page_size", "web.session_idle_minutes"])
        #expect(problems("web:\n  enabled: true\n  port: 9464\n") == ["web.port"])
        #expect(problems("web:\n  sesion_idle_minutes: 5\n") == ["web.sesion_idle_minutes"])
        let proxied = try VitalsConfiguration.parse(yaml: "web:\n  behind_tls_proxy: true\n  session_idle_minutes: 10\n")
        #expect(proxied.web.secureCookies && proxied.web.sessionIdleMinutes == 10)
    }

    @Test("alert rules, timers and delivery are read and checked")
    func alerts() throws {
        let secret = NSTemporaryDirectory() + "vitalsd-secret-\(UUID().uuidString)"
        try "s3cret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let c = try VitalsConfiguration.parse(yaml: """
            alerts:
              late_after_hours: 12
              escalation_after_minutes: 20
              escalation_repeat_minutes: [10, 60]
              rules:
                - {id: sbp_mean_7d, kind: average, type: systolic_bp, direction: high, window_hours: 168, bound: 150, min_count: 3}
              programs:
                diabetes:
                  - {id: lows_7d, kind: count, type: glucose, direction: low, window_hours: 168, bound: 70, min_count: 3, level: critical}
            delivery:
              webhook_url: https://care.example.org/events
              webhook_secret_file: \(secret)
            thresholds:
              defaults:
                systolic_bp: {critical_high: 180, warning_high: none, recovery_high: 170}
            """)
        #expect(c.alerts.lateAfterSeconds == 43_200)
        #expect(c.alerts.escalationAfterSeconds == 1_200)
        #expect(c.alerts.escalationRepeatSeconds == [600, 3_600])
        #expect(c.alerts.defaultRules == [TrendRule(id: "sbp_mean_7d", kind: .average, type: .systolicBP, direction: .high,
                                                    windowSeconds: 604_800, bound: 150, minimumCount: 3)])
        #expect(c.alerts.programRules[.diabetes]?.first?.level == .critical)
        // A program not listed keeps its built-in rules.
        #expect(c.alerts.programRules[.heartFailure] == AlertPolicy.heartFailureWeightRules)
        #expect(c.thresholds.defaults[.systolicBP]?.recoveryHigh == 170)
        #expect(try c.webhookSecret() == "s3cret")
        // An empty secret file is refused by the check, as the daemon would refuse it.
        let empty = NSTemporaryDirectory() + "vitalsd-empty-\(UUID().uuidString)"
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        #expect(throws: ConfigurationErrors.self) {
            try VitalsConfiguration.parse(yaml: "delivery:\n  webhook_url: https://x.example/e\n  webhook_secret_file: \(empty)\n")
        }
        do {
            _ = try VitalsConfiguration.parse(yaml: """
                alerts:
                  escalation_after_minutes: 0
                  rules:
                    - {id: x, kind: slope, type: body_weight, direction: up, window_hours: 24, bound: 1}
                    - {id: y, kind: delta, type: body_weight, direction: high, window_hours: 24, bound: -1}
                delivery:
                  webhook_url: ftp://x
                  mqtt_topic: "alerts/+/tasks"
                thresholds:
                  defaults:
                    systolic_bp: {critical_high: 180, recovery_high: 190}
                """)
            Issue.record("accepted a bad alerts section")
        } catch let error as ConfigurationErrors {
            let keys = Set(error.errors.map(\.key))
            #expect(keys.isSuperset(of: [
                "alerts.escalation_after_minutes", "alerts.rules[0].kind", "alerts.rules[0].direction", "alerts.rules[1]",
                "delivery.webhook_url", "delivery.webhook_secret_file", "delivery.mqtt_topic", "thresholds.defaults.systolic_bp",
            ]), "\(keys)")
        }
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
    func refused() throws {
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
        // A variable one or two letters from an override is a likely typo: a warning names the variable
        // meant. The scripts' own variables, far from every override, pass without one.
        let typo = try VitalsConfiguration.parse(
            yaml: "mqtt: {port: 1883}",
            environment: ["VITALSD_MQTT_HOTS": "x", "VITALSD_DATABSE_PATH": "/tmp/x", "VITALSD_BUILD": "debug",
                          "VITALSD_TEST_LOAD": "1", "VITALSD_CONFIG": "/etc/vitalsd/vitalsd.yaml"])
        #expect(typo.warnings.map(\.description) == [
            "environment: VITALSD_DATABSE_PATH is not a setting and is ignored; did you mean VITALSD_DATABASE_PATH?",
            "environment: VITALSD_MQTT_HOTS is not a setting and is ignored; did you mean VITALSD_MQTT_HOST?",
        ])
        // A bad value from the environment names its variable, not only its key.
        do {
            _ = try VitalsConfiguration.parse(yaml: "mqtt: {port: 1883}", environment: ["VITALSD_MQTT_PORT": "abc"])
            Issue.record("accepted port abc")
        } catch {
            #expect("\(error)" == "mqtt.port: must be a whole number (got 'abc') (set by the environment variable VITALSD_MQTT_PORT)")
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
