import Logging
import Synchronization

/// This node's place among the nodes alive, and the share of the MQTT sessions it may own.
///
/// Every `interval` it records a heartbeat and counts the nodes seen within `ttl`
/// (``SessionLeases/heartbeat(node:ttl:)``). With S sessions and N nodes alive, a node may own up
/// to ⌈S / N⌉: it takes a free session only below that share, and hands over the sessions above it
/// (the last by name), so that a node that joins gets its part of the ingest. When a node dies,
/// the others may take its sessions as soon as its leases expire, up to their share; its heartbeat
/// goes stale after the same ttl, and the shares grow.
public final class ClusterMembership: Sendable {
    /// This node's name.
    public let node: String
    private let sessionCount: Int
    private let leases: SessionLeases
    private let ttl: Duration
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex<(nodes: Int, owned: Set<String>, counted: Bool)>((1, [], false))

    /// - Parameters:
    ///   - node: this node's name.
    ///   - sessionCount: the MQTT sessions configured (the same on every node).
    ///   - leases: the lease and node tables.
    ///   - ttl: how long a node counts as alive after its last heartbeat (the lease's ttl).
    ///   - interval: how often to record a heartbeat (the lease's renewal interval).
    ///   - logger: one line when the number of nodes alive changes.
    public init(node: String, sessionCount: Int, leases: SessionLeases, ttl: Duration, interval: Duration, logger: Logger) {
        self.node = node
        self.sessionCount = sessionCount
        self.leases = leases
        self.ttl = ttl
        self.interval = interval
        self.logger = logger
    }

    /// Whether a heartbeat has been recorded: the database answered this node once.
    public var hasCounted: Bool { state.withLock { $0.counted } }

    /// The nodes alive at the last heartbeat, this one included (1 before the first).
    public var nodesAlive: Int { state.withLock { $0.nodes } }

    /// The most sessions this node may own: ⌈sessions / nodes alive⌉.
    public var share: Int { Self.share(sessions: sessionCount, nodes: nodesAlive) }

    /// ⌈sessions / nodes⌉, at least 1.
    public static func share(sessions: Int, nodes: Int) -> Int {
        max(1, (sessions + max(1, nodes) - 1) / max(1, nodes))
    }

    /// Reserves a place for `session` in this node's share, before trying to take its lease: true
    /// when this node has counted the nodes alive once and owns (or has reserved) fewer sessions than
    /// its share. Atomic, so that the sessions of one node trying at once cannot all pass. Undo with
    /// `owns(session, false)` when the lease was not taken. (Before its first count, a node that
    /// starts beside others would take every free session and hand most over a moment later.)
    public func reserve(_ session: String) -> Bool {
        let share = share
        return state.withLock { s in
            guard s.counted, s.owned.count < share || s.owned.contains(session) else { return false }
            s.owned.insert(session)
            return true
        }
    }

    /// Whether this node should hand `session` over: it owns more than its share, and `session` is
    /// one of those past the share in name order.
    public func shouldRelease(_ session: String) -> Bool {
        let share = share
        return state.withLock { s in
            guard s.owned.count > share, let index = s.owned.sorted().firstIndex(of: session) else { return false }
            return index >= share
        }
    }

    /// Notes a change of this node's role in `session`.
    public func owns(_ session: String, _ owned: Bool) {
        state.withLock { s in
            if owned { s.owned.insert(session) } else { s.owned.remove(session) }
        }
    }

    /// Records heartbeats until cancelled, then leaves the table.
    public func run() async {
        while !Task.isCancelled {
            do {
                let nodes = try await leases.heartbeat(node: node, ttl: ttl)
                let before = state.withLock { s -> Int in
                    defer {
                        s.nodes = nodes
                        s.counted = true
                    }
                    return s.nodes
                }
                if nodes != before {
                    logger.notice("nodes alive changed", metadata: [
                        "cluster.nodes": "\(nodes)", "cluster.share": "\(Self.share(sessions: sessionCount, nodes: nodes))",
                    ])
                }
            } catch {
                logger.warning("could not record this node's heartbeat", metadata: ["db.error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
        let leases = self.leases, node = self.node
        // In a task of its own, which the cancellation of this one does not reach.
        _ = try? await Task { try await leases.leave(node: node) }.value
    }
}
