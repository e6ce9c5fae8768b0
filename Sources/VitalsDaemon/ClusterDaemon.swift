import Foundation
import Hummingbird
import Logging
import MQTTClient
import PostgresNIO
import ServiceLifecycle
import UnixSignals
import VitalsConfig
import VitalsDomain
import VitalsFormats
import VitalsPostgres
import VitalsStore

extension Daemon {
    /// The settings `database.url` and `database.password_file` name, or nil without `database.url`.
    /// - Throws: ``ConfigurationErrors`` keyed by the setting that is wrong (never showing a password).
    public static func postgresSettings(_ config: VitalsConfiguration) throws -> PostgresSettings? {
        guard let url = config.database.url else { return nil }
        do {
            return try PostgresSettings(url: url, passwordFile: config.database.passwordFile)
        } catch {
            let key = [.passwordFileUnreadable, .passwordFileEmpty].contains(error.code) ? "database.password_file" : "database.url"
            throw ConfigurationErrors(errors: [ConfigurationError(key: key, error.message)])
        }
    }

    /// This node's name: `cluster.node_name`, else the host name.
    public static func nodeName(_ config: VitalsConfiguration) -> String {
        config.cluster.nodeName ?? ProcessInfo.processInfo.hostName
    }

    /// The lease timings of a configuration: `cluster.lease_ttl_seconds`, renewed every sixth of it,
    /// acknowledging stopped a third of it before it could expire, a standby trying every sixth.
    public static func leaseTiming(_ config: VitalsConfiguration) throws -> LeaseTiming {
        let ttl = Duration.milliseconds(Int64(config.cluster.leaseTTLSeconds * 1000))
        return try LeaseTiming(ttl: ttl, renewInterval: ttl / 6, safetyMargin: ttl / 3, standbyRetry: ttl / 6)
    }

    /// The MQTT sessions of a configuration, each with its broker settings and routes:
    /// `cluster.sessions`, or else the one session `mqtt.client_id` with `mqtt.topics` and `mqtt.subscriptions`.
    /// - Throws: ``ConfigurationError`` when the MQTT password cannot be read; ``Rejection`` for a bad filter.
    public static func sessions(_ config: VitalsConfiguration) throws -> [(mqtt: MQTTClientConfiguration, routes: [SubscriptionRoute])] {
        let base = try mqttConfiguration(config)
        guard !config.cluster.sessions.isEmpty else { return [(base, try config.mqtt.routes())] }
        return try config.cluster.sessions.map { session in
            var mqtt = base
            mqtt.clientID = session.clientID
            mqtt.topics = session.topics
            return (mqtt, try session.topics.map { try SubscriptionRoute(topic: $0) })
        }
    }

    /// The daemon on PostgreSQL, built and not yet running.
    public struct ClusterComposition: Sendable {
        /// Every service; runs until SIGTERM or SIGINT (or ``ServiceGroup/triggerGracefulShutdown()``).
        public let group: ServiceGroup
        /// This node's name.
        public let node: String
        /// One service per MQTT session, owner or standby.
        public let sessions: [SessionIngestService]
        public let metrics: VitalsMetrics
    }

    /// Builds a node of the daemon on PostgreSQL (`database.url`): each MQTT session's lease and
    /// ingest, and the operations endpoints (`/healthz`, `/readyz` with each session's role, `/metrics`).
    ///
    /// Runs on PostgreSQL so far: the ingest of readings, device reports and dead letters with the
    /// clinical rules in the batch's transaction, the alert timers (escalation, confirmation windows;
    /// one run at a time across nodes), the routine checks (days of data, no data, silent devices, low
    /// batteries) and maintenance (one node's run per interval), and task-event delivery (MQTT,
    /// webhook; each channel by one node). Not yet: the workspace, the FHIR API and FHIR push; the
    /// node logs that at start.
    /// - Throws: ``ConfigurationErrors`` (exit 2) for settings that are wrong, a schema that needs
    ///   `vitalsd db migrate` or was migrated by a newer build; ``DatabaseUnavailable`` (exit 1)
    ///   when the server cannot be reached.
    public static func composeCluster(
        config: VitalsConfiguration, clock: any WallClock = SystemWallClock(), logger: Logger, signals: Bool = true
    ) async throws -> ClusterComposition {
        MosquittoLibrary.initialize()
        logWarnings(config, logger: logger)
        guard let settings = try postgresSettings(config) else { throw ConfigurationErrors(errors: [ConfigurationError(key: "database.url", "is required")]) }
        let status: PostgresDatabaseStatus
        do {
            status = try await PostgresAdmin.status(settings, logger: logger)
        } catch {
            throw DatabaseUnavailable(path: settings.description, reason: error.description, key: "database.url")
        }
        if !status.unknown.isEmpty {
            throw ConfigurationErrors(errors: [ConfigurationError(key: "database.url", """
                the schema holds migrations this build does not know (\(status.unknown.joined(separator: ", "))): run a newer vitalsd
                """)])
        }
        if !status.pending.isEmpty {
            throw ConfigurationErrors(errors: [ConfigurationError(key: "database.url", """
                the schema needs \(status.pending.count) migration\(status.pending.count == 1 ? "" : "s") \
                (\(status.pending.joined(separator: ", "))): run vitalsd db migrate first
                """)])
        }
        if config.http.enabled { try HTTPEndpoints.checkPortFree(host: config.http.host, port: config.http.port) }
        let node = nodeName(config)
        let timing = try leaseTiming(config)
        var clientConfiguration = settings.clientConfiguration(maximumConnections: 4 + 2 * max(1, config.cluster.sessions.count))
        // A node frozen (SIGSTOP, a stalled VM) inside a batch's transaction holds the lease row's
        // share lock: the server ends such a transaction after one lease time, so that a standby's
        // takeover waits at most that long.
        clientConfiguration.options.additionalStartupParameters = [
            ("idle_in_transaction_session_timeout", "\(Int(config.cluster.leaseTTLSeconds * 1000))"),
        ]
        let client = PostgresClient(configuration: clientConfiguration, backgroundLogger: logger)
        let leases = SessionLeases(client: client, logger: logger)
        let metrics = VitalsMetrics()
        let incarnation = TaskEventMessage.newIncarnation()
        let pipeline = pipeline(config)
        var nodeLogger = logger
        nodeLogger[metadataKey: "node"] = "\(node)"
        let configured = try sessions(config)
        let membership = ClusterMembership(
            node: node, sessionCount: configured.count, leases: leases, ttl: timing.ttl, interval: timing.renewInterval,
            logger: nodeLogger)
        let sessions = configured.map { session in
            SessionIngestService(
                mqtt: session.mqtt, routes: session.routes, pipeline: pipeline,
                holder: SessionLeaseHolder(
                    leases: leases, session: session.mqtt.clientID, node: node, timing: timing, clock: ContinuousClock(),
                    logger: nodeLogger, membership: membership),
                client: client, clock: clock, incarnation: incarnation, metrics: metrics,
                commitDeadline: max(.seconds(30), timing.ttl * 5), logger: nodeLogger)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: client, successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        // Task events: each channel delivered by one node, the holder of its lease.
        let targets = try deliveryTargets(config)
        let outbox = PostgresOutbox(client: client, logger: nodeLogger)
        let deliveries = targets.channels.map { channel in
            ChannelDeliveryService(
                channel: channel,
                holder: SessionLeaseHolder(
                    leases: leases, session: PostgresOutbox.leaseName(channel: channel), node: node, timing: timing,
                    clock: ContinuousClock(), logger: nodeLogger),
                outbox: outbox, targets: targets, metrics: metrics, logger: nodeLogger)
        }
        // Before anything else touches the database or the broker, with a client of its own (the
        // node's client runs once, in the service group): refuse a name another running node has,
        // then start each new delivery channel at the newest event, so that nothing raised from
        // now on is skipped and no history is replayed.
        let channels = targets.channels, now = clock.now(), ttl = timing.ttl
        let twin: Bool
        do {
            twin = try await PostgresAdmin.withClient(settings, logger: logger) { opening in
                let nodes = SessionLeases(client: opening, logger: logger)
                if try await nodes.nameInUse(node: node, ttl: ttl) { return true }
                let outbox = PostgresOutbox(client: opening, logger: logger)
                for channel in channels { try await outbox.open(channel: channel, now: now) }
                return false
            }
        } catch {
            throw DatabaseUnavailable(path: settings.description, reason: PostgresUnavailable(settings, error).description, key: "database.url")
        }
        if twin {
            throw ConfigurationErrors(errors: [ConfigurationError(key: "cluster.node_name", """
                another running node is named \(node): its heartbeat went on while this one waited a lease time; give each \
                node a name of its own (cluster.node_name or VITALSD_CLUSTER_NODE_NAME)
                """)])
        }
        // Escalation and confirmation windows: every node's timer, one run at a time across nodes.
        let timers = PostgresTimers(client: client, logger: nodeLogger)
        let policy = config.alerts
        services.append(.init(
            service: AlertTimerService(
                interval: .milliseconds(Int(config.alertCheckIntervalSeconds * 1000)), metrics: metrics, clock: clock,
                logger: nodeLogger
            ) { now in
                (try await timers.run(policy: policy, now: now, incarnation: incarnation), try await timers.waitingForAcknowledgement())
            },
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        // Routine checks and maintenance: every node's timer, one node's run per interval
        // (``PostgresTimerRuns``); a run that outlasts its interval decides each patient after the other.
        let routineChecks = PostgresRoutineChecks(client: client, logger: nodeLogger)
        let timerLogger = nodeLogger
        let routineInterval = Duration.milliseconds(Int(config.adherence.checkIntervalSeconds * 1000))
        let (billing, adherence) = (config.billing, config.adherence)
        services.append(.init(
            service: RoutineTaskService(interval: routineInterval, clock: clock, logger: nodeLogger) { now in
                guard try await PostgresTimerRuns.claim(
                    client, job: "routine", node: node, now: now, spacing: routineInterval * 0.9, logger: timerLogger) else { return nil }
                return try await routineChecks.run(
                    rules: billing, noDataDays: adherence.noDataDays, lowBatteryPercent: adherence.lowBatteryPercent, now: now,
                    incarnation: incarnation)
            },
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        let maintenance = PostgresMaintenance(client: client, logger: nodeLogger)
        let maintenanceInterval = Duration.milliseconds(Int(config.database.checkpointIntervalSeconds * 1000))
        let retentionDays = config.database.deadLetterPayloadRetentionDays
        services.append(.init(
            service: MaintenanceService(interval: maintenanceInterval, logger: nodeLogger) { now in
                guard try await PostgresTimerRuns.claim(
                    client, job: "maintenance", node: node, now: now, spacing: maintenanceInterval * 0.9, logger: timerLogger)
                else { return nil }
                var purged = 0
                if let days = retentionDays {
                    purged = try await maintenance.purgeDeadLetterPayloads(before: now.addingTimeInterval(-Double(days) * 86_400))
                }
                return MaintenanceService.Summary(
                    purgedPayloads: purged,
                    purgedOutbox: try await maintenance.purgeDeliveredEvents(channels: channels, olderThanDays: 30, now: now))
            },
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        for delivery in deliveries {
            services.append(.init(service: delivery, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(service: MembershipService(membership: membership), successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup))
        for session in sessions {
            services.append(.init(service: session, successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        if config.http.enabled {
            services.append(.init(
                service: HTTPEndpoints.clusterApplication(
                    host: config.http.host, port: config.http.port, membership: membership, sessions: sessions,
                    deliveries: deliveries, client: client, metrics: metrics, logger: logger),
                successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        // Last, so that it is the first told to shut down. Ready once the database answered (a standby
        // is ready too); the watchdog guards the MQTT loops of the sessions this node owns.
        services.append(.init(
            service: SystemdService(
                notifier: SystemdNotifier(), readyStatus: "node \(node) on PostgreSQL", isReady: { membership.hasCounted },
                isAlive: { interval in sessions.allSatisfy { $0.loopIsAlive(within: interval) } }, logger: nodeLogger),
            successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore))
        var groupConfig = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [], logger: logger)
        groupConfig.maximumGracefulShutdownDuration = .seconds(8)
        groupConfig.maximumCancellationDuration = nil
        nodeLogger.notice(
            "running on PostgreSQL: ingest, escalation, routine checks, maintenance and task-event delivery; the workspace, FHIR API and FHIR push run on SQLite only so far",
            metadata: ["mqtt.sessions": "\(sessions.map(\.session).joined(separator: ","))"])
        return ClusterComposition(group: ServiceGroup(configuration: groupConfig), node: node, sessions: sessions, metrics: metrics)
    }
}

/// The node's heartbeat as a service of the group: cancelled at graceful shutdown, when it leaves
/// the table of nodes alive.
struct MembershipService: Service {
    let membership: ClusterMembership

    func run() async throws {
        await cancelWhenGracefulShutdown { await membership.run() }
    }
}

extension HTTPEndpoints {
    /// Why a node on PostgreSQL is not ready, or an empty list when it is: the database answers,
    /// and each session this node owns is connected and subscribed with no failing commit. A standby
    /// is ready: it serves and waits.
    /// - Returns: the problems, and one line per session: `session <id>: owner (epoch N)` or `standby`.
    public static func clusterReadiness(sessions: [SessionIngestService], client: PostgresClient, logger: Logger) async -> (problems: [String], roles: [String]) {
        var problems: [String] = []
        var roles: [String] = []
        do {
            // Bounded: while the server is down the pool waits for a connection for ever.
            _ = try await withinDeadline(.seconds(2)) { try await client.query("SELECT 1", logger: logger).collect() }
        } catch {
            problems.append("database not reachable: \(error is DeadlinePassed ? "no answer within 2 s" : String(reflecting: error))")
        }
        for session in sessions {
            switch session.role {
            case .standby:
                roles.append("session \(session.session): standby")
            case .owner(let lease):
                roles.append("session \(session.session): owner (epoch \(lease.epoch))")
                let status = session.connectionStatus
                if !status.connected {
                    problems.append("session \(session.session): broker not connected\(status.lastError.map { ": \($0)" } ?? "")")
                } else if !status.subscribed {
                    problems.append("session \(session.session): broker connected but not subscribed")
                }
                if let failure = session.storeFailure {
                    problems.append("session \(session.session): cannot commit to the database: \(failure)")
                }
            }
        }
        return (problems, roles)
    }

    /// The operations endpoints of a node on PostgreSQL: `/healthz`, `/readyz` (the problems, then
    /// the node with the nodes alive and its share, each session's role, and which node delivers
    /// each task-event channel; 200 or 503) and `/metrics` (with `vitalsd_mqtt_session_owned{session}`).
    public static func clusterApplication(
        host: String, port: Int, membership: ClusterMembership, sessions: [SessionIngestService],
        deliveries: [ChannelDeliveryService] = [], client: PostgresClient, metrics: VitalsMetrics,
        logger: Logger
    ) -> some ApplicationProtocol {
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.get("healthz") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            let (problems, roles) = await clusterReadiness(sessions: sessions, client: client, logger: logger)
            let node = "node \(membership.node): \(membership.nodesAlive) node\(membership.nodesAlive == 1 ? "" : "s") alive, a share of \(membership.share) session\(membership.share == 1 ? "" : "s")"
            let channels = deliveries.map { "delivery \($0.channel): \($0.delivering ? "this node" : "another node")" }
            let body = (problems.isEmpty ? ["ready"] : problems) + [node] + roles + channels
            return Response(
                status: problems.isEmpty ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: body.joined(separator: "\n") + "\n")))
        }
        router.get("metrics") { _, _ -> Response in
            var owned: [String: Bool] = [:]
            for s in sessions {
                if case .owner = s.role { owned[s.session] = true } else { owned[s.session] = false }
            }
            let connected = sessions.map(\.connectionStatus).first { $0.connected } ?? MQTTConnectionStatus()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.exposition(status: connected, sessionsOwned: owned))))
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "vitalsd"), logger: logger)
    }
}
