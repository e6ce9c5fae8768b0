import Foundation
import GRDB
import VitalsDomain

extension AppDatabase {
    /// The events after a channel's cursor, oldest first.
    ///
    /// A channel seen for the first time starts at the newest event: enabling a webhook does not
    /// replay the whole history to it (F15).
    /// - Parameters:
    ///   - channel: `mqtt` or `webhook`.
    ///   - limit: most events returned.
    public func pendingEvents(channel: String, limit: Int) async throws -> [OutboxEvent] {
        // A read, as the delivery loop polls: the write that creates a cursor happens once per channel.
        let afterCursor: @Sendable (Database) throws -> [OutboxEvent]? = { db in
            guard let cursor = try Int64.fetchOne(
                db, sql: "SELECT last_event_id FROM delivery_cursors WHERE channel = ?", arguments: [channel]) else { return nil }
            return try Row.fetchAll(
                db, sql: "SELECT id, event_id, patient_id, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?", arguments: [cursor, limit]
            ).map { OutboxEvent(id: $0["id"], eventID: $0["event_id"], patientID: $0["patient_id"], body: $0["body"]) }
        }
        if let events = try await writer.read(afterCursor) { return events }
        try await writer.write { db in _ = try Self.cursor(db, channel: channel, now: Date()) }
        return try await writer.read(afterCursor) ?? []
    }

    /// Starts a delivery channel at the newest event, unless it has a cursor already. Call it before
    /// ingest starts, so that nothing raised after start-up is skipped and nothing older is replayed.
    public func openDeliveryChannel(_ channel: String, now: Date = Date()) throws {
        try writer.write { db in _ = try Self.cursor(db, channel: channel, now: now) }
    }

    /// Records that a channel delivered every event up to `eventID`. Never moves a cursor back.
    public func markDelivered(channel: String, through eventID: Int64, at: Date = Date()) async throws {
        try await writer.write { db in
            _ = try Self.cursor(db, channel: channel, now: at)
            try db.execute(
                sql: "UPDATE delivery_cursors SET last_event_id = max(last_event_id, ?), updated_at = ? WHERE channel = ?",
                arguments: [eventID, epochMilliseconds(at), channel])
        }
    }

    /// Events not yet delivered on a channel.
    public func outboxBacklog(channel: String) async throws -> Int {
        try await writer.read { db in
            let cursor = try Int64.fetchOne(db, sql: "SELECT last_event_id FROM delivery_cursors WHERE channel = ?", arguments: [channel]) ?? 0
            return try Int.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE id > ?", arguments: [cursor]) ?? 0
        }
    }

    /// Removes outbox rows older than `days` that every channel in `channels` has delivered.
    /// - Returns: rows removed.
    public func purgeDeliveredEvents(channels: [String], olderThanDays days: Int, now: Date = Date()) throws -> Int {
        guard !channels.isEmpty else { return 0 }
        return try writer.write { db in
            var floor = Int64.max
            for channel in channels { floor = min(floor, try Self.cursor(db, channel: channel, now: now)) }
            let cutoff = epochMilliseconds(now) - Int64(days) * 86_400_000
            try db.execute(sql: "DELETE FROM outbox WHERE id <= ? AND created_at < ?", arguments: [floor, cutoff])
            return db.changesCount
        }
    }

    private static func cursor(_ db: Database, channel: String, now: Date) throws -> Int64 {
        if let id = try Int64.fetchOne(db, sql: "SELECT last_event_id FROM delivery_cursors WHERE channel = ?", arguments: [channel]) {
            return id
        }
        let newest = try Int64.fetchOne(db, sql: "SELECT max(id) FROM outbox") ?? 0
        try db.execute(
            sql: "INSERT INTO delivery_cursors(channel, last_event_id, updated_at) VALUES (?, ?, ?)",
            arguments: [channel, newest, epochMilliseconds(now)])
        return newest
    }
}
