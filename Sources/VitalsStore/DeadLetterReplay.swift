import Foundation
import GRDB
import VitalsDomain
import VitalsFormats

extension IncomingMessage {
    /// A message as the subscription its topic matches reads it: the device id from the topic, the
    /// route's format, device field and time zone; a topic no route matches keeps no device id
    /// (a `bad_topic` dead letter).
    public init(topic: String, payload: [UInt8], receivedAt: Date, routes: [SubscriptionRoute], retained: Bool = false) {
        let match = SubscriptionRoute.match(topic, in: routes)
        self.init(
            topic: topic, deviceID: match?.deviceID, payload: payload, receivedAt: receivedAt,
            format: match?.route.format ?? .canonical, deviceField: match?.route.deviceField,
            timeZone: match?.route.timeZone, matchedSubscription: match != nil, retained: retained)
    }
}

/// What `vitalsd dead-letters replay` did.
public struct DeadLetterReplaySummary: Sendable, Hashable {
    /// Distinct messages ingested again (a message's dead letters share one payload).
    public var messages = 0
    /// Dead letters whose messages were ingested again.
    public var deadLetters = 0
    /// Dead letters whose reason did not come back: marked replayed, never replayed again.
    public var resolved = 0
    /// Dead letters whose messages failed again for the same reason, by reason: left for a later replay.
    public var stillFailing: [String: Int] = [:]
    /// New dead letters the replay wrote (another reason than before), by reason.
    public var newDeadLetters: [String: Int] = [:]
    /// Readings stored, and readings already stored (duplicates).
    public var readingsStored = 0
    public var duplicates = 0
    /// Tasks opened by the replayed readings.
    public var tasksOpened = 0
    /// Dead letters that cannot be replayed: their payload was purged (`database.dead_letter_payload_retention_days`).
    public var payloadPurged = 0
    /// Dead letters that cannot be replayed: only a prefix of their payload is kept (`too_large`).
    public var payloadTruncated = 0

    public init() {}
}

extension AppDatabase {
    /// Ingests dead letters' messages again through the normal path (``ingest(_:pipeline:)``), for
    /// example after the device that sent them was enrolled.
    ///
    /// Each distinct message (payload and topic) is ingested once, in its own transaction, with its
    /// original receive time and the subscription route its topic matches now (format, device field,
    /// time zone). Readings already stored count as duplicates, so a replay is idempotent. For the
    /// late-data rule a replayed reading counts as received now: one measured more than
    /// `alerts.late_after_hours` before the replay goes to the late-data review task instead of paging.
    ///
    /// A dead letter whose reason does not come back is marked (`replayed_at`, `replay_result`) and never
    /// replayed again; one that fails again for the same reason is left for a later replay (and no
    /// second row is written for it). Dead letters whose payload was purged or kept only in part
    /// (`too_large`) are counted and skipped.
    ///
    /// - Parameters:
    ///   - reason: only dead letters with this reason; nil for every reason.
    ///   - since: only dead letters received at or after this instant.
    ///   - routes: the configured subscription routes (`VitalsConfiguration.MQTT.routes()`).
    ///   - pipeline: the decoder, thresholds and alert policy in force.
    ///   - actor: who runs the replay, for the audit trail.
    ///   - now: the replay's instant.
    /// - Throws: database errors; what was replayed before the error stays replayed.
    public func replayDeadLetters(
        reason: DeadLetterReason?, since: Date?, routes: [SubscriptionRoute], pipeline: IngestPipeline, actor: String,
        now: Date = Date()
    ) async throws -> DeadLetterReplaySummary {
        struct Pending {
            var payloadID: Int64
            var topic: String
            var receivedAt: Int64
            var letters: [(id: Int64, reason: String)]
        }
        var summary = DeadLetterReplaySummary()
        struct Letter: Sendable {
            var id: Int64
            var reason: String
            var topic: String
            var receivedAt: Int64
            var payloadID: Int64?
            var payloadBytes: Int
            var kept: Int?
        }
        let letters = try await writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT d.id, d.reason, d.topic, d.received_at, d.payload_id, d.payload_bytes,
                           length(p.payload) AS kept
                    FROM dead_letters d LEFT JOIN dead_letter_payloads p ON p.id = d.payload_id
                    WHERE d.replayed_at IS NULL AND (?1 IS NULL OR d.reason = ?1) AND (?2 IS NULL OR d.received_at >= ?2)
                    ORDER BY d.id
                    """,
                arguments: [reason?.rawValue, since.map(epochMilliseconds)]
            ).map {
                Letter(id: $0["id"], reason: $0["reason"], topic: $0["topic"], receivedAt: $0["received_at"],
                       payloadID: $0["payload_id"], payloadBytes: $0["payload_bytes"], kept: $0["kept"])
            }
        }
        var pending: [Pending] = []
        var index: [String: Int] = [:]
        for letter in letters {
            guard let payloadID = letter.payloadID, let kept = letter.kept else {
                summary.payloadPurged += 1
                continue
            }
            guard kept >= letter.payloadBytes else {
                summary.payloadTruncated += 1
                continue
            }
            let key = "\(payloadID)\u{0}\(letter.topic)"
            if let i = index[key] {
                pending[i].letters.append((letter.id, letter.reason))
            } else {
                index[key] = pending.count
                pending.append(Pending(payloadID: payloadID, topic: letter.topic, receivedAt: letter.receivedAt,
                                       letters: [(letter.id, letter.reason)]))
            }
        }
        for message in pending {
            let payload = try await writer.read { db in
                try Data.fetchOne(db, sql: "SELECT payload FROM dead_letter_payloads WHERE id = ?", arguments: [message.payloadID])
            } ?? Data()
            let receivedAt = dateFromEpochMilliseconds(message.receivedAt)
            let incoming = IncomingMessage(topic: message.topic, payload: Array(payload), receivedAt: receivedAt, routes: routes)
            // Late relative to the replay: received at `receivedAt`, it is late when measured more
            // than late_after before now.
            var replayPipeline = pipeline
            replayPipeline.alerts.lateAfterSeconds = pipeline.alerts.lateAfterSeconds - now.timeIntervalSince(receivedAt)
            let outcome = try await ingest([incoming], pipeline: replayPipeline)

            summary.messages += 1
            summary.deadLetters += message.letters.count
            summary.readingsStored += outcome.readingsStored
            summary.duplicates += outcome.duplicates
            summary.tasksOpened += outcome.tasksOpened.values.reduce(0, +)
            for (r, n) in outcome.deadLetters { summary.newDeadLetters[r.rawValue, default: 0] += n }
            // A repeated dead letter is one of this message's: it failed again for its reason.
            if outcome.repeatedDeadLetters > 0 {
                for letter in message.letters { summary.stillFailing[letter.reason, default: 0] += 1 }
                continue
            }
            var text = "stored \(outcome.readingsStored), duplicates \(outcome.duplicates)"
            if !outcome.deadLetters.isEmpty {
                text += "; dead letters: " + outcome.deadLetters.map { "\($0.key.rawValue) x\($0.value)" }.sorted().joined(separator: ", ")
            }
            let ids = message.letters.map(\.id)
            let result = text
            try await writer.write { db in
                try db.execute(
                    sql: "UPDATE dead_letters SET replayed_at = ?, replay_result = ? WHERE id IN (SELECT value FROM json_each(?))",
                    arguments: [epochMilliseconds(now), result, String(decoding: try JSONEncoder().encode(ids), as: UTF8.self)])
                try Self.audit(db, actor: actor, action: "dead_letter.replay", targetType: "dead_letter",
                               targetID: ids.map(String.init).joined(separator: ","), detail: result, at: now)
            }
            summary.resolved += ids.count
        }
        return summary
    }
}
