import Logging
import Synchronization

/// The timings of a session lease, in one value.
public struct LeaseTiming: Sendable, Hashable {
    /// How long the lease lasts after each renewal, by the server's clock.
    public var ttl: Duration
    /// How long after a confirmed renewal the next one is sent.
    public var renewInterval: Duration
    /// How long before the lease could expire the owner stops acknowledging.
    public var safetyMargin: Duration
    /// How often a standby tries to take the lease.
    public var standbyRetry: Duration

    /// - Throws: ``LeaseTimingError`` unless `0 < renewInterval < ttl - safetyMargin`,
    ///   `safetyMargin > 0` and `standbyRetry > 0`.
    public init(ttl: Duration, renewInterval: Duration, safetyMargin: Duration, standbyRetry: Duration) throws(LeaseTimingError) {
        _ = try LeaseKeeper<ContinuousClock.Instant>(
            ttl: ttl, renewInterval: renewInterval, safetyMargin: safetyMargin, acquiredAt: .now)
        guard standbyRetry > .zero else { throw LeaseTimingError(message: "the standby's retry interval must be positive") }
        self.ttl = ttl
        self.renewInterval = renewInterval
        self.safetyMargin = safetyMargin
        self.standbyRetry = standbyRetry
    }
}

/// This node's part in one MQTT session: the owner, which alone may ingest and acknowledge it, or a
/// standby waiting for the lease.
public enum SessionRole: Sendable, Hashable {
    /// Another node owns the session (or nobody, until this node's next try).
    case standby
    /// This node holds the lease.
    case owner(Lease)
}

/// Holds one lease for this node (an MQTT session's, or a delivery channel's: ``PostgresOutbox/leaseName(channel:)``): as a standby it tries to take the lease every
/// `standbyRetry`; as the owner it renews it every `renewInterval` and steps down when a renewal
/// says another node took over or when, by this node's own monotonic clock, the last confirmed
/// renewal is older than `ttl - safetyMargin` (``LeaseKeeper``). On cancellation (shutdown) it
/// releases the lease, so that a standby takes the session at once.
///
/// ``currentLease()`` is what the ingest asks before each batch: it answers from the clock at the
/// moment of the call, not from the renewal loop, so a process that was frozen (SIGSTOP, a stalled
/// VM) and resumes gets nil at once, before its loop has run. The batch's transaction checks the
/// lease's epoch again (``PostgresIngest/store(batch:lease:)``), which fences a former owner even
/// when its clock is wrong.
public final class SessionLeaseHolder<C: Clock>: Sendable where C.Duration == Duration {
    /// The MQTT session (client id).
    public let session: String
    /// This node's name.
    public let node: String
    private let leases: SessionLeases
    private let timing: LeaseTiming
    private let clock: C
    private let logger: Logger
    private let membership: ClusterMembership?
    private let state: Mutex<(lease: Lease, keeper: LeaseKeeper<C.Instant>)?> = Mutex(nil)

    /// - Parameters:
    ///   - leases: the lease table.
    ///   - session: the MQTT session (client id) to hold.
    ///   - node: this node's name, as other nodes and operators see it.
    ///   - timing: ttl, renewal, margin and standby retry.
    ///   - clock: a monotonic clock (`ContinuousClock()` in production).
    ///   - logger: one line per change of role, with the session, node and epoch.
    ///   - membership: this node's share of the sessions: it takes the lease only below its share and
    ///     hands it over above it; nil takes and keeps it whenever it can.
    public init(
        leases: SessionLeases, session: String, node: String, timing: LeaseTiming, clock: C, logger: Logger,
        membership: ClusterMembership? = nil
    ) {
        self.membership = membership
        self.leases = leases
        self.session = session
        self.node = node
        self.timing = timing
        self.clock = clock
        self.logger = logger
    }

    /// The lease under which this node may commit and acknowledge a batch now, or nil.
    public func currentLease() -> Lease? {
        let now = clock.now
        return state.withLock { current in
            guard let current, current.keeper.mayAcknowledge(at: now) else { return nil }
            return current.lease
        }
    }

    /// This node's role now (``currentLease()`` decides, so an owner whose lease is too old is a standby).
    public var role: SessionRole { currentLease().map(SessionRole.owner) ?? .standby }

    /// Tries, renews and steps down until the task is cancelled; then releases a lease it holds.
    ///
    /// - Parameter onChange: called with each change of role, in order: `.owner` when the lease was
    ///   taken (connect the session), `.standby` when it was lost (stop acknowledging, disconnect).
    ///   Not called for the release at cancellation. Database errors are logged and retried: a
    ///   standby keeps trying; an owner keeps renewing until its margin runs out.
    public func run(onChange: @Sendable (SessionRole) async -> Void = { _ in }) async {
        while !Task.isCancelled {
            guard membership?.reserve(session) ?? true else {
                try? await clock.sleep(for: timing.standbyRetry)
                continue
            }
            guard let lease = await acquire() else {
                membership?.owns(session, false)
                try? await clock.sleep(for: timing.standbyRetry)
                continue
            }
            logger.notice("took the lease", metadata: metadata(lease))
            await onChange(.owner(lease))
            let handedOver = await holdUntilLost(lease)
            membership?.owns(session, false)
            if Task.isCancelled { break }
            if handedOver {
                // Released at once: the ingest stops on its own check of the lease, and a batch it
                // still commits is fenced off by the released row.
                logger.notice("handing the MQTT session over: this node owns more than its share", metadata: metadata(lease))
                _ = try? await leases.release(lease)
            } else {
                logger.warning("lost the lease; standing by", metadata: metadata(lease))
            }
            await onChange(.standby)
        }
        let held = state.withLock { held -> Lease? in
            defer { held = nil }
            return held?.lease
        }
        let leases = self.leases
        guard let held else {
            // A try cut short by the shutdown may have taken the lease without this node learning
            // it (the answer lost to the cancellation): give up whatever this node holds of it.
            let (session, node) = (self.session, self.node)
            if (try? await Task { try await leases.release(session: session, node: node) }.value) == true {
                logger.notice("released the lease taken as the node stopped", metadata: ["lease.name": "\(session)", "node": "\(node)"])
            }
            return
        }
        do {
            // Best effort: a lease not released expires after its ttl. In a task of its own, which
            // the cancellation of this one (the shutdown) does not reach.
            _ = try await Task { try await leases.release(held) }.value
            logger.notice("released the lease", metadata: metadata(held))
        } catch {
            logger.warning("could not release the lease; it expires by itself",
                           metadata: metadata(held).merging(["db.error": "\(error)"]) { a, _ in a })
        }
    }

    /// One try to take the lease; on success the state holds it with its keeper.
    private func acquire() async -> Lease? {
        let sentAt = clock.now
        do {
            guard let lease = try await leases.acquire(session: session, node: node, ttl: timing.ttl) else { return nil }
            let keeper = try LeaseKeeper(
                ttl: timing.ttl, renewInterval: timing.renewInterval, safetyMargin: timing.safetyMargin, acquiredAt: sentAt)
            state.withLock { $0 = (lease, keeper) }
            return lease
        } catch {
            logger.warning("could not try the lease", metadata: ["lease.name": "\(session)", "db.error": "\(error)"])
            return nil
        }
    }

    /// Renews `lease` on time until a renewal says it was taken over, the keeper says stop, this
    /// node should hand the session over, or the task is cancelled (the state keeps the lease then,
    /// for the release).
    /// - Returns: true when the session is to be handed over (the state no longer holds the lease).
    private func holdUntilLost(_ lease: Lease) async -> Bool {
        while !Task.isCancelled {
            guard let keeper = state.withLock({ $0?.keeper }) else { return false }
            let now = clock.now
            if membership?.shouldRelease(session) == true {
                state.withLock { $0 = nil }
                return true
            }
            switch keeper.action(at: now) {
            case .keep:
                guard let deadline = keeper.nextDeadline(after: now) else { break }
                try? await clock.sleep(until: deadline, tolerance: nil)
            case .renew:
                let sentAt = clock.now
                do {
                    guard try await leases.renew(lease) else {
                        state.withLock { $0 = nil }
                        return false
                    }
                    state.withLock { $0?.keeper.confirmed(sentAt: sentAt) }
                } catch {
                    // The lease's state is unknown: retry soon, while the margin lasts.
                    logger.warning("could not renew the lease", metadata: metadata(lease).merging(["db.error": "\(error)"]) { a, _ in a })
                    try? await clock.sleep(for: timing.renewInterval / 4)
                }
            case .stopAcknowledging:
                state.withLock { $0 = nil }
                return false
            }
        }
        return false
    }

    private func metadata(_ lease: Lease) -> Logger.Metadata {
        ["lease.name": "\(lease.session)", "node": "\(lease.node)", "lease.epoch": "\(lease.epoch)"]
    }
}
