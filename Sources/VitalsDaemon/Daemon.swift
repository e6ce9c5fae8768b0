import Foundation
import Hummingbird
import Logging
import MQTTClient
import ServiceLifecycle
import UnixSignals
import VitalsConfig
import VitalsDomain
import VitalsFHIR
import VitalsFHIRServer
import VitalsStore
import VitalsWeb

/// Builds and runs the daemon from a configuration: the composition root, callable from tests.
public enum Daemon {
    /// The MQTT settings for a configuration.
    /// - Throws: ``ConfigurationError`` when the password file cannot be read.
    public static func mqttConfiguration(_ config: VitalsConfiguration) throws -> MQTTClientConfiguration {
        MQTTClientConfiguration(
            host: config.mqtt.host, port: config.mqtt.port, clientID: config.mqtt.clientID,
            keepAlive: config.mqtt.keepAliveSeconds, topics: config.mqtt.allTopicFilters, maxBatch: config.mqtt.maxBatch,
            minReconnectDelay: config.mqtt.reconnectMinSeconds, maxReconnectDelay: config.mqtt.reconnectMaxSeconds,
            username: config.mqtt.username, password: try config.mqttPassword(), tls: tlsConfiguration(config))
    }

    /// The TLS settings of a configuration, or nil when `mqtt.tls_ca_file` is not set.
    public static func tlsConfiguration(_ config: VitalsConfiguration) -> MQTTTLSConfiguration? {
        config.mqtt.tlsCAFile.map {
            MQTTTLSConfiguration(caFile: $0, certFile: config.mqtt.tlsCertFile, keyFile: config.mqtt.tlsKeyFile,
                                 version: config.mqtt.tlsVersion)
        }
    }

    /// The ingest pipeline for a configuration.
    public static func pipeline(_ config: VitalsConfiguration) -> IngestPipeline {
        IngestPipeline(
            decoder: CanonicalMessageDecoder(
                timePolicy: MeasurementTimePolicy(maxFutureSkew: config.ingest.maxFutureSkewSeconds),
                maxPayloadBytes: config.ingest.maxPayloadBytes),
            thresholds: config.thresholds, alerts: config.alerts)
    }

    /// Where task events go for a configuration.
    /// - Throws: ``ConfigurationError`` when the MQTT password or webhook secret cannot be read.
    public static func deliveryTargets(_ config: VitalsConfiguration) throws -> DeliveryTargets {
        let password = try config.mqttPassword()
        let tls = tlsConfiguration(config)
        let mqtt = config.mqtt
        let publisher: (@Sendable () async throws -> MQTTPublisher)? = config.delivery.mqttEnabled
            ? { @Sendable in
                try await MQTTPublisher.connect(
                    host: mqtt.host, port: mqtt.port, clientID: "\(mqtt.clientID)-alerts", username: mqtt.username,
                    password: password, tls: tls, timeout: 5)
            } : nil
        return DeliveryTargets(
            mqtt: publisher, mqttTopic: config.delivery.mqttTopic, webhookURL: config.delivery.webhookURL.flatMap(URL.init(string:)),
            webhookSignature: try config.webhookSecret().map(WebhookSignature.init(secret:)),
            webhookTimeout: config.delivery.webhookTimeoutSeconds, retryMax: config.delivery.retryMaxSeconds)
    }

    /// The FHIR mapping settings of a configuration.
    public static func fhirMapping(_ config: VitalsConfiguration) -> FHIRMappingSettings {
        FHIRMappingSettings(
            baseURL: config.fhir.publicBaseURL + FHIRAPI.basePath, patientIdentifierSystem: config.fhir.patientIdentifierSystem,
            deviceIdentifierSystem: config.fhir.deviceIdentifierSystem,
            observationIdentifierSystem: config.fhir.observationIdentifierSystem,
            taskIdentifierSystem: config.fhir.taskIdentifierSystem,
            lateAfterMilliseconds: Int64(config.alerts.lateAfterSeconds * 1000))
    }

    /// The FHIR API of a configuration, or nil when `fhir.enabled` is false.
    /// - Throws: GRDB errors.
    public static func fhirAPI(_ config: VitalsConfiguration, database: AppDatabase, logger: Logger) throws -> FHIRAPI? {
        guard config.fhir.enabled else { return nil }
        let store = try FHIRStore(database: database)
        let settings = FHIRAPISettings(
            publicBaseURL: config.fhir.publicBaseURL, defaultCount: config.fhir.defaultCount, maxCount: config.fhir.maxCount)
        let authorizer = SMARTAuthorizer(
            store: store,
            settings: SMARTSettings(
                tokenURL: settings.tokenURL, tokenLifetime: config.fhir.tokenLifetimeSeconds,
                jwksTimeout: config.fhir.jwksTimeoutSeconds, jwksCacheSeconds: config.fhir.jwksCacheSeconds),
            logger: logger)
        return FHIRAPI(store: store, authorizer: authorizer, mapping: fhirMapping(config), settings: settings, logger: logger)
    }

    /// The FHIR push channel's settings, or nil when `delivery.fhir` is not configured.
    /// - Throws: ``ConfigurationError`` when the private key file cannot be read.
    public static func fhirPushSettings(_ config: VitalsConfiguration) throws -> FHIRPushSettings? {
        guard let push = config.delivery.fhir, let pem = try config.fhirPushKey(),
              let base = URL(string: push.baseURL), let token = URL(string: push.tokenURL) else { return nil }
        return FHIRPushSettings(
            baseURL: base, tokenURL: token, clientID: push.clientID, privateKeyPEM: pem, algorithm: push.algorithm,
            keyID: push.keyID, scope: push.scope, timeout: push.timeoutSeconds, maxEntries: push.bundleMaxEntries,
            retryMax: config.delivery.retryMaxSeconds)
    }

    /// The problem with `database.path`'s directory, or nil when it exists; also when something other
    /// than a file (a directory, a device) is at the path itself.
    public static func databaseDirectoryProblem(_ config: VitalsConfiguration) -> ConfigurationError? {
        let directory = (config.database.path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        guard directory.isEmpty || (FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) && isDirectory.boolValue)
        else { return ConfigurationError(key: "database.path", "directory \(directory) does not exist") }
        if PrivateFile.isRegularFile(config.database.path) == false {
            return ConfigurationError(key: "database.path", "\(config.database.path) is not a regular file (a directory?); name the database file")
        }
        return nil
    }

    /// Refuses a configuration that names a PostgreSQL database (`database.url`) for what stores in
    /// SQLite only: the admin commands other than `config check`, `db migrate`, `db backup` and `task`, and
    /// the SQLite composition of the daemon (`run` builds a node on PostgreSQL instead). Without this
    /// they would quietly use a SQLite file at `database.path`.
    /// - Throws: ``ConfigurationErrors`` keyed `database.url` (exit 2: restarting cannot cure it).
    public static func refusePostgreSQL(_ config: VitalsConfiguration) throws {
        guard config.database.url != nil else { return }
        throw ConfigurationErrors(errors: [ConfigurationError(key: "database.url", """
            this command works on SQLite only: on PostgreSQL, run ingests, and config check, db migrate, db backup and \
            the task commands know it; remove database.url to use database.path
            """)])
    }

    /// Opens the database a configuration names.
    ///
    /// A failure that restarting cannot cure is a refused configuration (exit 2, and the unit's
    /// `RestartPreventExitStatus=2` stops systemd from trying again); one that may pass (disk full,
    /// an I/O error, the file locked by another process, a read-only file system) is
    /// ``DatabaseUnavailable`` (exit 1: systemd starts the daemon again after `RestartSec`).
    /// - Throws: ``ConfigurationErrors`` naming `database.path` when the directory is missing, or the
    ///   file is not a regular file, is not a database, or fails its integrity check;
    ///   ``DatabaseUnavailable`` for the others.
    /// - Parameter backgroundCheckpoints: true for the daemon, which runs a ``WALCheckpointService``.
    public static func openDatabase(_ config: VitalsConfiguration, backgroundCheckpoints: Bool = false) throws -> AppDatabase {
        try refusePostgreSQL(config)
        let path = config.database.path
        if let problem = databaseDirectoryProblem(config) { throw ConfigurationErrors(errors: [problem]) }
        do {
            return try AppDatabase.open(
                path: path, synchronous: AppDatabase.Synchronous(rawValue: config.database.synchronous) ?? .full,
                busyTimeout: config.database.busyTimeoutSeconds, backgroundCheckpoints: backgroundCheckpoints)
        } catch {
            guard DatabaseUnavailable.mayPass(error) else {
                throw ConfigurationErrors(errors: [ConfigurationError(key: "database.path", "cannot open \(path): \(error)")])
            }
            throw DatabaseUnavailable(path: path, reason: "\(error)")
        }
    }

    /// An admin command refused because its build would upgrade the schema of a database that a daemon
    /// of an older build runs on (``Daemon/openDatabaseForCommand(_:)``).
    public struct SchemaUpgradeWaits: Error, Sendable, CustomStringConvertible {
        /// The pending migrations, the daemon's pid when known, and what to do.
        public var description: String
    }

    /// Opens the database for an admin command (`vitalsd user add`, `import`, `task resolve`, …).
    ///
    /// Like ``openDatabase(_:backgroundCheckpoints:)``, but a schema upgrade waits for the daemon: when
    /// this build would migrate the database and a daemon holds its lock (``DatabaseLock``), the
    /// command is refused and the file is left as it is. A command run with a new binary before the
    /// daemon's restart would otherwise upgrade the schema under the older daemon, whose statements
    /// then meet tables they were not written for. With no daemon running, the command migrates as
    /// before (holding the lock meanwhile, so that no daemon starts halfway).
    /// - Throws: ``SchemaUpgradeWaits`` naming the pending migrations and what to do, or what
    ///   ``openDatabase(_:backgroundCheckpoints:)`` throws.
    public static func openDatabaseForCommand(_ config: VitalsConfiguration) throws -> AppDatabase {
        try refusePostgreSQL(config)
        let path = config.database.path
        guard databaseDirectoryProblem(config) == nil, FileManager.default.fileExists(atPath: path),
              let pending = try? AppDatabase.pendingMigrations(path: path), !pending.isEmpty
        else { return try openDatabase(config) }
        let lock: DatabaseLock
        do {
            lock = try DatabaseLock(databasePath: path)
        } catch let failure as DatabaseLock.Failure where failure.heldByAnother {
            throw SchemaUpgradeWaits(description: """
                this vitalsd would upgrade the schema of \(path) (\(pending.count) migration\(pending.count == 1 ? "" : "s"): \
                \(pending.joined(separator: ", "))), but a daemon\(failure.holderText) runs on it with an older build; restart the \
                daemon with this build first (it upgrades the schema as it starts), then run the command again
                """)
        }
        defer { lock.release() }
        return try openDatabase(config)
    }

    /// Builds the ingest service of the daemon.
    /// - Parameter clock: stamps each batch's receive time (default: the system clock).
    public static func makeIngestService(
        _ config: VitalsConfiguration, database: AppDatabase, metrics: VitalsMetrics? = nil,
        clock: any WallClock = SystemWallClock(), logger: Logger
    ) throws -> IngestService {
        try IngestService(
            mqtt: try mqttConfiguration(config), database: database, pipeline: pipeline(config), logger: logger,
            metrics: metrics, routes: try config.mqtt.routes(), clock: clock)
    }

    /// Logs each of the configuration's warnings (key and problem; thresholds carry no PHI).
    public static func logWarnings(_ config: VitalsConfiguration, logger: Logger) {
        for w in config.warnings {
            logger.warning("configuration warning", metadata: ["config.key": "\(w.key)", "config.problem": "\(w.message)"])
        }
    }

    /// Whether `alerts.escalation_backup_user` or `alerts.escalation_backup_role` reaches somebody: the
    /// user must exist and be enabled, the role must have at least one enabled user. Otherwise the second
    /// and later escalations of an unacknowledged critical task would wait with nobody.
    /// - Returns: the problem, keyed by the setting, or nil (also when no backup is configured).
    /// - Throws: database errors.
    public static func escalationBackupProblem(_ config: VitalsConfiguration, database: AppDatabase) throws -> ConfigurationError? {
        switch config.alerts.escalationBackup {
        case nil:
            return nil
        case .user(let name):
            guard let user = try database.user(username: name) else {
                return ConfigurationError(key: "alerts.escalation_backup_user", "no workspace user has this name (vitalsd user add)")
            }
            return user.disabled ? ConfigurationError(key: "alerts.escalation_backup_user", "this workspace user is disabled") : nil
        case .role(let role):
            let reachable = try database.users().contains { $0.role.rawValue == role && !$0.disabled }
            return reachable ? nil : ConfigurationError(key: "alerts.escalation_backup_role", "no enabled workspace user has this role")
        }
    }

    /// The daemon, built and not yet running: its service group and the parts tests look at.
    public struct Composition: Sendable {
        /// Every service; runs until SIGTERM or SIGINT (or ``ServiceGroup/triggerGracefulShutdown()``).
        public let group: ServiceGroup
        /// The ingest service (broker connection state, counters).
        public let ingest: IngestService
        /// The database the services write.
        public let database: AppDatabase
        public let metrics: VitalsMetrics
        /// Held while the daemon exists: one daemon per database.
        let lock: DatabaseLock
        /// `database.path`.
        let path: String

        /// Runs the service group, then closes the database and gives up its lock.
        public func run() async throws {
            defer { lock.release() }
            try await group.run()
            try database.close()
            // A clean stop leaves no -wal or -shm file (README: restoring a backup).
            try? AppDatabase.removeWAL(path: path)
        }
    }

    /// Builds the daemon's services from a configuration, as Hummingbird's template builds its
    /// application: the composition root, callable from tests with a ``ManualWallClock``.
    ///
    /// - Parameters:
    ///   - clock: the time every rule and timer sees and the timers' sleep (production: ``SystemWallClock``).
    ///   - configPath: the file to read again on SIGHUP, if any.
    ///   - signals: whether SIGTERM/SIGINT shut the group down (off for several daemons in one test process).
    /// - Throws: configuration or database errors.
    public static func build(
        config: VitalsConfiguration, clock: any WallClock = SystemWallClock(), logger: Logger, configPath: String? = nil,
        signals: Bool = true
    ) throws -> ServiceGroup {
        try compose(config: config, clock: clock, logger: logger, configPath: configPath, signals: signals).group
    }

    /// Like ``build(config:clock:logger:configPath:signals:)``, with access to the parts.
    public static func compose(
        config: VitalsConfiguration, clock: any WallClock = SystemWallClock(), logger: Logger, configPath: String? = nil,
        signals: Bool = true
    ) throws -> Composition {
        MosquittoLibrary.initialize()
        logWarnings(config, logger: logger)
        // Before anything touches the broker: a second daemon on this database (the same
        // configuration started twice) would take the first one's MQTT session again and again.
        try refusePostgreSQL(config)
        if let problem = databaseDirectoryProblem(config) { throw ConfigurationErrors(errors: [problem]) }
        if config.web.enabled, !config.webTLSFileProblems.isEmpty { throw ConfigurationErrors(errors: config.webTLSFileProblems) }
        let lock: DatabaseLock
        do {
            lock = try DatabaseLock(databasePath: config.database.path)
        } catch let failure as PrivateFile.Failure where failure.code == EACCES || failure.code == EPERM {
            // Not the service's directory: restarting cannot cure it.
            throw ConfigurationErrors(errors: [ConfigurationError(key: "database.path", failure.description)])
        }
        if config.http.enabled { try HTTPEndpoints.checkPortFree(host: config.http.host, port: config.http.port) }
        let database = try openDatabase(config, backgroundCheckpoints: true)
        // Not a reason to stop ingest: the first escalation still reaches the owner or care manager.
        if let problem = try escalationBackupProblem(config, database: database) {
            logger.error("escalations beyond the first reach nobody", metadata: ["config.key": "\(problem.key)", "config.problem": "\(problem.message)"])
        }
        let checkpointer = try AppDatabase.walCheckpointer(
            path: config.database.path, synchronous: AppDatabase.Synchronous(rawValue: config.database.synchronous) ?? .full)
        let metrics = VitalsMetrics()
        let ingest = try makeIngestService(config, database: database, metrics: metrics, clock: clock, logger: logger)
        let routine = RoutineTaskService(
            database: database, rules: config.billing, noDataDays: config.adherence.noDataDays,
            lowBatteryPercent: config.adherence.lowBatteryPercent,
            interval: .milliseconds(Int(config.adherence.checkIntervalSeconds * 1000)), clock: clock, logger: logger)
        let targets = try deliveryTargets(config)
        // Before ingest starts: a new channel begins at the newest event, and nothing raised from
        // now on can be skipped.
        let fhirPush = try fhirPushSettings(config)
        do {
            for channel in targets.channels { try database.openDeliveryChannel(channel, now: clock.now()) }
            if fhirPush != nil { try FHIRStore(database: database).openReadingChannel(FHIRPushDelivery.channel) }
        } catch {
            // The first writes of a start (a lock held by a backup or a command, a full disk): exit 1.
            throw DatabaseUnavailable(path: config.database.path, reason: "\(error)")
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: ingest, successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: routine, successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: AlertTimerService(
                      database: database, policy: config.alerts,
                      interval: .milliseconds(Int(config.alertCheckIntervalSeconds * 1000)), metrics: metrics, clock: clock,
                      logger: logger),
                  successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: TaskEventDelivery(database: database, targets: targets, metrics: metrics, logger: logger),
                  successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup),
        ]
        if let fhirPush {
            services.append(.init(
                service: FHIRPushDelivery(
                    store: try FHIRStore(database: database), settings: fhirPush, mapping: fhirMapping(config), logger: logger,
                    report: { metrics.recordDelivery(channel: FHIRPushDelivery.channel, delivered: $0, failed: $1, backlog: $2) }),
                successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        services.append(.init(
            service: MaintenanceService(
                database: database, interval: .milliseconds(Int(config.database.checkpointIntervalSeconds * 1000)),
                payloadRetentionDays: config.database.deadLetterPayloadRetentionDays, deliveryChannels: targets.channels,
                logger: logger),
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        services.append(.init(
            service: WALCheckpointService(checkpointer: checkpointer, logger: logger),
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        if let configPath {
            services.append(.init(
                service: ReloadService(configPath: configPath, ingest: ingest, started: config, logger: logger),
                successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        if config.http.enabled {
            services.append(.init(
                service: HTTPEndpoints.application(
                    host: config.http.host, port: config.http.port, ingest: ingest, metrics: metrics, database: database,
                    databasePath: config.database.path, logger: logger),
                successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        if config.web.enabled {
            // The user-facing listener: the workspace, and the FHIR API with its token endpoint.
            let fhir: [any WorkspaceRouteGroup] = try fhirAPI(config, database: database, logger: logger).map { [FHIRRouteGroup(api: $0)] } ?? []
            services.append(.init(
                service: try Workspace.application(
                    configuration: config, database: database, logger: logger, routeGroups: fhir, clock: { clock.now() }),
                successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        // Last, so that it is the first told to shut down and sends STOPPING=1 at once.
        // Without $NOTIFY_SOCKET it returns at once, which must not end the daemon.
        services.append(.init(
            service: SystemdService(notifier: SystemdNotifier(), ingest: ingest, logger: logger),
            successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore))
        var groupConfig = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: signals ? [.sigterm, .sigint] : [],
            logger: logger)
        // After 8 s the services are cancelled. No deadline after that: a cancelled service returns at
        // once except an ingest commit already waiting for another process's lock, which ends within
        // the busy timeout (nothing of it is acknowledged). A deadline would trap instead.
        groupConfig.maximumGracefulShutdownDuration = .seconds(8)
        groupConfig.maximumCancellationDuration = nil
        return Composition(
            group: ServiceGroup(configuration: groupConfig), ingest: ingest, database: database, metrics: metrics, lock: lock,
            path: config.database.path)
    }

    /// Runs the daemon until SIGTERM or SIGINT, then shuts down within 10 s.
    ///
    /// - Throws: configuration, database or service errors; the process should then exit non-zero.
    /// - Parameter configPath: the file to read again on SIGHUP, if any.
    /// With `database.url`, runs a node on PostgreSQL instead (``composeCluster(config:clock:logger:signals:)``).
    public static func run(_ config: VitalsConfiguration, configPath: String? = nil, logger: Logger) async throws {
        if config.database.url != nil {
            let node = try await composeCluster(config: config, logger: logger)
            logger.info(
                "vitalsd starting on PostgreSQL",
                metadata: ["version": "\(BuildInfo.version)", "libmosquitto": "\(MosquittoLibrary.version)", "node": "\(node.node)"])
            try await node.group.run()
            logger.info("vitalsd stopped")
            return
        }
        let daemon = try compose(config: config, logger: logger, configPath: configPath)
        logger.info(
            "vitalsd starting",
            metadata: ["version": "\(BuildInfo.version)", "libmosquitto": "\(MosquittoLibrary.version)", "db.path": "\(config.database.path)"])
        try await daemon.run()
        logger.info("vitalsd stopped")
    }
}

/// The FHIR API and SMART token endpoint as a route group of the web listener, which gives them TLS
/// and the security headers; they keep their own authorization (bearer tokens) and error form.
struct FHIRRouteGroup: WorkspaceRouteGroup {
    let api: FHIRAPI

    func addRoutes(to router: Router<WorkspaceRequestContext>) {
        api.addRoutes(to: router)
    }
}
