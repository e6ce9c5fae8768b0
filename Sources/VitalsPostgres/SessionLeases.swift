import Foundation
import Logging
import PostgresNIO

/// A node's ownership of one MQTT session, as granted by PostgreSQL.
///
/// The epoch rises by one at every takeover: a write fenced by a lease names its epoch, and the
/// database refuses it once another node holds a later one.
public struct Lease: Sendable, Hashable {
    /// The MQTT session (its client id).
    public var session: String
    /// The node that holds it.
    public var node: String
    /// The takeover count of this session, from 1.
    public var epoch: Int64
    /// When the lease expires unless renewed, by the server's clock, as of its acquisition.
    public var expiresAt: Date
    /// How long each renewal extends it, from the server's now.
    public var ttl: Duration

    /// A lease from its parts (as read from `mqtt_session_leases`).
    public init(session: String, node: String, epoch: Int64, expiresAt: Date, ttl: Duration) {
        self.session = session
        self.node = node
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.ttl = ttl
    }
}

/// One row of `mqtt_session_leases`, for `/readyz` and operators.
public struct SessionOwnership: Sendable, Hashable {
    /// The MQTT session (its client id).
    public var session: String
    /// The node holding or last holding it; nil once released.
    public var owner: String?
    /// The takeover count, from 1.
    public var epoch: Int64
    /// When the lease expires (or expired), by the server's clock; nil once released.
    public var expiresAt: Date?

    /// A row from its parts.
    public init(session: String, owner: String?, epoch: Int64, expiresAt: Date?) {
        self.session = session
        self.owner = owner
        self.epoch = epoch
        self.expiresAt = expiresAt
    }
}

/// MQTT session leases in PostgreSQL: who owns which session, with an epoch that fences a former owner.
///
/// Expiry is always judged by the server's `now()`, so the nodes' clocks do not matter. Every
/// statement is one atomic row update: of nodes that try to take the same session at once, exactly
/// one gets it.
public struct SessionLeases: Sendable {
    private let client: PostgresClient
    private let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database (``PostgresSchema/migrate(_:migrations:logger:)``).
    ///   - logger: for postgres-nio's query logging; this type logs nothing itself.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Takes `session` for `node` when it is free (never owned, released, or expired by the server's
    /// clock), raising its epoch by one.
    ///
    /// A live lease is never taken, not even by the node that holds it: a node that restarts under
    /// the same name waits for its former lease to expire, since the former process may still run.
    /// - Parameters:
    ///   - session: the MQTT session (client id).
    ///   - node: this node's name.
    ///   - ttl: how long the lease lasts unless renewed, and how long each renewal extends it
    ///     (millisecond precision, rounded up; more than zero).
    /// - Returns: the lease, or nil when another holder's lease is live.
    /// - Throws: the server's or the connection's error.
    public func acquire(session: String, node: String, ttl: Duration) async throws -> Lease? {
        precondition(ttl > .zero, "a lease's ttl must be positive")
        let ttlMilliseconds = Self.milliseconds(ttl)
        let rows = try await client.query("""
            INSERT INTO mqtt_session_leases AS l (session_id, owner, epoch, expires_at)
            VALUES (\(session), \(node), 1, now() + \(ttlMilliseconds)::float8 * interval '1 millisecond')
            ON CONFLICT (session_id) DO UPDATE
                SET owner = excluded.owner, epoch = l.epoch + 1, expires_at = excluded.expires_at
                WHERE l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at <= now()
            RETURNING l.epoch, l.expires_at
            """, logger: logger).decode((Int64, Date).self).collected()
        guard let (epoch, expiresAt) = rows.first else { return nil }
        return Lease(session: session, node: node, epoch: epoch, expiresAt: expiresAt, ttl: ttl)
    }

    /// Extends `lease` by its ttl from the server's now, when it still holds.
    ///
    /// A lease that expired but that no other node took is extended too: its epoch still fences.
    /// - Parameter lease: the lease as acquired.
    /// - Returns: false when it was taken over or released (owner or epoch changed): the node must
    ///   stop ingesting the session.
    /// - Throws: the server's or the connection's error (the lease's state is then unknown).
    public func renew(_ lease: Lease) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE mqtt_session_leases
            SET expires_at = now() + \(Self.milliseconds(lease.ttl))::float8 * interval '1 millisecond'
            WHERE session_id = \(lease.session) AND owner = \(lease.node) AND epoch = \(lease.epoch)
            RETURNING epoch
            """, logger: logger).decode(Int64.self).collected()
        return !rows.isEmpty
    }

    /// Gives `lease` up, so that another node may take the session at once (keeping its epoch).
    /// - Returns: false when it was no longer held (taken over or released before).
    /// - Throws: the server's or the connection's error.
    @discardableResult
    public func release(_ lease: Lease) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE mqtt_session_leases SET owner = NULL, expires_at = NULL
            WHERE session_id = \(lease.session) AND owner = \(lease.node) AND epoch = \(lease.epoch)
            RETURNING epoch
            """, logger: logger).decode(Int64.self).collected()
        return !rows.isEmpty
    }

    /// Gives up `session` if `node` holds it, whatever the epoch: for a node that stops without
    /// knowing whether its last try took the lease. Node names are unique among running nodes.
    /// - Returns: true when the node held it.
    /// - Throws: the server's or the connection's error.
    @discardableResult
    public func release(session: String, node: String) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE mqtt_session_leases SET owner = NULL, expires_at = NULL
            WHERE session_id = \(session) AND owner = \(node)
            RETURNING epoch
            """, logger: logger).decode(Int64.self).collected()
        return !rows.isEmpty
    }

    /// Records that `node` is alive now, and counts the nodes alive: those seen within `ttl` by the
    /// server's clock, `node` included.
    /// - Throws: the server's or the connection's error.
    public func heartbeat(node: String, ttl: Duration) async throws -> Int {
        let rows = try await client.query("""
            WITH seen AS (
                INSERT INTO cluster_nodes (node, seen_at) VALUES (\(node), now())
                ON CONFLICT (node) DO UPDATE SET seen_at = now()
                RETURNING node
            )
            SELECT count(*) FROM cluster_nodes
            WHERE node <> \(node) AND seen_at > now() - \(Self.milliseconds(ttl))::float8 * interval '1 millisecond'
            """, logger: logger).decode(Int64.self).collected()
        return Int(rows.first ?? 0) + 1
    }

    /// Whether another running process calls itself `node`: its heartbeat is younger than `ttl` and
    /// still moves after one more `ttl` (checked here by waiting). A heartbeat that stops within
    /// that time is a former process of this node (killed, restarting), whose leases expire.
    /// - Throws: the server's or the connection's error.
    public func nameInUse(node: String, ttl: Duration) async throws -> Bool {
        func seen() async throws -> Date? {
            try await client.query("""
                SELECT seen_at FROM cluster_nodes
                WHERE node = \(node) AND seen_at > now() - \(Self.milliseconds(ttl))::float8 * interval '1 millisecond'
                """, logger: logger).decode(Date.self).collected().first
        }
        guard let first = try await seen() else { return false }
        try await Task.sleep(for: ttl + .milliseconds(500))
        guard let second = try await seen() else { return false }
        return second > first
    }

    /// Removes `node` from the nodes alive (a clean shutdown), so the others count without it at once.
    /// - Throws: the server's or the connection's error.
    public func leave(node: String) async throws {
        try await client.query("DELETE FROM cluster_nodes WHERE node = \(node)", logger: logger)
    }

    /// Every session's lease row, ordered by session.
    /// - Throws: the server's or the connection's error.
    public func owners() async throws -> [SessionOwnership] {
        try await client.query("""
            SELECT session_id, owner, epoch, expires_at FROM mqtt_session_leases ORDER BY session_id
            """, logger: logger).decode((String, String?, Int64, Date?).self).collected()
            .map { SessionOwnership(session: $0.0, owner: $0.1, epoch: $0.2, expiresAt: $0.3) }
    }

    /// `duration` in whole milliseconds, rounded up so that a lease never lasts less than asked.
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
