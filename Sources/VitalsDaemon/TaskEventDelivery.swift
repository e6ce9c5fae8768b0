import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import MQTTClient
import ServiceLifecycle
import VitalsDomain
import VitalsStore

/// Signs webhook requests: `X-Vitalsd-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`,
/// keyed with the shared secret, with the Unix time in `X-Vitalsd-Timestamp`. A receiver recomputes
/// the HMAC over the same bytes, compares in constant time, and refuses old timestamps (replays).
public struct WebhookSignature: Sendable {
    let key: SymmetricKey

    /// - Parameter secret: the shared secret (the first line of `delivery.webhook_secret_file`).
    public init(secret: String) {
        key = SymmetricKey(data: Data(secret.utf8))
    }

    /// The header value for a body sent at `timestamp` (Unix seconds).
    public func signature(body: Data, timestamp: Int) -> String {
        var message = Data("\(timestamp).".utf8)
        message.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }
}

/// Where task events go, besides the database.
public struct DeliveryTargets: Sendable {
    /// Publishes to MQTT; nil when `delivery.mqtt_enabled` is false.
    public var mqtt: (@Sendable () async throws -> MQTTPublisher)?
    /// Topic template; `{patient_id}` is replaced.
    public var mqttTopic: String
    public var webhookURL: URL?
    public var webhookSignature: WebhookSignature?
    public var webhookTimeout: Double
    /// Longest wait between retries, in seconds.
    public var retryMax: Double
    /// How often an idle channel looks for new events.
    public var pollInterval: Duration

    public init(
        mqtt: (@Sendable () async throws -> MQTTPublisher)?, mqttTopic: String, webhookURL: URL?, webhookSignature: WebhookSignature?,
        webhookTimeout: Double = 10, retryMax: Double = 60, pollInterval: Duration = .milliseconds(250)
    ) {
        self.mqtt = mqtt
        self.mqttTopic = mqttTopic
        self.webhookURL = webhookURL
        self.webhookSignature = webhookSignature
        self.webhookTimeout = webhookTimeout
        self.retryMax = retryMax
        self.pollInterval = pollInterval
    }

    /// The channels in use: `mqtt`, `webhook`.
    public var channels: [String] {
        (mqtt == nil ? [] : ["mqtt"]) + (webhookURL == nil ? [] : ["webhook"])
    }
}

/// Delivers the outbox of task events, at least once and in order, to each channel.
///
/// Each channel keeps a cursor in the database (SQLite, or PostgreSQL under the channel's lease), moved only after the receiver accepted the events (MQTT:
/// PUBACK for every message; webhook: a 2xx answer). A receiver that is down is retried with a wait
/// doubling from 1 s up to `retry_max_seconds`; events wait in the outbox meanwhile and across
/// restarts. A repeat after a crash carries the same `event_id`, the idempotency key.
public struct TaskEventDelivery: Service {
    let outbox: any TaskEventOutbox
    let targets: DeliveryTargets
    let only: String?
    let metrics: VitalsMetrics?
    let logger: Logger

    /// Delivers every channel of `targets` from the SQLite outbox.
    public init(database: AppDatabase, targets: DeliveryTargets, metrics: VitalsMetrics?, logger: Logger) {
        self.init(outbox: SQLiteOutbox(database: database), targets: targets, metrics: metrics, logger: logger)
    }

    /// - Parameters:
    ///   - outbox: where events wait and cursors are kept.
    ///   - targets: the channels and their settings.
    ///   - channel: deliver this channel only (`mqtt` or `webhook`); nil: every channel of `targets`.
    public init(outbox: any TaskEventOutbox, targets: DeliveryTargets, channel: String? = nil, metrics: VitalsMetrics?, logger: Logger) {
        self.outbox = outbox
        self.targets = targets
        self.only = channel
        self.metrics = metrics
        self.logger = logger
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            if let make = targets.mqtt, only == nil || only == "mqtt" {
                group.addTask { await deliverMQTT(make) }
            }
            if let url = targets.webhookURL, let signature = targets.webhookSignature, only == nil || only == "webhook" {
                group.addTask { await deliverWebhook(url, signature) }
            }
        }
    }

    /// Runs one channel: fetch pending events, send them, move the cursor; back off on failure.
    /// Database calls use the database's async API, off the cooperative pool: another process
    /// holding the write lock must not stall the HTTP endpoints.
    private func loop(channel: String, batch: Int, send: ([OutboxEvent]) async throws -> Void) async {
        let database = self.outbox
        var wait = 1.0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var pause = targets.pollInterval
            do {
                let events = try await database.pendingEvents(channel: channel, limit: batch)
                if !events.isEmpty {
                    try await send(events)
                    let last = events.last!.id
                    try await database.markDelivered(channel: channel, through: last)
                    let left = try await database.outboxBacklog(channel: channel)
                    metrics?.recordDelivery(channel: channel, delivered: events.count, failed: false, backlog: left)
                    wait = 1
                    continue
                }
                metrics?.recordDelivery(channel: channel, delivered: 0, failed: false, backlog: 0)
            } catch is CancellationError {
                return
            } catch is StopDelivering {
                return
            } catch {
                let left = try? await database.outboxBacklog(channel: channel)
                metrics?.recordDelivery(channel: channel, delivered: 0, failed: true, backlog: left)
                logger.warning("task event delivery failed; will retry", metadata: [
                    "delivery.channel": "\(channel)", "delivery.retry_seconds": "\(Int(wait))", "error": "\(error)"])
                pause = .milliseconds(Int(wait * 1000))
                wait = min(wait * 2, targets.retryMax)
            }
            let sleep = pause
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: sleep) }
        }
    }

    private func deliverMQTT(_ make: @Sendable () async throws -> MQTTPublisher) async {
        let holder = PublisherHolder()
        defer { holder.close() }
        await loop(channel: "mqtt", batch: 200) { events in
            do {
                let publisher: MQTTPublisher
                if let held = holder.publisher { publisher = held } else { publisher = try await make() }
                holder.publisher = publisher
                for e in events {
                    let topic = targets.mqttTopic.replacingOccurrences(of: "{patient_id}", with: e.patientID)
                    try publisher.publish(topic: topic, payload: Array(e.body.utf8))
                }
                try await publisher.waitUntilDelivered(timeout: 10)
            } catch {
                holder.close()
                throw error
            }
        }
    }

    private func deliverWebhook(_ url: URL, _ signature: WebhookSignature) async {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = targets.webhookTimeout
        let session = URLSession(configuration: configuration)
        defer { session.finishTasksAndInvalidate() }
        await loop(channel: "webhook", batch: 20) { events in
            // One request per event, in order; the cursor moves only when all of them were accepted,
            // so a failure part-way re-sends the accepted ones with the same idempotency key.
            for e in events {
                let body = Data(e.body.utf8)
                let timestamp = Int(Date().timeIntervalSince1970)
                var request = URLRequest(url: url)
                request.httpMethod = "POST"
                request.httpBody = body
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.setValue(e.eventID, forHTTPHeaderField: "Idempotency-Key")
                request.setValue(String(timestamp), forHTTPHeaderField: "X-Vitalsd-Timestamp")
                request.setValue(signature.signature(body: body, timestamp: timestamp), forHTTPHeaderField: "X-Vitalsd-Signature")
                let (_, response) = try await session.data(for: request)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                guard (200..<300).contains(status) else {
                    throw DeliveryError(description: "webhook answered HTTP \(status) to event \(e.id)")
                }
                let (database, id) = (self.outbox, e.id)
                try await database.markDelivered(channel: "webhook", through: id)
            }
        }
    }
}

struct DeliveryError: Error, CustomStringConvertible {
    var description: String
}

/// Thrown by an outbox whose right to deliver the channel ended (on PostgreSQL, its lease): the loop
/// stops without retrying.
public struct StopDelivering: Error, Sendable {
    public init() {}
}

/// Where the delivery loop reads task events and records what each channel delivered.
public protocol TaskEventOutbox: Sendable {
    /// The events after `channel`'s cursor, oldest first, at most `limit`.
    func pendingEvents(channel: String, limit: Int) async throws -> [OutboxEvent]
    /// Moves `channel`'s cursor to `eventID` (never back).
    /// - Throws: ``StopDelivering`` when this process may no longer deliver the channel.
    func markDelivered(channel: String, through eventID: Int64) async throws
    /// Events not yet delivered on `channel`.
    func outboxBacklog(channel: String) async throws -> Int
}

/// The SQLite outbox (``AppDatabase``).
struct SQLiteOutbox: TaskEventOutbox {
    let database: AppDatabase

    func pendingEvents(channel: String, limit: Int) async throws -> [OutboxEvent] {
        let database = database
        return try await databaseWork { try await database.pendingEvents(channel: channel, limit: limit) }
    }

    func markDelivered(channel: String, through eventID: Int64) async throws {
        try await database.markDelivered(channel: channel, through: eventID)
    }

    func outboxBacklog(channel: String) async throws -> Int { try await database.outboxBacklog(channel: channel) }
}

/// The MQTT publisher of the delivery loop, kept between rounds. Used by one task only.
private final class PublisherHolder: @unchecked Sendable {
    var publisher: MQTTPublisher?
    func close() {
        publisher?.close()
        publisher = nil
    }
}
