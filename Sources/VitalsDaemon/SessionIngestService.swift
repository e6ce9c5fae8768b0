import Foundation
import Logging
import MQTTClient
import PostgresNIO
import ServiceLifecycle
import Synchronization
import VitalsAlerting
import VitalsDomain
import VitalsFormats
import VitalsPostgres
import VitalsStore

/// One MQTT session of a node on PostgreSQL: its lease, and its ingest while this node owns it.
///
/// The lease holder (``SessionLeaseHolder``) takes the session when it is free and renews it. While
/// this node owns it, the service connects with the session's client id, and for each delivered
/// batch: asks the holder for the lease (nil after a freeze longer than the lease's margin), decodes,
/// stores the batch in one transaction fenced by the lease's epoch (``PostgresIngest/store(messages:lease:alerting:maxPayloadBytes:)``)
/// and only then acknowledges it. When the lease is lost (a renewal refused or overdue, a batch
/// fenced off), it stops reading at once, abandons the unacknowledged batch (the broker delivers it
/// again to the next owner) and disconnects, then stands by. A database error is retried while the
/// lease holds; nothing is acknowledged meanwhile.
public final class SessionIngestService: Service, Sendable {
    /// The session's client id.
    public let session: String
    private let mqtt: MQTTClientConfiguration
    private let routes: [SubscriptionRoute]
    private let pipeline: IngestPipeline
    /// The rules' policy, made once from `pipeline`.
    private let policy: AlertingPolicy
    private let holder: SessionLeaseHolder<ContinuousClock>
    private let ingest: PostgresIngest
    private let client: PostgresClient
    private let clock: any WallClock
    private let incarnation: String
    private let metrics: VitalsMetrics?
    private let logger: Logger
    private let commitDeadline: Duration
    private let state = Mutex<(subscription: MQTTSubscription?, counters: IngestCounters, storeFailure: String?)>((nil, IngestCounters(), nil))

    /// - Parameters:
    ///   - mqtt: the broker settings, with the session's client id and topic filters.
    ///   - routes: the format and device source of each filter.
    ///   - pipeline: decoder, thresholds and alert policy.
    ///   - holder: the session's lease for this node.
    ///   - client: a running PostgreSQL client on a migrated database.
    ///   - clock: the time the rules see.
    ///   - incarnation: part of each task event's id, new for every start of the node.
    ///   - metrics: the node's metrics.
    ///   - commitDeadline: how long a batch's commit may take before it is given up (not
    ///     acknowledged) and tried again.
    ///   - logger: ids and reasons only.
    public init(
        mqtt: MQTTClientConfiguration, routes: [SubscriptionRoute], pipeline: IngestPipeline,
        holder: SessionLeaseHolder<ContinuousClock>, client: PostgresClient, clock: any WallClock, incarnation: String,
        metrics: VitalsMetrics?, commitDeadline: Duration = .seconds(30), logger: Logger
    ) {
        self.commitDeadline = commitDeadline
        self.session = mqtt.clientID
        self.mqtt = mqtt
        self.routes = routes
        self.pipeline = pipeline
        self.policy = AlertingPolicy(thresholds: pipeline.thresholds, alerts: pipeline.alerts)
        self.holder = holder
        self.client = client
        self.ingest = PostgresIngest(client: client, logger: logger)
        self.clock = clock
        self.incarnation = incarnation
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "mqtt.session"] = "\(mqtt.clientID)"
        self.logger = logger
    }

    /// This node's role in the session now.
    public var role: SessionRole { holder.role }

    /// The broker connection while this node owns the session; disconnected otherwise.
    public var connectionStatus: MQTTConnectionStatus { state.withLock { $0.subscription?.status } ?? MQTTConnectionStatus() }

    /// What this node ingested of the session since start.
    public var counters: IngestCounters { state.withLock { $0.counters } }

    /// True when this node does not own the session (nothing to guard), or when the session's MQTT
    /// loop thread turned within `interval`.
    public func loopIsAlive(within interval: Duration) -> Bool {
        state.withLock { $0.subscription }?.loopTurned(within: interval) ?? true
    }

    /// Why the last commit of the waiting batch failed, or nil.
    public var storeFailure: String? { state.withLock { $0.storeFailure } }

    public func run() async throws {
        // Cancelled at graceful shutdown: the ingest stops (nothing more acknowledged), then the
        // holder releases the lease so that a standby takes the session at once.
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.holder.run() }
                group.addTask { await self.ingestWhileOwner() }
            }
        }
        logger.info("session stopped", metadata: ["ingest.messages": "\(counters.messages)"])
    }

    /// Waits for the lease, ingests under it until it is lost, and again, until cancelled.
    private func ingestWhileOwner() async {
        await whileHolding(holder, logger: logger) { lease in
            try await self.ingest(under: lease)
        }
    }

    /// Connects with the session's client id and ingests until `lease` is no longer this node's.
    private func ingest(under lease: Lease) async throws {
        logger.notice("connecting the MQTT session as its owner", metadata: ["lease.epoch": "\(lease.epoch)"])
        let holder = self.holder
        // Checked by the network thread before every (re)connect: a node resumed after a freeze
        // must not take the client id back from the session's new owner before this task sees the loss.
        try await MQTTSubscription.with(configuration: mqtt, logger: logger, mayConnect: { holder.currentLease() == lease }) { subscription in
            state.withLock { $0.subscription = subscription }
            defer { state.withLock { $0.subscription = nil } }
            for await batch in subscription.deliveries {
                try await self.store(batch, lease: lease)
            }
        }
    }

    /// Stores one batch under `lease` and acknowledges it after the commit; retries database errors
    /// while the lease holds.
    /// - Throws: ``LeaseLost`` when the lease no longer holds (nothing acknowledged); cancellation.
    private func store(_ batch: MQTTDeliveryBatch, lease: Lease) async throws {
        let receivedAt = clock.now()
        let messages = batch.messages.map { m in
            IncomingMessage(topic: m.topic, payload: m.payload, receivedAt: receivedAt, routes: routes, retained: m.retain)
        }
        let decoded = try await decode(messages)
        let alerting = BatchAlerting(policy: policy, now: receivedAt, incarnation: incarnation)
        var delay = 0.5
        while true {
            try Task.checkCancellation()
            guard holder.currentLease() == lease else {
                throw LeaseLost(lease: lease, currentOwner: nil, currentEpoch: nil)
            }
            do {
                let (ingest, maxPayloadBytes) = (self.ingest, pipeline.decoder.maxPayloadBytes)
                // A commit that does not answer (its connection dropped by the server while this
                // process was frozen) is given up and tried again on another connection.
                let outcome = try await withinDeadline(commitDeadline) {
                    try await ingest.store(messages: decoded, lease: lease, alerting: alerting, maxPayloadBytes: maxPayloadBytes)
                }
                batch.acknowledge()
                metrics?.record(outcome, messages: batch.messages, committedAt: .now)
                record(outcome)
                return
            } catch is CancellationError {
                throw CancellationError()
            } catch let lost as LeaseLost {
                logger.warning("batch fenced off: the session has another owner; nothing acknowledged",
                               metadata: ["ingest.batch_size": "\(messages.count)", "lease.reason": "\(lost)"])
                throw lost
            } catch {
                if Task.isCancelled { throw CancellationError() }
                state.withLock { $0.storeFailure = "\(error)" }
                logger.error("could not store batch; nothing acknowledged",
                             metadata: ["ingest.batch_size": "\(messages.count)", "db.error": "\(String(reflecting: error))"])
                try await Task.sleep(for: .seconds(delay))
                delay = min(delay * 2, 8)
            }
        }
    }

    /// Decodes a batch, with the time zones of the patients its devices are enrolled to: read for the
    /// topics' device ids first, and for devices named only in payloads after a first pass.
    private func decode(_ messages: [IncomingMessage]) async throws -> [ReceivedMessage] {
        let zones = ZoneCache()
        zones.add(try await ingest.patientTimeZones(deviceIDs: Set(messages.compactMap(\.deviceID))))
        var decoded = IngestDecoding.decode(messages, pipeline: pipeline, patientZone: zones.zone)
        let missed = zones.missed
        if !missed.isEmpty {
            zones.add(try await ingest.patientTimeZones(deviceIDs: missed))
            decoded = IngestDecoding.decode(messages, pipeline: pipeline, patientZone: zones.zone)
        }
        return decoded.map { d in
            ReceivedMessage(topic: d.message.topic, deviceID: d.message.deviceID, payload: d.message.payload,
                            receivedAt: d.message.receivedAt, decoded: d.result, retained: d.message.retained)
        }
    }

    private func record(_ outcome: MessageIngestOutcome) {
        state.withLock { s in
            s.storeFailure = nil
            s.counters.batches += 1
            s.counters.messages += outcome.messages
            s.counters.readingsStored += outcome.readingsStored
            s.counters.duplicates += outcome.duplicates
            s.counters.deadLetters += outcome.deadLetterCount
            s.counters.tasksOpened += outcome.alerting.opened.values.reduce(0, +)
            s.counters.tasksUpdated += outcome.alerting.updated
        }
        for (reason, n) in outcome.deadLetters.sorted(by: { $0.key < $1.key }) {
            logger.warning("dead-lettered", metadata: ["dead_letter.reason": "\(reason)", "dead_letter.count": "\(n)"])
        }
        for (priority, n) in outcome.alerting.opened.sorted(by: { $0.key > $1.key }) where n > 0 {
            logger.notice("tasks opened", metadata: ["task.priority": "\(priority.rawValue)", "task.count": "\(n)"])
        }
    }
}

/// The patients' time zones of one batch, looked up by the decoder (which cannot wait for a query):
/// a device not looked up yet is noted, for a second pass.
private final class ZoneCache: Sendable {
    private let state = Mutex<(zones: [String: TimeZone?], missed: Set<String>)>(([:], []))

    func add(_ zones: [String: TimeZone?]) { state.withLock { $0.zones.merge(zones) { _, new in new } } }

    var missed: Set<String> { state.withLock { $0.missed } }

    @Sendable func zone(_ deviceID: String) -> TimeZone? {
        state.withLock { s in
            guard let zone = s.zones[deviceID] else {
                s.missed.insert(deviceID)
                return nil
            }
            return zone
        }
    }
}

/// Runs `body` with each lease `holder` takes, until the task is cancelled. `body` is cancelled as
/// soon as its lease is no longer this node's (checked every 100 ms, even while `body` waits for
/// traffic); it may also end by itself (``LeaseLost``), and is then run again under the next lease.
func whileHolding<C: Clock>(
    _ holder: SessionLeaseHolder<C>, logger: Logger, _ body: @escaping @Sendable (Lease) async throws -> Void
) async where C.Duration == Duration {
    while !Task.isCancelled {
        guard let lease = holder.currentLease() else {
            try? await Task.sleep(for: .milliseconds(100))
            continue
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while holder.currentLease() == lease { try await Task.sleep(for: .milliseconds(100)) }
                    logger.warning("the lease is no longer this node's; stopping", metadata: ["lease.name": "\(lease.session)", "lease.epoch": "\(lease.epoch)"])
                }
                group.addTask { try await body(lease) }
                try await group.next()
                group.cancelAll()
            }
        } catch is LeaseLost {
            // Logged where it was found.
        } catch is CancellationError {
            return
        } catch {
            logger.error("work under a lease failed; trying again", metadata: ["lease.name": "\(lease.session)", "error": "\(error)"])
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
