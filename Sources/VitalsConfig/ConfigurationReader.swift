import Foundation
import VitalsDomain
import VitalsFormats
import Yams

/// Walks the YAML tree key by key, so that every error names the key it is about and unknown
/// keys (typos) are refused instead of silently ignored.
struct ConfigurationReader {
    var errors: [ConfigurationError] = []
    /// Problems that do not stop the configuration (`config check` prints them, the daemon logs them).
    var warnings: [ConfigurationError] = []

    private static let sections: [String: Set<String>] = [
        "mqtt": ["host", "port", "client_id", "keepalive_seconds", "topics", "max_batch", "reconnect_min_seconds",
                 "reconnect_max_seconds", "username", "password_file", "tls_ca_file", "tls_cert_file", "tls_key_file",
                 "tls_version", "subscriptions"],
        "database": ["path", "synchronous", "busy_timeout_seconds", "checkpoint_interval_seconds",
                     "dead_letter_payload_retention_days", "url", "password_file"],
        "ingest": ["max_payload_bytes", "max_future_skew_seconds"],
        "cluster": ["node_name", "lease_ttl_seconds", "sessions"],
        "log": ["level", "format"],
        "http": ["enabled", "host", "port"],
        "web": ["enabled", "host", "port", "tls_cert_file", "tls_key_file", "behind_tls_proxy", "session_idle_minutes",
                "session_max_hours", "display_timezone", "page_size", "authentication_requests_per_minute"],
        "adherence": ["no_data_days", "check_interval_seconds", "low_battery_percent"],
        "billing": ["device_period_anchor", "setup_minimum_days", "max_99458_units", "max_99439_units", "max_entry_minutes"],
        "thresholds": ["defaults", "programs"],
        "alerts": ["late_after_hours", "realert_after_hours", "realert_worsening_percent", "confirmation_window_minutes", "escalation_after_minutes",
                   "escalation_repeat_minutes", "escalation_backup_user", "escalation_backup_role", "check_interval_seconds",
                   "rules", "programs"],
        "delivery": ["mqtt_enabled", "mqtt_topic", "webhook_url", "webhook_secret_file", "webhook_timeout_seconds",
                     "retry_max_seconds", "fhir"],
        "fhir": ["enabled", "public_base_url", "default_count", "max_count", "token_lifetime_seconds", "jwks_timeout_seconds",
                 "jwks_cache_seconds", "patient_identifier_system", "device_identifier_system", "observation_identifier_system",
                 "task_identifier_system"],
    ]

    mutating func read(_ root: Node?, into config: inout VitalsConfiguration, environment: [String: String]) {
        var values: [String: Node] = [:]
        var thresholdsNode: Node?
        var alertRuleNodes: [String: Node] = [:]
        var fhirPushNode: Node?
        if let root {
            guard let mapping = root.mapping else {
                errors.append(ConfigurationError(key: "(file)", "top level must be a mapping of sections"))
                return
            }
            for (k, v) in mapping {
                guard let section = k.string, let allowed = Self.sections[section] else {
                    errors.append(ConfigurationError(key: k.string ?? "?", "unknown section"))
                    continue
                }
                if section == "thresholds" {
                    thresholdsNode = v
                    continue
                }
                guard let inner = v.mapping else {
                    if v != Node("") && v.null == nil {
                        errors.append(ConfigurationError(key: section, "must be a mapping"))
                    }
                    continue
                }
                for (ik, iv) in inner {
                    let key = "\(section).\(ik.string ?? "?")"
                    guard let name = ik.string, allowed.contains(name) else {
                        errors.append(ConfigurationError(key: key, "unknown key"))
                        continue
                    }
                    if section == "delivery" && name == "fhir" {
                        fhirPushNode = iv
                        continue
                    }
                    if section == "alerts" && (name == "rules" || name == "programs") {
                        alertRuleNodes[name] = iv
                        continue
                    }
                    values[key] = iv
                }
            }
        }
        for (key, variable) in VitalsConfiguration.environmentOverrides {
            guard let value = environment[variable] else { continue }
            if key == "mqtt.topics" {
                values[key] = Node(value.split(separator: ",").map { Node(String($0).trimmingCharacters(in: .whitespaces)) })
            } else {
                values[key] = Node(value, Tag(.str))
            }
        }

        string(values, "mqtt.host") { config.mqtt.host = $0 }
        int(values, "mqtt.port") { config.mqtt.port = $0 }
        string(values, "mqtt.client_id") { config.mqtt.clientID = $0 }
        int(values, "mqtt.keepalive_seconds") { config.mqtt.keepAliveSeconds = $0 }
        if let node = values["mqtt.topics"] {
            if let list = node.sequence, list.allSatisfy({ $0.string != nil }) {
                config.mqtt.topics = list.compactMap(\.string)
            } else {
                errors.append(ConfigurationError(key: "mqtt.topics", "must be a list of topic filters"))
            }
        }
        if let node = values["mqtt.subscriptions"] {
            config.mqtt.subscriptions = readSubscriptions(node, topics: config.mqtt.topics)
        }
        int(values, "mqtt.max_batch") { config.mqtt.maxBatch = $0 }
        double(values, "mqtt.reconnect_min_seconds") { config.mqtt.reconnectMinSeconds = $0 }
        double(values, "mqtt.reconnect_max_seconds") { config.mqtt.reconnectMaxSeconds = $0 }
        string(values, "mqtt.username") { config.mqtt.username = $0 }
        string(values, "mqtt.password_file") { config.mqtt.passwordFile = $0 }
        string(values, "mqtt.tls_ca_file") { config.mqtt.tlsCAFile = $0 }
        string(values, "mqtt.tls_cert_file") { config.mqtt.tlsCertFile = $0 }
        string(values, "mqtt.tls_key_file") { config.mqtt.tlsKeyFile = $0 }
        string(values, "mqtt.tls_version") { config.mqtt.tlsVersion = $0 }
        string(values, "database.path") { config.database.path = $0 }
        string(values, "database.synchronous") { config.database.synchronous = $0 }
        double(values, "database.busy_timeout_seconds") { config.database.busyTimeoutSeconds = $0 }
        double(values, "database.checkpoint_interval_seconds") { config.database.checkpointIntervalSeconds = $0 }
        optionalInt(values, "database.dead_letter_payload_retention_days") { config.database.deadLetterPayloadRetentionDays = $0 }
        string(values, "database.url") { config.database.url = $0 }
        string(values, "database.password_file") { config.database.passwordFile = $0 }
        string(values, "cluster.node_name") { config.cluster.nodeName = $0 }
        double(values, "cluster.lease_ttl_seconds") { config.cluster.leaseTTLSeconds = $0 }
        if let node = values["cluster.sessions"] { config.cluster.sessions = readSessions(node) }
        int(values, "ingest.max_payload_bytes") { config.ingest.maxPayloadBytes = $0 }
        double(values, "ingest.max_future_skew_seconds") { config.ingest.maxFutureSkewSeconds = $0 }
        string(values, "log.level") { config.log.level = $0 }
        string(values, "log.format") { config.log.format = $0 }
        if let node = values["billing.device_period_anchor"] {
            if let anchor = node.scalar.flatMap({ DevicePeriodAnchor(rawValue: $0.string) }) {
                config.billing.anchor = anchor
            } else {
                errors.append(ConfigurationError(key: "billing.device_period_anchor", "must be rolling_30_days or calendar_month"))
            }
        }
        bool(values, "http.enabled") { config.http.enabled = $0 }
        string(values, "http.host") { config.http.host = $0 }
        int(values, "http.port") { config.http.port = $0 }
        bool(values, "web.enabled") { config.web.enabled = $0 }
        string(values, "web.host") { config.web.host = $0 }
        int(values, "web.port") { config.web.port = $0 }
        string(values, "web.tls_cert_file") { config.web.tlsCertFile = $0 }
        string(values, "web.tls_key_file") { config.web.tlsKeyFile = $0 }
        bool(values, "web.behind_tls_proxy") { config.web.behindTLSProxy = $0 }
        double(values, "web.session_idle_minutes") { config.web.sessionIdleMinutes = $0 }
        double(values, "web.session_max_hours") { config.web.sessionMaxHours = $0 }
        string(values, "web.display_timezone") { config.web.displayTimezone = $0 }
        int(values, "web.page_size") { config.web.pageSize = $0 }
        int(values, "web.authentication_requests_per_minute") { config.web.authenticationRequestsPerMinute = $0 }
        int(values, "adherence.no_data_days") { config.adherence.noDataDays = $0 }
        if values["adherence.low_battery_percent"]?.scalar?.string == "none" {
            config.adherence.lowBatteryPercent = nil
        } else {
            double(values, "adherence.low_battery_percent") { config.adherence.lowBatteryPercent = $0 }
        }
        double(values, "adherence.check_interval_seconds") { config.adherence.checkIntervalSeconds = $0 }
        int(values, "billing.setup_minimum_days") { config.billing.setupMinimumDays = $0 }
        optionalInt(values, "billing.max_99458_units") { config.billing.max99458Units = $0 }
        optionalInt(values, "billing.max_99439_units") { config.billing.max99439Units = $0 }
        int(values, "billing.max_entry_minutes") { config.billing.maxEntryMinutes = $0 }

        if let thresholdsNode {
            config.thresholds = readThresholds(thresholdsNode)
        }

        double(values, "alerts.late_after_hours") { config.alerts.lateAfterSeconds = $0 * 3_600 }
        double(values, "alerts.realert_after_hours") { config.alerts.realertAfterSeconds = $0 * 3_600 }
        double(values, "alerts.realert_worsening_percent") { config.alerts.realertWorseningPercent = $0 }
        double(values, "alerts.confirmation_window_minutes") { config.alerts.confirmationWindowSeconds = $0 * 60 }
        double(values, "alerts.escalation_after_minutes") { config.alerts.escalationAfterSeconds = $0 * 60 }
        if let node = values["alerts.escalation_repeat_minutes"] {
            let numbers = (node.sequence ?? [node]).compactMap { $0.scalar.flatMap { Double($0.string) } }
            if numbers.isEmpty || numbers.count != (node.sequence?.count ?? 1) {
                errors.append(ConfigurationError(key: "alerts.escalation_repeat_minutes", "must be a list of minutes"))
            } else {
                config.alerts.escalationRepeatSeconds = numbers.map { $0 * 60 }
            }
        }
        double(values, "alerts.check_interval_seconds") { config.alertCheckIntervalSeconds = $0 }
        string(values, "alerts.escalation_backup_user") { config.alerts.escalationBackup = .user($0.lowercased()) }
        var backupRole: String?
        string(values, "alerts.escalation_backup_role") { backupRole = $0 }
        if let role = backupRole {
            if values["alerts.escalation_backup_user"] != nil {
                errors.append(ConfigurationError(key: "alerts.escalation_backup_role", "set either escalation_backup_user or escalation_backup_role, not both"))
            } else if ["care_manager", "clinician", "admin"].contains(role) {
                config.alerts.escalationBackup = .role(role)
            } else {
                errors.append(ConfigurationError(key: "alerts.escalation_backup_role", "must be care_manager, clinician or admin"))
            }
        }
        if let node = alertRuleNodes["rules"] {
            config.alerts.defaultRules = readRules(node, key: "alerts.rules")
        }
        if let node = alertRuleNodes["programs"] {
            // A program listed here gets exactly these rules; a program not listed keeps its built-in ones.
            if let programs = node.mapping {
                for (pk, pv) in programs {
                    let key = "alerts.programs.\(pk.string ?? "?")"
                    guard let program = pk.string.flatMap(Program.init(rawValue:)) else {
                        errors.append(ConfigurationError(
                            key: key, "unknown program; expected one of \(Program.allCases.map(\.rawValue).joined(separator: ", "))"))
                        continue
                    }
                    config.alerts.programRules[program] = readRules(pv, key: key)
                }
            } else if node.null == nil {
                errors.append(ConfigurationError(key: "alerts.programs", "must be a mapping by program"))
            }
        }
        bool(values, "delivery.mqtt_enabled") { config.delivery.mqttEnabled = $0 }
        string(values, "delivery.mqtt_topic") { config.delivery.mqttTopic = $0 }
        string(values, "delivery.webhook_url") { config.delivery.webhookURL = $0 }
        string(values, "delivery.webhook_secret_file") { config.delivery.webhookSecretFile = $0 }
        double(values, "delivery.webhook_timeout_seconds") { config.delivery.webhookTimeoutSeconds = $0 }
        double(values, "delivery.retry_max_seconds") { config.delivery.retryMaxSeconds = $0 }
        if let node = fhirPushNode, node.null == nil {
            config.delivery.fhir = readFHIRPush(node)
        }
        if let node = values["fhir.enabled"] {
            switch node.scalar?.string {
            case "true", "yes", "on": config.fhir.enabled = true
            case "false", "no", "off": config.fhir.enabled = false
            default: errors.append(ConfigurationError(key: "fhir.enabled", "must be true or false"))
            }
        }
        string(values, "fhir.public_base_url") { config.fhir.publicBaseURL = $0 }
        int(values, "fhir.default_count") { config.fhir.defaultCount = $0 }
        int(values, "fhir.max_count") { config.fhir.maxCount = $0 }
        double(values, "fhir.token_lifetime_seconds") { config.fhir.tokenLifetimeSeconds = $0 }
        double(values, "fhir.jwks_timeout_seconds") { config.fhir.jwksTimeoutSeconds = $0 }
        double(values, "fhir.jwks_cache_seconds") { config.fhir.jwksCacheSeconds = $0 }
        string(values, "fhir.patient_identifier_system") { config.fhir.patientIdentifierSystem = $0 }
        string(values, "fhir.device_identifier_system") { config.fhir.deviceIdentifierSystem = $0 }
        string(values, "fhir.observation_identifier_system") { config.fhir.observationIdentifierSystem = $0 }
        string(values, "fhir.task_identifier_system") { config.fhir.taskIdentifierSystem = $0 }
    }

    /// `delivery.fhir`: a mapping of base_url, token_url, client_id, private_key_file (required),
    /// algorithm, key_id, scope, timeout_seconds and bundle_max_entries.
    private mutating func readFHIRPush(_ node: Node) -> VitalsConfiguration.FHIRPush? {
        guard let mapping = node.mapping else {
            errors.append(ConfigurationError(key: "delivery.fhir", "must be a mapping"))
            return nil
        }
        var push = VitalsConfiguration.FHIRPush()
        var seen: Set<String> = []
        for (k, v) in mapping {
            let name = k.string ?? "?"
            let key = "delivery.fhir.\(name)"
            seen.insert(name)
            guard let text = v.scalar?.string, !text.isEmpty else {
                errors.append(ConfigurationError(key: key, "must be a non-empty value"))
                continue
            }
            switch name {
            case "base_url": push.baseURL = text
            case "token_url": push.tokenURL = text
            case "client_id": push.clientID = text
            case "private_key_file": push.privateKeyFile = text
            case "algorithm": push.algorithm = text
            case "key_id": push.keyID = text
            case "scope": push.scope = text
            case "timeout_seconds":
                if let d = Double(text), d > 0 { push.timeoutSeconds = d } else { errors.append(ConfigurationError(key: key, "must be a number above 0")) }
            case "bundle_max_entries":
                if let n = Int(text), (1...1000).contains(n) { push.bundleMaxEntries = n } else { errors.append(ConfigurationError(key: key, "must be between 1 and 1000")) }
            default:
                errors.append(ConfigurationError(
                    key: key, "unknown key; expected base_url, token_url, client_id, private_key_file, algorithm, key_id, scope, timeout_seconds or bundle_max_entries"))
            }
        }
        for required in ["base_url", "token_url", "client_id", "private_key_file"] where !seen.contains(required) {
            errors.append(ConfigurationError(key: "delivery.fhir.\(required)", "is required"))
        }
        return push
    }

    /// Reads a list of trend rules: each a mapping of id, kind, type, direction, window_hours, bound,
    /// min_count, level and source.
    private mutating func readRules(_ node: Node, key: String) -> [TrendRule] {
        guard node.null == nil else { return [] }
        guard let list = node.sequence else {
            errors.append(ConfigurationError(key: key, "must be a list of rules"))
            return []
        }
        var rules: [TrendRule] = []
        for (i, item) in list.enumerated() {
            let k = "\(key)[\(i)]"
            guard let fields = item.mapping else {
                errors.append(ConfigurationError(key: k, "must be a mapping"))
                continue
            }
            var text: [String: String] = [:]
            for (fk, fv) in fields {
                let name = fk.string ?? "?"
                guard ["id", "kind", "type", "direction", "window_hours", "bound", "min_count", "level", "source"].contains(name) else {
                    errors.append(ConfigurationError(
                        key: "\(k).\(name)", "unknown key; expected id, kind, type, direction, window_hours, bound, min_count, level or source"))
                    continue
                }
                text[name] = fv.scalar?.string
            }
            var ok = true
            func need<T>(_ name: String, _ expected: String, _ parse: (String) -> T?) -> T? {
                guard let raw = text[name], let value = parse(raw) else {
                    errors.append(ConfigurationError(key: "\(k).\(name)", "must be \(expected)"))
                    ok = false
                    return nil
                }
                return value
            }
            let id = need("id", "a rule name") { $0.isEmpty ? nil : $0 }
            let kind = need("kind", "delta, average or count") { TrendRuleKind(rawValue: $0) }
            let type = need("type", "one of \(VitalType.allCases.map(\.rawValue).joined(separator: ", "))") { VitalType(rawValue: $0) }
            let direction = need("direction", "high or low") { ThresholdDirection(rawValue: $0) }
            let window = need("window_hours", "a number of hours") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
            let bound = need("bound", "a number in the type's canonical unit") { Double($0).flatMap { $0.isFinite ? $0 : nil } }
            var minCount = 1
            if text["min_count"] != nil, let n = need("min_count", "a whole number", { Int($0) }) { minCount = n }
            var level = ThresholdLevel.warning
            if text["level"] != nil, let l = need("level", "warning or critical", { ThresholdLevel(rawValue: $0) }) { level = l }
            guard ok, let id, let kind, let type, let direction, let window, let bound else { continue }
            let rule = TrendRule(
                id: id, kind: kind, type: type, direction: direction, windowSeconds: window * 3_600, bound: bound,
                minimumCount: minCount, level: level, source: text["source"])
            if let problem = rule.problem {
                errors.append(ConfigurationError(key: k, problem))
                continue
            }
            rules.append(rule)
        }
        return rules
    }

    private mutating func string(_ values: [String: Node], _ key: String, _ set: (String) -> Void) {
        guard let node = values[key] else { return }
        guard let s = node.scalar?.string, !s.isEmpty else {
            errors.append(ConfigurationError(key: key, "must be a non-empty string"))
            return
        }
        set(s)
    }

    private mutating func bool(_ values: [String: Node], _ key: String, _ set: (Bool) -> Void) {
        guard let node = values[key] else { return }
        switch node.scalar?.string {
        case "true", "yes", "on": set(true)
        case "false", "no", "off": set(false)
        default: errors.append(ConfigurationError(key: key, "must be true or false"))
        }
    }

    private mutating func int(_ values: [String: Node], _ key: String, _ set: (Int) -> Void) {
        guard let node = values[key] else { return }
        guard let s = node.scalar?.string, let i = Int(s.trimmingCharacters(in: .whitespaces)) else {
            errors.append(ConfigurationError(key: key, "must be a whole number (got '\(node.scalar?.string ?? "a non-scalar")')"))
            return
        }
        set(i)
    }

    /// An integer, or `none` for no value.
    private mutating func optionalInt(_ values: [String: Node], _ key: String, _ set: (Int?) -> Void) {
        guard let node = values[key] else { return }
        if node.scalar?.string == "none" {
            set(nil)
            return
        }
        int(values, key) { set($0) }
    }

    private mutating func double(_ values: [String: Node], _ key: String, _ set: (Double) -> Void) {
        guard let node = values[key] else { return }
        guard let s = node.scalar?.string, let d = Double(s.trimmingCharacters(in: .whitespaces)), d.isFinite else {
            errors.append(ConfigurationError(key: key, "must be a number (got '\(node.scalar?.string ?? "a non-scalar")')"))
            return
        }
        set(d)
    }

    /// `cluster.sessions`: a list of mappings with `client_id` and `topics` (a list of filters).
    private mutating func readSessions(_ node: Node) -> [VitalsConfiguration.Session] {
        guard let list = node.sequence else {
            errors.append(ConfigurationError(key: "cluster.sessions", "must be a list of mappings with client_id and topics"))
            return []
        }
        var result: [VitalsConfiguration.Session] = []
        for (i, item) in list.enumerated() {
            let key = "cluster.sessions[\(i)]"
            guard let mapping = item.mapping else {
                errors.append(ConfigurationError(key: key, "must be a mapping with client_id and topics"))
                continue
            }
            var clientID: String?, topics: [String]?
            for (k, v) in mapping {
                let name = k.string ?? "?"
                switch name {
                case "client_id": clientID = v.scalar?.string
                case "topics":
                    if let list = v.sequence, list.allSatisfy({ $0.string != nil }) {
                        topics = list.compactMap(\.string)
                    } else {
                        errors.append(ConfigurationError(key: "\(key).topics", "must be a list of topic filters"))
                    }
                default:
                    errors.append(ConfigurationError(key: "\(key).\(name)", "unknown key; expected client_id or topics"))
                }
            }
            guard let clientID else {
                errors.append(ConfigurationError(key: "\(key).client_id", "is required"))
                continue
            }
            result.append(VitalsConfiguration.Session(clientID: clientID, topics: topics ?? []))
        }
        return result
    }

    /// `mqtt.subscriptions`: a list of mappings with `topic`, `format`, and optional `device_field`
    /// and `timezone`.
    /// Each topic must be a valid filter and appear once across `mqtt.topics` and the subscriptions.
    private mutating func readSubscriptions(_ node: Node, topics: [String]) -> [VitalsConfiguration.Subscription] {
        var seen = Set(topics)
        guard let list = node.sequence else {
            errors.append(ConfigurationError(key: "mqtt.subscriptions", "must be a list of mappings with topic and format"))
            return []
        }
        var result: [VitalsConfiguration.Subscription] = []
        let formats = MessageFormat.allCases.map(\.rawValue).joined(separator: ", ")
        for (i, item) in list.enumerated() {
            let key = "mqtt.subscriptions[\(i)]"
            guard let mapping = item.mapping else {
                errors.append(ConfigurationError(key: key, "must be a mapping with topic and format"))
                continue
            }
            var topic: String?, format: MessageFormat?, deviceField: String?, timeZone: String?
            for (k, v) in mapping {
                let name = k.string ?? "?"
                let value = v.scalar?.string
                switch name {
                case "topic": topic = value
                case "format":
                    format = value.flatMap(MessageFormat.init(rawValue:))
                    if format == nil { errors.append(ConfigurationError(key: "\(key).format", "must be one of \(formats)")) }
                case "device_field":
                    deviceField = value
                    if value?.isEmpty != false { errors.append(ConfigurationError(key: "\(key).device_field", "must be a non-empty member path")) }
                case "timezone":
                    timeZone = value
                    if value.flatMap(TimeZone.init(identifier:)) == nil {
                        errors.append(ConfigurationError(key: "\(key).timezone", "must be an IANA time zone such as America/Chicago"))
                    }
                default:
                    errors.append(ConfigurationError(key: "\(key).\(name)", "unknown key; expected topic, format, device_field or timezone"))
                }
            }
            guard let topic, !topic.isEmpty else {
                errors.append(ConfigurationError(key: "\(key).topic", "is required"))
                continue
            }
            if !seen.insert(topic).inserted {
                errors.append(ConfigurationError(key: "\(key).topic", "'\(topic)' is subscribed twice; one filter has one format"))
            }
            guard let format else {
                if mapping["format"] == nil { errors.append(ConfigurationError(key: "\(key).format", "is required: one of \(formats)")) }
                continue
            }
            do throws(Rejection) {
                _ = try SubscriptionRoute(topic: topic, format: format, deviceField: deviceField)
            } catch {
                errors.append(ConfigurationError(key: "\(key).topic", error.detail))
                continue
            }
            result.append(.init(topic: topic, format: format, deviceField: deviceField, timeZone: timeZone))
        }
        return result
    }

    /// Reads `thresholds` over the built-in values (``ThresholdPolicy/clinicalDefaults``): each limit
    /// named replaces the built-in one, `none` removes it, and every limit not named keeps its
    /// built-in value, so that adding one limit can never silently drop the others.
    private mutating func readThresholds(_ node: Node) -> ThresholdPolicy {
        var policy = ThresholdPolicy.clinicalDefaults
        guard let mapping = node.mapping else {
            errors.append(ConfigurationError(key: "thresholds", "must be a mapping with 'defaults' and 'programs'"))
            return policy
        }
        for (k, v) in mapping {
            switch k.string {
            case "defaults":
                policy.defaults = readLimitsByType(v, key: "thresholds.defaults", over: policy.defaults)
            case "programs":
                guard let programs = v.mapping else {
                    errors.append(ConfigurationError(key: "thresholds.programs", "must be a mapping by program"))
                    continue
                }
                for (pk, pv) in programs {
                    let key = "thresholds.programs.\(pk.string ?? "?")"
                    guard let program = pk.string.flatMap(Program.init(rawValue:)) else {
                        errors.append(ConfigurationError(
                            key: key, "unknown program; expected one of \(Program.allCases.map(\.rawValue).joined(separator: ", "))"))
                        continue
                    }
                    policy.programs[program] = readLimitsByType(pv, key: key, over: policy.programs[program] ?? [:])
                }
            default:
                errors.append(ConfigurationError(key: "thresholds.\(k.string ?? "?")", "unknown key"))
            }
        }
        return policy
    }

    private mutating func readLimitsByType(
        _ node: Node, key: String, over base: [VitalType: ThresholdLimits]
    ) -> [VitalType: ThresholdLimits] {
        var result = base
        guard let mapping = node.mapping else {
            errors.append(ConfigurationError(key: key, "must be a mapping by vital type"))
            return result
        }
        for (tk, tv) in mapping {
            let typeKey = "\(key).\(tk.string ?? "?")"
            guard let type = tk.string.flatMap(VitalType.init(rawValue:)) else {
                errors.append(ConfigurationError(
                    key: typeKey, "unknown vital type; expected one of \(VitalType.allCases.map(\.rawValue).joined(separator: ", "))"))
                continue
            }
            guard let limits = tv.mapping else {
                errors.append(ConfigurationError(key: typeKey, "must be a mapping of limits"))
                continue
            }
            var l = base[type] ?? ThresholdLimits()
            // `unit` applies to every limit of the type; without it the limits are in the canonical unit.
            var unit: UCUMUnit?
            if let node = limits.first(where: { $0.key.string == "unit" })?.value {
                if let text = node.scalar?.string, let u = UCUMUnit(spelling: text), u.convert(1, to: type.canonicalUnit) != nil {
                    unit = u
                } else {
                    let accepted = UCUMUnit.allCases.filter { $0.convert(1, to: type.canonicalUnit) != nil }.map(\.rawValue)
                    errors.append(ConfigurationError(
                        key: "\(typeKey).unit", "must be a unit of \(type.rawValue): \(accepted.joined(separator: ", "))"))
                    continue
                }
            }
            for (lk, lv) in limits {
                let limitKey = "\(typeKey).\(lk.string ?? "?")"
                switch lk.string {
                case "source":
                    l.source = lv.string
                case "unit":
                    break
                case "critical_high", "warning_high", "warning_low", "critical_low", "recovery_high", "recovery_low":
                    let d: Double?
                    if lv.scalar?.string == "none" {
                        d = nil
                    } else if let s = lv.scalar?.string, let value = Double(s), value.isFinite {
                        d = limitValue(value, unit: unit, type: type, key: limitKey)
                        if d == nil { continue }
                    } else {
                        errors.append(ConfigurationError(
                            key: limitKey, "must be a number in \(unit?.rawValue ?? type.canonicalUnit.rawValue), or none"))
                        continue
                    }
                    switch lk.string {
                    case "critical_high": l.criticalHigh = d
                    case "warning_high": l.warningHigh = d
                    case "warning_low": l.warningLow = d
                    case "recovery_high": l.recoveryHigh = d
                    case "recovery_low": l.recoveryLow = d
                    default: l.criticalLow = d
                    }
                default:
                    errors.append(ConfigurationError(
                        key: limitKey,
                        "unknown key; expected critical_high, warning_high, warning_low, critical_low, recovery_high, recovery_low, unit or source"))
                }
            }
            result[type] = l
        }
        return result
    }

    /// A configured limit in the type's canonical unit, rounded to 6 decimals as `threshold set`
    /// rounds, or nil (with an error) when it is implausible for the type.
    ///
    /// Without a unit, a value that is not plausible in the canonical unit is refused with the unit
    /// it would fit (3.9 for glucose: "if it is mmol/L, write unit: mmol/L"), and a value plausible
    /// in both the canonical unit and another unit of the type (body weight 250: kg or pounds?) is a
    /// warning asking for the unit.
    private mutating func limitValue(_ value: Double, unit: UCUMUnit?, type: VitalType, key: String) -> Double? {
        let canonicalUnit = type.canonicalUnit
        let range = type.plausibleRange
        let rangeText = "\(Observation.format(range.lowerBound))–\(Observation.format(range.upperBound)) \(canonicalUnit.rawValue)"
        if let unit {
            let converted = ((unit.convert(value, to: canonicalUnit) ?? value) * 1_000_000).rounded() / 1_000_000
            guard range.contains(converted) else {
                errors.append(ConfigurationError(
                    key: key, "\(Observation.format(value)) \(unit.rawValue) = \(Observation.format(converted)) \(canonicalUnit.rawValue) is outside the plausible range of \(type.rawValue) (\(rangeText))"))
                return nil
            }
            return converted
        }
        // Other units of the type in which this number would be a plausible value.
        let alternatives = UCUMUnit.allCases.filter { $0 != canonicalUnit }.compactMap { u -> (UCUMUnit, Double)? in
            guard let c = u.convert(value, to: canonicalUnit), range.contains(c) else { return nil }
            return (u, (c * 100).rounded() / 100)
        }
        guard range.contains(value) else {
            let hint = alternatives.first.map {
                "; if it is \($0.0.rawValue) (\(Observation.format(value)) \($0.0.rawValue) = \(Observation.format($0.1)) \(canonicalUnit.rawValue)), write unit: \"\($0.0.rawValue)\""
            } ?? ""
            errors.append(ConfigurationError(
                key: key, "\(Observation.format(value)) is outside the plausible range of \(type.rawValue) in \(canonicalUnit.rawValue) (\(rangeText))\(hint)"))
            return nil
        }
        if let (u, c) = alternatives.first {
            warnings.append(ConfigurationError(
                key: key, "\(Observation.format(value)) is read as \(Observation.format(value)) \(canonicalUnit.rawValue), but as \(u.rawValue) (\(Observation.format(c)) \(canonicalUnit.rawValue)) it would be plausible too: add unit: \"\(canonicalUnit.rawValue)\" or unit: \"\(u.rawValue)\" to this type"))
        }
        return value
    }

    mutating func validate(_ c: VitalsConfiguration) {
        func check(_ ok: Bool, _ key: String, _ message: String) {
            if !ok { errors.append(ConfigurationError(key: key, message)) }
        }
        check((1...65535).contains(c.mqtt.port), "mqtt.port", "must be between 1 and 65535 (got \(c.mqtt.port))")
        check(!c.mqtt.clientID.isEmpty && c.mqtt.clientID.utf8.count <= 65535 && !c.mqtt.clientID.contains(where: \.isWhitespace),
              "mqtt.client_id", "must be a non-empty id without spaces; keep it the same across restarts")
        check((5...65535).contains(c.mqtt.keepAliveSeconds), "mqtt.keepalive_seconds", "must be between 5 and 65535 seconds")
        check((1...10_000).contains(c.mqtt.maxBatch), "mqtt.max_batch", "must be between 1 and 10000")
        check(c.mqtt.reconnectMinSeconds > 0, "mqtt.reconnect_min_seconds", "must be greater than 0")
        check(c.mqtt.reconnectMaxSeconds >= c.mqtt.reconnectMinSeconds && c.mqtt.reconnectMaxSeconds <= 3_600, "mqtt.reconnect_max_seconds",
              "must be at least mqtt.reconnect_min_seconds and at most 3600 seconds")
        check(!c.mqtt.allTopicFilters.isEmpty, "mqtt.topics", "must list at least one topic filter (here or in mqtt.subscriptions)")
        for (i, topic) in c.mqtt.topics.enumerated() {
            do throws(Rejection) {
                _ = try DeviceTopicFilter(topic)
            } catch {
                errors.append(ConfigurationError(key: "mqtt.topics[\(i)]", error.detail))
            }
        }
        check(c.mqtt.passwordFile == nil || c.mqtt.username != nil, "mqtt.password_file", "needs mqtt.username")
        // TLS (failure-modes F8): files must exist, a client certificate needs its key and a CA.
        for (key, path) in [("mqtt.tls_ca_file", c.mqtt.tlsCAFile), ("mqtt.tls_cert_file", c.mqtt.tlsCertFile),
                            ("mqtt.tls_key_file", c.mqtt.tlsKeyFile)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                errors.append(ConfigurationError(key: key, "file \(path) does not exist or is not readable"))
            } else if let path, let problem = PEMFile.problem(path: path, key: key) {
                errors.append(ConfigurationError(key: key, problem))
            }
        }
        check((c.mqtt.tlsCertFile == nil) == (c.mqtt.tlsKeyFile == nil), c.mqtt.tlsCertFile == nil ? "mqtt.tls_cert_file" : "mqtt.tls_key_file",
              "mqtt.tls_cert_file and mqtt.tls_key_file go together")
        check(c.mqtt.tlsCertFile == nil || c.mqtt.tlsCAFile != nil, "mqtt.tls_ca_file",
              "is required when mqtt.tls_cert_file is set: without a CA the broker cannot be verified")
        check(["tlsv1.2", "tlsv1.3"].contains(c.mqtt.tlsVersion), "mqtt.tls_version", "must be tlsv1.2 or tlsv1.3")
        check(["full", "normal"].contains(c.database.synchronous), "database.synchronous", "must be 'full' or 'normal'")
        // The URL's parts are checked where the PostgreSQL settings are made (`config check` reports them).
        check(c.database.url.map { $0.hasPrefix("postgres://") || $0.hasPrefix("postgresql://") } ?? true, "database.url",
              "must be a postgres:// URL (leave it out for SQLite at database.path)")
        check(c.database.passwordFile == nil || c.database.url != nil, "database.password_file", "needs database.url")
        check((2...300).contains(c.cluster.leaseTTLSeconds), "cluster.lease_ttl_seconds", "must be between 2 and 300 seconds")
        check(c.cluster.nodeName.map { !$0.isEmpty && $0.utf8.count <= 128 && !$0.contains(where: \.isWhitespace) } ?? true,
              "cluster.node_name", "must be 1-128 characters without spaces")
        check(c.cluster.sessions.isEmpty || c.database.url != nil, "cluster.sessions",
              "needs database.url: on SQLite one daemon owns the one session mqtt.client_id")
        check(c.cluster.sessions.isEmpty || c.mqtt.subscriptions.isEmpty, "cluster.sessions",
              "cannot be combined with mqtt.subscriptions yet: the sessions subscribe canonical-format topics only")
        var sessionIDs = Set<String>()
        var sessionFilters: [(filter: DeviceTopicFilter, session: Int)] = []
        for (i, session) in c.cluster.sessions.enumerated() {
            let key = "cluster.sessions[\(i)]"
            check(!session.clientID.isEmpty && session.clientID.utf8.count <= 65535 && !session.clientID.contains(where: \.isWhitespace),
                  "\(key).client_id", "must be a non-empty id without spaces")
            check(sessionIDs.insert(session.clientID).inserted, "\(key).client_id", "'\(session.clientID)' names two sessions")
            check(!session.topics.isEmpty, "\(key).topics", "must list at least one topic filter")
            for (j, topic) in session.topics.enumerated() {
                let filter: DeviceTopicFilter
                do throws(Rejection) {
                    filter = try DeviceTopicFilter(topic)
                } catch {
                    errors.append(ConfigurationError(key: "\(key).topics[\(j)]", error.detail))
                    continue
                }
                // One device's readings travel one session, or two nodes ingest them and their order
                // per device is lost: no topic may match filters of two sessions.
                if let other = sessionFilters.first(where: { $0.session != i && $0.filter.overlaps(filter) }) {
                    errors.append(ConfigurationError(key: "\(key).topics[\(j)]", """
                        '\(topic)' overlaps '\(other.filter.filter)' of cluster.sessions[\(other.session)]: a topic matching both \
                        would be ingested by two sessions
                        """))
                }
                sessionFilters.append((filter, i))
            }
        }
        // Upper bounds keep every duration far from the range limits of the integers it becomes
        // (milliseconds since 1970, SQLite's busy timeout); a value outside them is a typo.
        check((0...3_600).contains(c.database.busyTimeoutSeconds), "database.busy_timeout_seconds", "must be between 0 and 3600 seconds")
        check((1...86_400).contains(c.database.checkpointIntervalSeconds), "database.checkpoint_interval_seconds",
              "must be between 1 and 86400 seconds")
        check((c.database.deadLetterPayloadRetentionDays ?? 1) >= 1, "database.dead_letter_payload_retention_days",
              "must be at least 1 day, or none")
        check((64...16_777_216).contains(c.ingest.maxPayloadBytes), "ingest.max_payload_bytes", "must be between 64 bytes and 16 MiB")
        check((0...86_400).contains(c.ingest.maxFutureSkewSeconds), "ingest.max_future_skew_seconds", "must be between 0 and 86400 seconds")
        check((1...65535).contains(c.http.port), "http.port", "must be between 1 and 65535 (got \(c.http.port))")
        check(!c.http.enabled || c.http.port != c.mqtt.port || c.http.host != c.mqtt.host, "http.port", "must differ from mqtt.port")
        validateWeb(c)
        check((1...365).contains(c.adherence.noDataDays), "adherence.no_data_days", "must be between 1 and 365")
        check((0...100).contains(c.adherence.lowBatteryPercent ?? 0), "adherence.low_battery_percent", "must be between 0 and 100, or none")
        check((1...86_400).contains(c.adherence.checkIntervalSeconds), "adherence.check_interval_seconds", "must be between 1 and 86400 seconds")
        check((2...30).contains(c.billing.setupMinimumDays), "billing.setup_minimum_days", "must be between 2 and 30")
        check((c.billing.max99458Units ?? 0) >= 0, "billing.max_99458_units", "must not be negative")
        check((c.billing.max99439Units ?? 0) >= 0, "billing.max_99439_units", "must not be negative")
        check((1...600).contains(c.billing.maxEntryMinutes), "billing.max_entry_minutes", "must be between 1 and 600")
        check(["text", "json"].contains(c.log.format), "log.format", "must be text or json")
        check(["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(c.log.level),
              "log.level", "must be one of trace, debug, info, notice, warning, error, critical")
        // Up to ten million hours: replays of years-old data (scripts/demo) raise it to a million.
        check((60...10_000_000 * 3_600).contains(c.alerts.lateAfterSeconds), "alerts.late_after_hours",
              "must be between 1 minute (0.0167 h) and 10000000 hours")
        check((0...30 * 86_400).contains(c.alerts.realertAfterSeconds), "alerts.realert_after_hours", "must be between 0 and 720 hours")
        check((0...1_000).contains(c.alerts.realertWorseningPercent), "alerts.realert_worsening_percent", "must be between 0 and 1000")
        check((60...86_400).contains(c.alerts.confirmationWindowSeconds), "alerts.confirmation_window_minutes",
              "must be between 1 and 1440 minutes")
        check((60...7 * 86_400).contains(c.alerts.escalationAfterSeconds), "alerts.escalation_after_minutes",
              "must be between 1 and 10080 minutes")
        check(c.alerts.escalationRepeatSeconds.allSatisfy { (60...7 * 86_400).contains($0) }, "alerts.escalation_repeat_minutes",
              "each interval must be between 1 and 10080 minutes")
        check((1...3_600).contains(c.alertCheckIntervalSeconds), "alerts.check_interval_seconds", "must be between 1 and 3600 seconds")
        // The same rule may appear under several programs only if it is the same rule.
        let byID = Dictionary(grouping: c.alerts.defaultRules + c.alerts.programRules.values.joined(), by: \.id)
        for (id, rules) in byID.sorted(by: { $0.key < $1.key }) where Set(rules).count > 1 {
            errors.append(ConfigurationError(key: "alerts", "rule id '\(id)' names two different rules"))
        }
        if c.delivery.mqttEnabled {
            check(!c.delivery.mqttTopic.contains("#") && !c.delivery.mqttTopic.contains("+"), "delivery.mqtt_topic",
                  "must not contain the wildcards + or #")
        }
        if let url = c.delivery.webhookURL {
            let parsed = URL(string: url)
            check(parsed?.scheme == "https" || parsed?.scheme == "http", "delivery.webhook_url", "must be an http:// or https:// URL")
            check(c.delivery.webhookSecretFile != nil, "delivery.webhook_secret_file",
                  "is required with delivery.webhook_url: every request is signed with HMAC-SHA256")
        }
        if let path = c.delivery.webhookSecretFile {
            if !FileManager.default.isReadableFile(atPath: path) {
                errors.append(ConfigurationError(key: "delivery.webhook_secret_file", "file \(path) does not exist or is not readable"))
            } else {
                // The same reading as at start-up, so that `config check` refuses what `run` would.
                do { _ = try c.webhookSecret() } catch let error as ConfigurationError { errors.append(error) } catch {}
            }
        }
        if let push = c.delivery.fhir {
            for (key, url) in [("delivery.fhir.base_url", push.baseURL), ("delivery.fhir.token_url", push.tokenURL)] where !url.isEmpty {
                let parsed = URL(string: url)
                check(parsed?.scheme == "https" || parsed?.scheme == "http", key, "must be an http:// or https:// URL")
            }
            check(["ES384", "RS384"].contains(push.algorithm), "delivery.fhir.algorithm", "must be ES384 or RS384")
            if !push.privateKeyFile.isEmpty {
                check(FileManager.default.isReadableFile(atPath: push.privateKeyFile), "delivery.fhir.private_key_file",
                      "file \(push.privateKeyFile) does not exist or is not readable")
            }
        }
        check(!c.fhir.enabled || c.web.enabled, "fhir.enabled",
              "the FHIR API is served on the web listener: set web.enabled: true (and TLS for a non-loopback web.host)")
        let publicURL = URL(string: c.fhir.publicBaseURL)
        check((publicURL?.scheme == "https" || publicURL?.scheme == "http") && !c.fhir.publicBaseURL.hasSuffix("/"),
              "fhir.public_base_url", "must be an http:// or https:// URL without a trailing slash")
        check((1...1000).contains(c.fhir.maxCount), "fhir.max_count", "must be between 1 and 1000")
        check((1...c.fhir.maxCount).contains(c.fhir.defaultCount), "fhir.default_count", "must be between 1 and fhir.max_count")
        check((1...300).contains(c.fhir.tokenLifetimeSeconds), "fhir.token_lifetime_seconds",
              "must be between 1 and 300 (SMART: tokens live at most five minutes)")
        check(c.fhir.jwksTimeoutSeconds > 0 && c.fhir.jwksTimeoutSeconds <= 60, "fhir.jwks_timeout_seconds", "must be greater than 0 and at most 60 seconds")
        check((0...7 * 86_400).contains(c.fhir.jwksCacheSeconds), "fhir.jwks_cache_seconds", "must be between 0 and 604800 seconds")
        check(c.delivery.webhookTimeoutSeconds > 0 && c.delivery.webhookTimeoutSeconds <= 300, "delivery.webhook_timeout_seconds",
              "must be greater than 0 and at most 300 seconds")
        check((1...86_400).contains(c.delivery.retryMaxSeconds), "delivery.retry_max_seconds", "must be between 1 and 86400 seconds")
        validateThresholds(c.thresholds.defaults, key: "thresholds.defaults")
        for (program, limits) in c.thresholds.programs {
            validateThresholds(limits, key: "thresholds.programs.\(program.rawValue)")
        }
    }

    /// The workspace listener: a port of its own, TLS files that exist and go together, and never plain
    /// HTTP on an address other than loopback unless a TLS proxy is in front (PHI crosses this listener).
    mutating func validateWeb(_ c: VitalsConfiguration) {
        let w = c.web
        func check(_ ok: Bool, _ key: String, _ message: String) {
            if !ok { errors.append(ConfigurationError(key: key, message)) }
        }
        check((1...65535).contains(w.port), "web.port", "must be between 1 and 65535 (got \(w.port))")
        if w.enabled {
            check(!c.http.enabled || w.port != c.http.port, "web.port", "must differ from http.port")
            check(w.port != c.mqtt.port || !["127.0.0.1", "localhost"].contains(c.mqtt.host), "web.port", "must differ from mqtt.port")
        }
        // Whether the TLS files can be read is checked where they are used (``VitalsConfiguration/webTLSFileProblems``,
        // by the daemon and `config check`): a key under /run/credentials/ exists only inside the service,
        // and the admin commands, which never read it, must still run.
        check((w.tlsCertFile == nil) == (w.tlsKeyFile == nil), w.tlsCertFile == nil ? "web.tls_cert_file" : "web.tls_key_file",
              "web.tls_cert_file and web.tls_key_file go together")
        check(!w.enabled || w.isLoopback || w.tlsCertFile != nil || w.behindTLSProxy, "web.host",
              "refusing to serve the workspace on \(w.host) without TLS: set web.tls_cert_file and web.tls_key_file, "
                  + "or web.behind_tls_proxy: true when a TLS proxy in front forwards to this address")
        check((1...1440).contains(w.sessionIdleMinutes), "web.session_idle_minutes", "must be between 1 and 1440 minutes")
        check(w.sessionMaxHours * 60 >= w.sessionIdleMinutes && w.sessionMaxHours <= 168, "web.session_max_hours",
              "must be at least web.session_idle_minutes and at most 168 hours")
        check(TimeZone(identifier: w.displayTimezone) != nil, "web.display_timezone", "must be an IANA time zone such as America/Chicago")
        check((10...200).contains(w.pageSize), "web.page_size", "must be between 10 and 200")
        check((1...10_000).contains(w.authenticationRequestsPerMinute), "web.authentication_requests_per_minute",
              "must be between 1 and 10000")
    }

    /// Limits must be ordered: critical_low ≤ warning_low < warning_high ≤ critical_high, and inside
    /// the type's plausible range, or a breach could never be reached or could never clear.
    mutating func validateThresholds(_ byType: [VitalType: ThresholdLimits], key: String) {
        for (type, l) in byType {
            let k = "\(key).\(type.rawValue)"
            for (name, value) in [("critical_high", l.criticalHigh), ("warning_high", l.warningHigh),
                                  ("warning_low", l.warningLow), ("critical_low", l.criticalLow)] {
                if let value, !type.plausibleRange.contains(value) {
                    errors.append(ConfigurationError(
                        key: "\(k).\(name)",
                        "\(Observation.format(value)) is outside the plausible range of \(type.rawValue) in \(type.canonicalUnit.rawValue)"))
                }
            }
            if let problem = l.orderingProblem {
                // Name the limit at fault when the problem names one.
                let field = ["warning_high", "warning_low"].first { problem.hasPrefix($0) }
                errors.append(ConfigurationError(key: field.map { "\(k).\($0)" } ?? k, problem))
            }
        }
    }
}
