import Foundation
import Logging
import ServiceLifecycle
import VitalsDomain
import VitalsPostgres

/// One delivery channel (`mqtt` or `webhook`) of the nodes on PostgreSQL: delivered by one node at
/// a time, the holder of the lease ``PostgresOutbox/leaseName(channel:)``.
///
/// Every node runs one per configured channel; the one holding the lease runs ``TaskEventDelivery``
/// for that channel, moving the cursor only under its lease. When the holder dies, another node takes
/// the lease after its ttl and goes on from the cursor: events are delivered at least once (a
/// receiver may see the last ones again, with the same `event_id`) and in id order, which is the
/// order they were committed in.
public final class ChannelDeliveryService: Service, Sendable {
    /// `mqtt` or `webhook`.
    public let channel: String
    private let holder: SessionLeaseHolder<ContinuousClock>
    private let outbox: PostgresOutbox
    private let targets: DeliveryTargets
    private let metrics: VitalsMetrics?
    private let logger: Logger

    init(
        channel: String, holder: SessionLeaseHolder<ContinuousClock>, outbox: PostgresOutbox, targets: DeliveryTargets,
        metrics: VitalsMetrics?, logger: Logger
    ) {
        self.channel = channel
        self.holder = holder
        self.outbox = outbox
        self.targets = targets
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "delivery.channel"] = "\(channel)"
        self.logger = logger
    }

    /// Whether this node delivers the channel now.
    public var delivering: Bool { holder.currentLease() != nil }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.holder.run() }
                group.addTask {
                    await whileHolding(self.holder, logger: self.logger) { lease in
                        self.logger.notice("delivering the channel's task events", metadata: ["lease.epoch": "\(lease.epoch)"])
                        try await TaskEventDelivery(
                            outbox: LeasedOutbox(outbox: self.outbox, lease: lease), targets: self.targets, channel: self.channel,
                            metrics: self.metrics, logger: self.logger
                        ).run()
                        // The delivery stops only when its lease is gone: wait for the holder to see it.
                        while self.holder.currentLease() == lease { try await Task.sleep(for: .milliseconds(100)) }
                    }
                }
            }
        }
    }
}

/// The PostgreSQL outbox seen by one holder of a channel's lease: its cursor moves only under it.
struct LeasedOutbox: TaskEventOutbox {
    let outbox: PostgresOutbox
    let lease: Lease

    func pendingEvents(channel: String, limit: Int) async throws -> [OutboxEvent] {
        try await outbox.pendingEvents(channel: channel, limit: limit)
    }

    func markDelivered(channel: String, through eventID: Int64) async throws {
        do {
            try await outbox.markDelivered(channel: channel, through: eventID, lease: lease, at: Date())
        } catch is LeaseLost {
            throw StopDelivering()
        }
    }

    func outboxBacklog(channel: String) async throws -> Int { try await outbox.backlog(channel: channel) }
}
