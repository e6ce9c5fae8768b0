import Foundation
import MQTTClient
import Metrics
import Prometheus
import VitalsDomain
import VitalsStore

/// The daemon's metrics, recorded through swift-metrics into a Prometheus registry of its own
/// (no global bootstrap, so tests can run several daemons in one process).
///
/// Exposed at `/metrics` in the Prometheus text format:
/// - `vitalsd_messages_received_total`, `vitalsd_readings_stored_total`, `vitalsd_duplicates_total`;
/// - `vitalsd_dead_letters_total{reason}` for every dead-letter reason;
/// - `vitalsd_tasks_opened_total{priority}` (tasks that became `critical` or `warning`: opened at that
///   priority, or raised to it), `vitalsd_tasks_updated_total`, and the gauge `vitalsd_tasks_open{priority}`
///   (unresolved tasks by priority, `critical`, `warning`, `routine`, read at each scrape);
/// - `vitalsd_broker_connected` (0/1), `vitalsd_broker_subscribed` (0/1), `vitalsd_broker_reconnects`;
/// - `vitalsd_broker_session_takeovers` (connections the broker closed because another client took
///   the client id, since start), `vitalsd_broker_session_taken_over` (0/1, 3 or more in a row);
/// - `vitalsd_breaches_suppressed_total` (a condition still active after its task was resolved),
///   `vitalsd_late_breaches_total` (breaches sent to a late-data review task);
/// - `vitalsd_tasks_escalated_total`, `vitalsd_tasks_awaiting_acknowledgement` (open critical tasks on
///   an escalation clock), and `vitalsd_escalations_total{level}` by the level reached: `1` (the
///   owner or care manager), `2` (the backup), `3+` (the backup again);
/// - `vitalsd_outbox_backlog{channel}` (task events not yet delivered), `vitalsd_task_events_delivered_total{channel}`,
///   `vitalsd_delivery_failures_total{channel}` for the channels `mqtt` and `webhook`, and for `fhir`
///   (the FHIR push channel: readings waiting, Observations delivered);
/// - `vitalsd_ingest_latency_seconds`: from the moment the network loop read a message to the commit
///   of its batch (a histogram, one observation per message).
public final class VitalsMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let messages: Metrics.Counter
    private let readings: Metrics.Counter
    private let duplicates: Metrics.Counter
    private let tasksUpdated: Metrics.Counter
    private let deadLetters: [DeadLetterReason: Metrics.Counter]
    private let tasksOpened: [TaskPriority: Metrics.Counter]
    private let tasksOpen: [TaskPriority: Metrics.Gauge]
    private let connected: Metrics.Gauge
    private let subscribed: Metrics.Gauge
    private let reconnects: Metrics.Gauge
    private let takeovers: Metrics.Gauge
    private let takenOver: Metrics.Gauge
    private let latency: Metrics.Timer
    private let suppressed: Metrics.Counter
    private let late: Metrics.Counter
    private let escalated: Metrics.Counter
    private let unreached: Metrics.Counter
    /// By level label: `1`, `2`, `3+`.
    private let escalationsByLevel: [String: Metrics.Counter]
    private let awaitingAcknowledgement: Metrics.Gauge
    private let backlog: [String: Metrics.Gauge]
    private let delivered: [String: Metrics.Counter]
    private let deliveryFailures: [String: Metrics.Counter]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
        ]
        self.registry = registry
        messages = Metrics.Counter(label: "vitalsd_messages_received_total", factory: factory)
        readings = Metrics.Counter(label: "vitalsd_readings_stored_total", factory: factory)
        duplicates = Metrics.Counter(label: "vitalsd_duplicates_total", factory: factory)
        tasksUpdated = Metrics.Counter(label: "vitalsd_tasks_updated_total", factory: factory)
        deadLetters = Dictionary(uniqueKeysWithValues: DeadLetterReason.allCases.map {
            ($0, Metrics.Counter(label: "vitalsd_dead_letters_total", dimensions: [("reason", $0.rawValue)], factory: factory))
        })
        tasksOpened = Dictionary(uniqueKeysWithValues: [TaskPriority.critical, .warning].map {
            ($0, Metrics.Counter(label: "vitalsd_tasks_opened_total", dimensions: [("priority", $0.rawValue)], factory: factory))
        })
        tasksOpen = Dictionary(uniqueKeysWithValues: TaskPriority.allCases.map {
            ($0, Metrics.Gauge(label: "vitalsd_tasks_open", dimensions: [("priority", $0.rawValue)], factory: factory))
        })
        connected = Metrics.Gauge(label: "vitalsd_broker_connected", factory: factory)
        subscribed = Metrics.Gauge(label: "vitalsd_broker_subscribed", factory: factory)
        reconnects = Metrics.Gauge(label: "vitalsd_broker_reconnects", factory: factory)
        takeovers = Metrics.Gauge(label: "vitalsd_broker_session_takeovers", factory: factory)
        takenOver = Metrics.Gauge(label: "vitalsd_broker_session_taken_over", factory: factory)
        latency = Metrics.Timer(label: "vitalsd_ingest_latency_seconds", factory: factory)
        suppressed = Metrics.Counter(label: "vitalsd_breaches_suppressed_total", factory: factory)
        late = Metrics.Counter(label: "vitalsd_late_breaches_total", factory: factory)
        escalated = Metrics.Counter(label: "vitalsd_tasks_escalated_total", factory: factory)
        unreached = Metrics.Counter(label: "vitalsd_escalations_unreached_total", factory: factory)
        escalationsByLevel = Dictionary(uniqueKeysWithValues: ["1", "2", "3+"].map {
            ($0, Metrics.Counter(label: "vitalsd_escalations_total", dimensions: [("level", $0)], factory: factory))
        })
        awaitingAcknowledgement = Metrics.Gauge(label: "vitalsd_tasks_awaiting_acknowledgement", factory: factory)
        /// One metric per delivery channel, labelled `channel`.
        func perChannel<M>(_ make: (String) -> M) -> [String: M] {
            Dictionary(uniqueKeysWithValues: ["mqtt", "webhook", "fhir"].map { ($0, make($0)) })
        }
        backlog = perChannel { Metrics.Gauge(label: "vitalsd_outbox_backlog", dimensions: [("channel", $0)], factory: factory) }
        delivered = perChannel {
            Metrics.Counter(label: "vitalsd_task_events_delivered_total", dimensions: [("channel", $0)], factory: factory)
        }
        deliveryFailures = perChannel {
            Metrics.Counter(label: "vitalsd_delivery_failures_total", dimensions: [("channel", $0)], factory: factory)
        }
    }

    /// Records a run of the alert timers: tasks escalated, and open critical tasks still waiting.
    /// - Parameter unreached: escalations that reached nobody (no owner, care manager or backup).
    func recordEscalations(_ count: Int, byLevel: [Int: Int], unreached nobody: Int = 0, waiting: Int) {
        if count > 0 { escalated.increment(by: count) }
        if nobody > 0 { unreached.increment(by: nobody) }
        for (level, n) in byLevel where n > 0 { escalationsByLevel[level >= 3 ? "3+" : String(level)]?.increment(by: n) }
        awaitingAcknowledgement.record(waiting)
    }

    /// Records a delivery round of a channel: events delivered, or a failure, and the backlog left.
    public func recordDelivery(channel: String, delivered count: Int, failed: Bool, backlog left: Int?) {
        if count > 0 { delivered[channel]?.increment(by: count) }
        if failed { deliveryFailures[channel]?.increment() }
        if let left { backlog[channel]?.record(left) }
    }

    /// Records a committed batch.
    func record(_ summary: IngestSummary, messages received: [MQTTMessage], committedAt: ContinuousClock.Instant) {
        messages.increment(by: summary.messages)
        readings.increment(by: summary.readingsStored)
        duplicates.increment(by: summary.duplicates)
        tasksUpdated.increment(by: summary.tasksUpdated)
        if summary.suppressedBreaches > 0 { suppressed.increment(by: summary.suppressedBreaches) }
        if summary.lateBreaches > 0 { late.increment(by: summary.lateBreaches) }
        for (reason, n) in summary.deadLetters { deadLetters[reason]?.increment(by: n) }
        for (priority, n) in summary.tasksOpened { tasksOpened[priority]?.increment(by: n) }
        for (priority, n) in summary.tasksRaised { tasksOpened[priority]?.increment(by: n) }
        for m in received { latency.recordInterval(since: m.receivedAt, end: committedAt) }
    }

    /// The registry in the Prometheus text exposition format, with the broker gauges and the open
    /// tasks by priority brought up to date.
    public func exposition(status: MQTTConnectionStatus, openTasks: [TaskPriority: Int] = [:]) -> String {
        for (priority, n) in openTasks { tasksOpen[priority]?.record(n) }
        connected.record(status.connected ? 1 : 0)
        subscribed.record(status.subscribed ? 1 : 0)
        reconnects.record(status.reconnects)
        takeovers.record(status.sessionTakeovers)
        takenOver.record(status.sessionTakenOver ? 1 : 0)
        return registry.emitToString()
    }
}

extension Metrics.Timer {
    fileprivate func recordInterval(since start: ContinuousClock.Instant, end: ContinuousClock.Instant) {
        let d = end - start
        recordNanoseconds(d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000)
    }
}
