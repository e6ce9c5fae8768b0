import Foundation
import Logging
import MQTTClient
import ServiceLifecycle
import VitalsDomain
import VitalsFormats
import VitalsStore

/// Counters of the running daemon, for health checks and tests.
public struct IngestCounters: Sendable, Hashable {
    public var batches = 0
    public var messages = 0
    public var readingsStored = 0
    public var duplicates = 0
    public var deadLetters = 0
    public var tasksOpened = 0
    public var tasksUpdated = 0
}

/// The daemon's main job: consume device messages and commit them before they are acknowledged.
///
/// Each delivered batch is decoded, stored with its dead letters and task changes in one SQLite
/// transaction, and acknowledged to the broker only after that commit. A database error is retried
/// with a growing delay (lock waits, a full disk being cleared); while it fails nothing is
/// acknowledged, and after `maxStoreAttempts` the service fails so that systemd restarts the process
/// and the broker redelivers.
public final class IngestService: Service, Sendable {
    private let mqtt: MQTTClientConfiguration
    private let database: AppDatabase
    /// The decoder, thresholds and subscription routes in force; replaced by ``reload(pipeline:routes:)``.
    private let rules: Mutex<(pipeline: IngestPipeline, routes: [SubscriptionRoute])>
    private let logger: Logger
    private let state = StateBox()
    private let maxStoreAttempts: Int
    private let metrics: VitalsMetrics?
    private let clock: any WallClock

    /// - Parameters:
    ///   - mqtt: broker settings; each topic filter must have one `+` level for the device id.
    ///   - database: where readings go.
    ///   - pipeline: decoder and thresholds.
    ///   - maxStoreAttempts: commits tried per batch before the service fails (default 6: 15.5 s of waits between them, plus
    ///     each attempt's own wait for a lock, up to `database.busy_timeout_seconds`).
    ///   - routes: the format and device source of each subscribed filter; nil reads every topic of
    ///     `mqtt.topics` in the canonical format.
    ///   - clock: stamps each batch's receive time, which is also the time its rules see.
    /// - Throws: ``Rejection`` with reason `bad_topic` for a filter without exactly one `+`.
    public init(
        mqtt: MQTTClientConfiguration, database: AppDatabase, pipeline: IngestPipeline, logger: Logger,
        metrics: VitalsMetrics? = nil, maxStoreAttempts: Int = 6, routes: [SubscriptionRoute]? = nil,
        clock: any WallClock = SystemWallClock()
    ) throws {
        self.clock = clock
        self.metrics = metrics
        self.mqtt = mqtt
        self.database = database
        self.logger = logger
        self.maxStoreAttempts = maxStoreAttempts
        self.rules = Mutex((pipeline, try routes ?? Self.canonicalRoutes(mqtt.topics)))
    }

    private static func canonicalRoutes(_ topics: [String]) throws(Rejection) -> [SubscriptionRoute] {
        var routes: [SubscriptionRoute] = []
        for topic in topics {
            _ = try DeviceTopicFilter(topic)
            routes.append(try SubscriptionRoute(topic: topic))
        }
        return routes
    }

    /// Puts new thresholds and topic filters in force without dropping the MQTT session: the next
    /// batch is evaluated with them, and the subscription changes on the live connection.
    /// - Throws: ``Rejection`` (`bad_topic`) for a filter without exactly one `+`; nothing changes then.
    public func reload(pipeline: IngestPipeline, topics: [String]) throws(Rejection) {
        try reload(pipeline: pipeline, routes: Self.canonicalRoutes(topics))
    }

    /// Like ``reload(pipeline:topics:)`` with routes that name each filter's format.
    public func reload(pipeline: IngestPipeline, routes: [SubscriptionRoute]) throws(Rejection) {
        var topics: [String] = []
        for route in routes where !topics.contains(route.filter.filter) { topics.append(route.filter.filter) }
        rules.withLock { $0 = (pipeline, routes) }
        state.subscription?.updateTopics(topics)
    }

    /// What has been ingested since start.
    public var counters: IngestCounters { state.counters }

    /// The MQTT client id (`mqtt.client_id`), for operators' messages.
    public var mqttClientID: String { mqtt.clientID }

    /// The broker connection state, or a disconnected state before the first connect.
    public var connectionStatus: MQTTConnectionStatus { state.subscription?.status ?? MQTTConnectionStatus() }

    /// How long the batch now being committed has waited, or nil when no commit is in progress.
    /// Long waits mean the database is locked or failing.
    public var storeWaiting: Duration? { state.storeWaiting }

    /// Why the last attempt to commit the waiting batch failed (``AppDatabase/describeWriteFailure(_:)``),
    /// or nil when no batch is waiting or none of its attempts failed yet.
    public var storeFailure: String? { state.storeFailure }

    /// True when the MQTT loop thread turned within `interval` (false before it starts).
    public func loopIsAlive(within interval: Duration) -> Bool {
        state.subscription?.loopTurned(within: interval) ?? false
    }

    public func run() async throws {
        try await MQTTSubscription.with(configuration: mqtt, logger: logger) { subscription in
            state.setSubscription(subscription)
            defer { state.setSubscription(nil) }
            for await batch in subscription.deliveries.cancelOnGracefulShutdown() {
                let receivedAt = clock.now()
                let (pipeline, routes) = rules.withLock { $0 }
                let messages = batch.messages.map { m in
                    IncomingMessage(topic: m.topic, payload: m.payload, receivedAt: receivedAt, routes: routes, retained: m.retain)
                }
                state.storeStarted()
                let storeStart = ContinuousClock.now
                guard let summary = try await store(messages, pipeline: pipeline) else {
                    // Shutting down while the database refuses the batch: leave it unacknowledged;
                    // the broker delivers it again after restart.
                    logger.notice("stopping with an uncommitted batch; the broker will deliver it again",
                                  metadata: ["ingest.batch_size": "\(messages.count)"])
                    break
                }
                state.storeFinished()
                batch.acknowledge()
                metrics?.record(summary, messages: batch.messages, committedAt: .now)
                record(summary, storeTime: .now - storeStart)
            }
        }
        logger.info("ingest stopped", metadata: ["ingest.messages": "\(state.counters.messages)"])
    }

    /// Commits a batch, retrying database errors with a doubling delay (0.5, 1, 2, 4, 8 s).
    /// - Returns: nil when a graceful shutdown began while the batch could not be committed.
    private func store(_ messages: [IncomingMessage], pipeline: IngestPipeline) async throws -> IngestSummary? {
        var delay = 0.5
        var attempt = 1
        while true {
            do {
                return try await database.ingest(messages, pipeline: pipeline, now: messages.first?.receivedAt)
            } catch {
                state.storeFailed(AppDatabase.describeWriteFailure(error))
                logger.error(
                    "could not store batch; nothing acknowledged",
                    metadata: ["ingest.batch_size": "\(messages.count)", "ingest.attempt": "\(attempt)",
                               "db.error": "\(error)"])
                guard attempt < maxStoreAttempts else { throw error }
                if Task.isShuttingDownGracefully { return nil }
                let wait = delay
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(wait)) }
                if Task.isShuttingDownGracefully { return nil }
                delay *= 2
                attempt += 1
            }
        }
    }

    /// Row ids for a log line: the first 10, comma-separated, then `… (N more)`.
    static func idList(_ ids: [Int64]) -> String {
        let shown = ids.prefix(10).map(String.init).joined(separator: ",")
        return ids.count > 10 ? "\(shown) … (\(ids.count - 10) more)" : shown
    }

    /// A device id from a topic, safe for a log line: control characters replaced, at most 64 characters.
    static func printable(_ id: String) -> String {
        String(String.UnicodeScalarView(id.unicodeScalars.prefix(64).map {
            $0.properties.generalCategory == .control ? "?" : $0
        }))
    }

    /// - Parameter storeTime: from handing the batch to the database to its commit, retries included.
    private func record(_ summary: IngestSummary, storeTime: Duration) {
        state.update { c in
            c.batches += 1
            c.messages += summary.messages
            c.readingsStored += summary.readingsStored
            c.duplicates += summary.duplicates
            c.deadLetters += summary.deadLetterCount
            c.tasksOpened += summary.tasksOpened.values.reduce(0, +)
            c.tasksUpdated += summary.tasksUpdated
        }
        // One line per device and reason in the batch: ids, reasons and counts, never values or payload bytes.
        var byDeviceAndReason: [String: (ids: [Int64], detail: String)] = [:]
        for r in summary.rejections {
            let key = "\(r.deviceID ?? "-")\u{0}\(r.rejection.reason.rawValue)"
            byDeviceAndReason[key, default: ([], r.rejection.detail)].ids.append(r.id)
        }
        for (key, value) in byDeviceAndReason.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
            logger.warning(
                "dead-lettered",
                metadata: ["device.id": "\(Self.printable(String(parts[0])))", "dead_letter.reason": "\(parts[1])",
                           "dead_letter.count": "\(value.ids.count)", "dead_letter.detail": "\(value.detail)",
                           "dead_letter.ids": "\(Self.idList(value.ids))"])
        }
        for (priority, n) in summary.tasksOpened.sorted(by: { $0.key > $1.key }) where n > 0 {
            logger.notice("tasks opened", metadata: ["task.priority": "\(priority.rawValue)", "task.count": "\(n)"])
        }
        logger.debug(
            "batch committed",
            metadata: ["ingest.messages": "\(summary.messages)", "ingest.stored": "\(summary.readingsStored)",
                       "ingest.duplicates": "\(summary.duplicates)",
                       "ingest.store_ms": "\(storeTime.components.seconds * 1000 + storeTime.components.attoseconds / 1_000_000_000_000_000)"])
    }
}

import Synchronization

/// Shared mutable state of the service, behind a lock.
private final class StateBox: Sendable {
    private let storage = Mutex<(
        counters: IngestCounters, subscription: MQTTSubscription?, storeSince: ContinuousClock.Instant?, storeFailure: String?
    )>((IngestCounters(), nil, nil, nil))

    func storeStarted() { storage.withLock { $0.storeSince = .now } }
    func storeFinished() {
        storage.withLock {
            $0.storeSince = nil
            $0.storeFailure = nil
        }
    }
    func storeFailed(_ reason: String) { storage.withLock { $0.storeFailure = reason } }
    var storeWaiting: Duration? { storage.withLock { $0.storeSince.map { .now - $0 } } }
    var storeFailure: String? { storage.withLock { $0.storeSince == nil ? nil : $0.storeFailure } }

    var counters: IngestCounters { storage.withLock { $0.counters } }

    func update(_ body: (inout IngestCounters) -> Void) { storage.withLock { body(&$0.counters) } }

    func setSubscription(_ subscription: MQTTSubscription?) { storage.withLock { $0.subscription = subscription } }

    var subscription: MQTTSubscription? { storage.withLock { $0.subscription } }
}
