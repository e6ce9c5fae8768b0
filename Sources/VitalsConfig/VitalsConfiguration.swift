import Foundation
import VitalsDomain
import VitalsFormats
import Yams

/// Everything `vitalsd` reads from its YAML file and environment. `Config/vitalsd.yaml` documents each key.
public struct VitalsConfiguration: Sendable, Hashable {
    /// `mqtt.*`: the broker connection.
    public struct MQTT: Sendable, Hashable {
        public var host = "127.0.0.1"
        public var port = 1883
        public var clientID = "vitalsd"
        /// Seconds (5–65535).
        public var keepAliveSeconds = 60
        public var topics = ["devices/+/readings"]
        /// Most messages committed in one transaction (1–10000).
        public var maxBatch = 5000
        /// Seconds.
        public var reconnectMinSeconds = 1.0
        /// Seconds.
        public var reconnectMaxSeconds = 30.0
        public var username: String?
        /// A file whose first line is the password (or a systemd credential path); never the password itself.
        public var passwordFile: String?
        /// PEM CA file; setting it turns TLS on. The broker's certificate and host name are always verified.
        public var tlsCAFile: String?
        /// PEM client certificate and key, for brokers that authenticate clients by certificate.
        public var tlsCertFile: String?
        public var tlsKeyFile: String?
        /// Lowest TLS version: `tlsv1.2` or `tlsv1.3`.
        public var tlsVersion = "tlsv1.2"
        /// `mqtt.subscriptions`: topic filters with a payload format; ``topics`` are canonical.
        public var subscriptions: [Subscription] = []

        /// Every topic filter subscribed: ``topics``, then the subscriptions' topics.
        public var allTopicFilters: [String] { topics + subscriptions.map(\.topic).filter { !topics.contains($0) } }

        /// How each subscribed filter's messages are read, in match order: ``topics`` (canonical), then
        /// ``subscriptions``. Call on a validated configuration.
        /// - Throws: ``Rejection`` `bad_topic` for a filter the validation would refuse.
        public func routes() throws(Rejection) -> [SubscriptionRoute] {
            var routes: [SubscriptionRoute] = []
            for topic in topics { routes.append(try SubscriptionRoute(topic: topic)) }
            for s in subscriptions {
                routes.append(try SubscriptionRoute(
                    topic: s.topic, format: s.format, deviceField: s.deviceField,
                    timeZone: s.timeZone.flatMap(TimeZone.init(identifier:))))
            }
            return routes
        }
    }

    /// One entry of `mqtt.subscriptions`.
    public struct Subscription: Sendable, Hashable {
        /// The topic filter. With one `+` level the device id is that level; with none it is in the payload.
        public var topic: String
        /// The payload format (`canonical`, `senml`, `fhir`, `tenovi`, `bodytrace`, `withings`,
        /// `dexcom`, `telli`, `ihealth`, `qube`, `smartmeter`,
        /// `librelinkup`, `impilo`, or `auto`).
        public var format: MessageFormat
        /// A dotted path of the payload member that names the device, overriding the format's own.
        public var deviceField: String?
        /// IANA time zone for naive local times; absent: the patient's time zone.
        public var timeZone: String?

        public init(topic: String, format: MessageFormat, deviceField: String? = nil, timeZone: String? = nil) {
            self.topic = topic
            self.format = format
            self.deviceField = deviceField
            self.timeZone = timeZone
        }
    }

    /// `database.*`: the SQLite file.
    public struct Database: Sendable, Hashable {
        public var path = "/var/lib/vitalsd/vitalsd.sqlite"
        /// `full` or `normal`.
        public var synchronous = "full"
        /// Seconds a write waits for another process's lock.
        public var busyTimeoutSeconds = 10.0
        /// Seconds between truncating WAL checkpoints.
        public var checkpointIntervalSeconds = 300.0
        /// Days to keep raw dead-letter payloads; nil keeps them forever.
        public var deadLetterPayloadRetentionDays: Int? = 30
        /// `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…]` of a PostgreSQL database instead of SQLite at
        /// ``path``; nil for SQLite. No password in it: that comes from ``passwordFile``.
        public var url: String?
        /// A file holding the PostgreSQL password (trailing newline trimmed); nil for none.
        public var passwordFile: String?
    }

    /// `ingest.*`: message limits.
    public struct Ingest: Sendable, Hashable {
        /// Bytes; larger payloads are dead-lettered as `too_large`.
        public var maxPayloadBytes = 262_144
        /// Seconds a measurement may lie in the future.
        public var maxFutureSkewSeconds = 600.0
    }

    /// `adherence.*`: routine tasks raised on a timer.
    public struct Adherence: Sendable, Hashable {
        /// Days without device data before a `no_data` task.
        public var noDataDays = 3
        /// A device whose battery is at or below this percentage gets a routine device task; nil: never.
        public var lowBatteryPercent: Double? = 15
        /// Seconds between checks.
        public var checkIntervalSeconds = 300.0
    }

    /// `http.*`: health, readiness and metrics endpoints.
    public struct HTTP: Sendable, Hashable {
        /// Serve the endpoints at all.
        public var enabled = true
        /// Address to bind; keep it on loopback unless a firewall protects the port.
        public var host = "127.0.0.1"
        public var port = 9464
    }

    /// `web.*`: the care manager's workspace (sign-in, worklist, task pages), a listener of its own.
    public struct Web: Sendable, Hashable {
        /// Serve the workspace at all.
        public var enabled = false
        /// Address to bind. An address other than loopback needs TLS (``tlsCertFile``) or ``behindTLSProxy``.
        public var host = "127.0.0.1"
        public var port = 8080
        /// PEM certificate chain and private key; setting them serves HTTPS (TLS 1.2 or later).
        public var tlsCertFile: String?
        public var tlsKeyFile: String?
        /// A reverse proxy in front terminates TLS: cookies are then `Secure` as under TLS.
        public var behindTLSProxy = false
        /// Minutes without activity after which a session ends (HIPAA §164.312(a)(2)(iii) automatic logoff).
        public var sessionIdleMinutes = 15.0
        /// Hours after sign-in after which a session ends however active it is.
        public var sessionMaxHours = 12.0
        /// IANA time zone in which the workspace shows times.
        public var displayTimezone = "UTC"
        /// Worklist rows per page (10–200).
        public var pageSize = 50
        /// Requests per minute from one client address to `POST /signin`, and apart from those to
        /// `POST /auth/token` (the SMART token endpoint); more are answered 429 before any password or
        /// signature is checked (1–10,000, default 30).
        public var authenticationRequestsPerMinute = 30

        /// Cookies are `Secure` (and use the `__Host-` prefix): the browser reaches the workspace over HTTPS.
        public var secureCookies: Bool { tlsCertFile != nil || behindTLSProxy }

        /// Whether ``host`` names the loopback interface.
        public var isLoopback: Bool {
            host == "localhost" || host == "::1" || host.hasPrefix("127.")
        }
    }

    /// `cluster.*`: several vitalsd nodes on one PostgreSQL database (`database.url`), each MQTT
    /// session owned by one node at a time through a lease.
    public struct Cluster: Sendable, Hashable {
        /// This node's name, as other nodes, `/readyz` and the lease table show it; nil: the host name.
        /// Two running nodes must not share one.
        public var nodeName: String?
        /// Seconds a session lease lasts without renewal (2–300). A standby takes a dead owner's
        /// session within this plus ``standbyRetrySeconds``; the owner renews every sixth of it and
        /// stops acknowledging when its last confirmed renewal is older than two thirds of it.
        public var leaseTTLSeconds = 6.0
        /// `cluster.sessions`: the MQTT sessions the nodes share out; empty: one session,
        /// `mqtt.client_id` with `mqtt.topics` and `mqtt.subscriptions`.
        public var sessions: [Session] = []

        /// Seconds between a standby's tries to take a session: a sixth of the lease.
        public var standbyRetrySeconds: Double { leaseTTLSeconds / 6 }
    }

    /// One entry of `cluster.sessions`: an MQTT session (its client id) and the canonical-format
    /// topic filters it subscribes, each with one `+` level for the device id. Readings of one device
    /// must travel one session, so a filter belongs to one session only.
    public struct Session: Sendable, Hashable {
        public var clientID: String
        public var topics: [String]

        public init(clientID: String, topics: [String]) {
            self.clientID = clientID
            self.topics = topics
        }
    }

    /// `log.*`.
    public struct Log: Sendable, Hashable {
        /// `trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`.
        public var level = "info"
        /// `text` (journald-friendly lines) or `json` (one object per line).
        public var format = "text"
    }

    /// `billing.*`: the [verify] points of the CMS rules (``BillingRules``).
    public var billing = BillingRules()
    public var mqtt = MQTT()
    public var database = Database()
    public var ingest = Ingest()
    public var log = Log()
    public var adherence = Adherence()
    public var http = HTTP()
    public var web = Web()
    public var cluster = Cluster()
    /// `thresholds.*`: program defaults; ``ThresholdPolicy/clinicalDefaults`` when the section is absent.
    public var thresholds = ThresholdPolicy.clinicalDefaults
    /// `alerts.*`: trend rules, late data, re-alerting, confirmation and escalation.
    public var alerts = AlertPolicy.clinicalDefaults
    /// `alerts.check_interval_seconds`: seconds between runs of the timer rules (escalation,
    /// confirmation windows). Default 30.
    public var alertCheckIntervalSeconds = 30.0

    /// `delivery.*`: where task events go.
    public struct Delivery: Sendable, Hashable {
        /// Publish every task event to MQTT.
        public var mqttEnabled = true
        /// Topic of task events; `{patient_id}` is replaced by the patient id.
        public var mqttTopic = "alerts/{patient_id}/tasks"
        /// POST every task event here too, when set.
        public var webhookURL: String?
        /// File whose first line is the HMAC-SHA256 key that signs webhook requests.
        public var webhookSecretFile: String?
        /// Seconds before a webhook request is given up and retried.
        public var webhookTimeoutSeconds = 10.0
        /// Longest wait between delivery retries, in seconds (the wait doubles from 1 s up to it).
        public var retryMaxSeconds = 60.0
        /// `delivery.fhir`: push every new reading to an EHR's FHIR server; nil when not configured.
        public var fhir: FHIRPush?
        public init() {}
    }
    public var delivery = Delivery()

    /// `delivery.fhir.*`: the FHIR push channel.
    public struct FHIRPush: Sendable, Hashable {
        /// The EHR's FHIR base URL (transaction Bundles are POSTed there).
        public var baseURL = ""
        /// The EHR's SMART token endpoint.
        public var tokenURL = ""
        /// The client id the EHR assigned to vitalsd.
        public var clientID = ""
        /// PEM file of vitalsd's private key; its public JWK Set is registered with the EHR.
        public var privateKeyFile = ""
        /// `ES384` (P-384 key) or `RS384` (RSA key).
        public var algorithm = "ES384"
        /// The `kid` of the key in the registered JWK Set.
        public var keyID = "vitalsd-1"
        /// Scopes requested with each token.
        public var scope = "system/Observation.write"
        /// Seconds before a request is given up and retried.
        public var timeoutSeconds = 10.0
        /// Observations per transaction Bundle (1-1000).
        public var bundleMaxEntries = 50
        public init() {}
    }

    /// `fhir.*`: the FHIR R4 read API and SMART Backend Services token endpoint.
    public struct FHIR: Sendable, Hashable {
        /// Serve `/fhir/r4`, `/auth/token` and `/.well-known/smart-configuration` on the web listener
        /// (`web.*`, which must be enabled; TLS as the workspace has it).
        public var enabled = false
        /// The URL clients reach vitalsd under, without a trailing slash: links, `fullUrl`s and the
        /// token endpoint's `aud` are built from it.
        public var publicBaseURL = "http://127.0.0.1:8080"
        /// Entries per search page without `_count`.
        public var defaultCount = 100
        /// Largest page (`_count` above it is lowered).
        public var maxCount = 1000
        /// Seconds a bearer token lives (SMART: at most 300).
        public var tokenLifetimeSeconds = 300.0
        /// Seconds to wait for a client's JWK Set URL.
        public var jwksTimeoutSeconds = 5.0
        /// Longest seconds a fetched JWK Set is reused (a shorter Cache-Control max-age wins).
        public var jwksCacheSeconds = 300.0
        public var patientIdentifierSystem = "urn:vitalsd:patient"
        public var deviceIdentifierSystem = "urn:vitalsd:device"
        public var observationIdentifierSystem = "urn:vitalsd:observation"
        public var taskIdentifierSystem = "urn:vitalsd:task"
        public init() {}
    }
    public var fhir = FHIR()

    /// Problems that do not stop the configuration, each naming its key (a threshold whose unit is
    /// ambiguous); `config check` prints them and the daemon logs them at start and reload.
    public var warnings: [ConfigurationError] = []

    public init() {}

    /// The environment variables that override keys, by key.
    public static let environmentOverrides: [(key: String, variable: String)] = [
        ("mqtt.host", "VITALSD_MQTT_HOST"),
        ("cluster.node_name", "VITALSD_CLUSTER_NODE_NAME"),
        ("mqtt.port", "VITALSD_MQTT_PORT"),
        ("mqtt.client_id", "VITALSD_MQTT_CLIENT_ID"),
        ("mqtt.topics", "VITALSD_MQTT_TOPICS"),
        ("mqtt.keepalive_seconds", "VITALSD_MQTT_KEEPALIVE_SECONDS"),
        ("mqtt.max_batch", "VITALSD_MQTT_MAX_BATCH"),
        ("mqtt.username", "VITALSD_MQTT_USERNAME"),
        ("mqtt.password_file", "VITALSD_MQTT_PASSWORD_FILE"),
        ("mqtt.tls_ca_file", "VITALSD_MQTT_TLS_CA_FILE"),
        ("mqtt.tls_cert_file", "VITALSD_MQTT_TLS_CERT_FILE"),
        ("mqtt.tls_key_file", "VITALSD_MQTT_TLS_KEY_FILE"),
        ("mqtt.tls_version", "VITALSD_MQTT_TLS_VERSION"),
        ("database.path", "VITALSD_DATABASE_PATH"),
        ("database.synchronous", "VITALSD_DATABASE_SYNCHRONOUS"),
        ("database.busy_timeout_seconds", "VITALSD_DATABASE_BUSY_TIMEOUT_SECONDS"),
        ("database.checkpoint_interval_seconds", "VITALSD_DATABASE_CHECKPOINT_INTERVAL_SECONDS"),
        ("database.dead_letter_payload_retention_days", "VITALSD_DATABASE_DEAD_LETTER_PAYLOAD_RETENTION_DAYS"),
        ("database.url", "VITALSD_DATABASE_URL"),
        ("database.password_file", "VITALSD_DATABASE_PASSWORD_FILE"),
        ("ingest.max_payload_bytes", "VITALSD_INGEST_MAX_PAYLOAD_BYTES"),
        ("ingest.max_future_skew_seconds", "VITALSD_INGEST_MAX_FUTURE_SKEW_SECONDS"),
        ("log.level", "VITALSD_LOG_LEVEL"),
        ("log.format", "VITALSD_LOG_FORMAT"),
        ("http.enabled", "VITALSD_HTTP_ENABLED"),
        ("http.host", "VITALSD_HTTP_HOST"),
        ("http.port", "VITALSD_HTTP_PORT"),
        ("web.enabled", "VITALSD_WEB_ENABLED"),
        ("web.host", "VITALSD_WEB_HOST"),
        ("web.port", "VITALSD_WEB_PORT"),
        ("web.tls_cert_file", "VITALSD_WEB_TLS_CERT_FILE"),
        ("web.tls_key_file", "VITALSD_WEB_TLS_KEY_FILE"),
        ("adherence.no_data_days", "VITALSD_ADHERENCE_NO_DATA_DAYS"),
        ("adherence.check_interval_seconds", "VITALSD_ADHERENCE_CHECK_INTERVAL_SECONDS"),
        ("billing.device_period_anchor", "VITALSD_BILLING_DEVICE_PERIOD_ANCHOR"),
        ("billing.setup_minimum_days", "VITALSD_BILLING_SETUP_MINIMUM_DAYS"),
        ("alerts.late_after_hours", "VITALSD_ALERTS_LATE_AFTER_HOURS"),
        ("alerts.escalation_after_minutes", "VITALSD_ALERTS_ESCALATION_AFTER_MINUTES"),
        ("alerts.check_interval_seconds", "VITALSD_ALERTS_CHECK_INTERVAL_SECONDS"),
        ("alerts.escalation_backup_user", "VITALSD_ALERTS_ESCALATION_BACKUP_USER"),
        ("alerts.escalation_backup_role", "VITALSD_ALERTS_ESCALATION_BACKUP_ROLE"),
        ("delivery.mqtt_enabled", "VITALSD_DELIVERY_MQTT_ENABLED"),
        ("delivery.mqtt_topic", "VITALSD_DELIVERY_MQTT_TOPIC"),
        ("delivery.webhook_url", "VITALSD_DELIVERY_WEBHOOK_URL"),
        ("delivery.webhook_secret_file", "VITALSD_DELIVERY_WEBHOOK_SECRET_FILE"),
        ("fhir.enabled", "VITALSD_FHIR_ENABLED"),
        ("fhir.public_base_url", "VITALSD_FHIR_PUBLIC_BASE_URL"),
    ]
}

/// A configuration problem, naming the key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Hashable {
    /// The dotted key, e.g. `mqtt.port`, or the file path for file-level problems.
    public var key: String
    public var message: String

    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "\(key): \(message)" }
}

/// Several configuration problems, all reported at once.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigurationError]
    public init(errors: [ConfigurationError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

extension VitalsConfiguration {
    /// Reads a YAML file, applies `VITALSD_*` environment overrides, and validates the result.
    ///
    /// - Parameters:
    ///   - path: the YAML file.
    ///   - environment: the process environment (pass `ProcessInfo.processInfo.environment`).
    /// - Throws: ``ConfigurationErrors`` listing every problem, each naming its key.
    public static func load(path: String, environment: [String: String]) throws -> VitalsConfiguration {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationErrors(errors: [ConfigurationError(key: path, "cannot read the file")])
        }
        return try parse(yaml: text, environment: environment, source: path)
    }

    /// A YAML syntax error on one line: where and what, without the file's text that Yams appends
    /// (a log line or a terminal gets the position, not the whole configuration).
    static func yamlProblem(_ error: any Error) -> String {
        if let e = error as? YamlError {
            switch e {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                return "line \(mark.line), column \(mark.column): \(problem)"
                    + (context.map { " (\($0.text), line \($0.mark.line))" } ?? "")
            default: break
            }
        }
        return String(describing: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
    }

    /// Like ``load(path:environment:)`` for YAML text.
    /// - Parameter source: the file the text came from, named by a YAML syntax error.
    public static func parse(yaml: String, environment: [String: String] = [:], source: String = "(file)") throws -> VitalsConfiguration {
        var reader = ConfigurationReader()
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationErrors(errors: [ConfigurationError(key: source, "not valid YAML: \(yamlProblem(error))")])
        }
        var config = VitalsConfiguration()
        reader.read(root, into: &config, environment: environment)
        reader.validate(config)
        if !reader.errors.isEmpty {
            // A value that came from the environment says so: the operator would search the file in vain.
            let overridden = Dictionary(uniqueKeysWithValues: environmentOverrides.filter { environment[$0.variable] != nil }.map { ($0.key, $0.variable) })
            throw ConfigurationErrors(errors: reader.errors.map { error in
                guard let variable = overridden[error.key] else { return error }
                var marked = error
                marked.message += " (set by the environment variable \(variable))"
                return marked
            })
        }
        config.warnings = reader.warnings + misspeltOverrides(in: environment)
        return config
    }

    /// Variables that look like a misspelt override (`VITALSD_MQTT_HOTS`): within two edits of one
    /// of ``environmentOverrides`` without being one, each as a warning naming the likely variable.
    /// Other `VITALSD_*` names are left alone: the scripts use that prefix for their own knobs.
    static func misspeltOverrides(in environment: [String: String]) -> [ConfigurationError] {
        let known = (environmentOverrides.map(\.variable) + ["VITALSD_CONFIG"]).sorted()
        return environment.keys.filter { $0.hasPrefix("VITALSD_") && !known.contains($0) }.sorted().compactMap { name in
            guard let likely = known.first(where: { editDistance(name, $0, atMost: 2) != nil }) else { return nil }
            return ConfigurationError(key: "environment", "\(name) is not a setting and is ignored; did you mean \(likely)?")
        }
    }

    /// The Levenshtein distance of `a` and `b` when it is at most `limit`, else nil.
    static func editDistance(_ a: String, _ b: String, atMost limit: Int) -> Int? {
        let a = Array(a.utf8), b = Array(b.utf8)
        guard abs(a.count - b.count) <= limit else { return nil }
        // previous[j]: the distance of a's first i - 1 bytes to b's first j.
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count] <= limit ? previous[b.count] : nil
    }

    /// The MQTT password, read from ``MQTT/passwordFile`` (first line), or nil when none is configured.
    /// - Throws: ``ConfigurationError`` when the file cannot be read.
    public func mqttPassword() throws -> String? {
        guard let file = mqtt.passwordFile else { return nil }
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: "mqtt.password_file", "cannot read \(file)")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
    }

    /// `web.tls_cert_file` and `web.tls_key_file` that cannot be read, each naming its key; empty
    /// when both can (or TLS is off). Checked by the daemon at start and by `config check`, not by the
    /// admin commands, which never read them (a key under `/run/credentials/` exists only inside the service).
    public var webTLSFileProblems: [ConfigurationError] {
        [("web.tls_cert_file", web.tlsCertFile), ("web.tls_key_file", web.tlsKeyFile)].compactMap { key, path in
            guard let path, !FileManager.default.isReadableFile(atPath: path) else { return nil }
            return ConfigurationError(key: key, "file \(path) does not exist or is not readable")
        }
    }

    /// The PEM text of `delivery.fhir.private_key_file`, or nil without a FHIR push channel.
    /// - Throws: ``ConfigurationError`` when the file cannot be read.
    public func fhirPushKey() throws -> String? {
        guard let push = delivery.fhir else { return nil }
        guard let data = FileManager.default.contents(atPath: push.privateKeyFile), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: "delivery.fhir.private_key_file", "cannot read \(push.privateKeyFile)")
        }
        return text
    }

    /// The webhook signing secret, read from ``Delivery/webhookSecretFile`` (first line, trimmed), or
    /// nil when none is configured.
    /// - Throws: ``ConfigurationError`` when the file cannot be read or its first line is empty.
    public func webhookSecret() throws -> String? {
        guard let file = delivery.webhookSecretFile else { return nil }
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8),
              let line = text.split(separator: "\n").first?.trimmingCharacters(in: .whitespacesAndNewlines), !line.isEmpty
        else {
            throw ConfigurationError(key: "delivery.webhook_secret_file", "cannot read a secret from \(file)")
        }
        return line
    }
}
