import Foundation
import Synchronization
import MQTTClient
import Prometheus
import VitalsDomain
import VitalsPostgres
import VitalsStore

/// The daemon's metrics, in a Prometheus registry of its own (no global bootstrap, so tests can run
/// several daemons in one process); each metric carries a `# HELP` line.
///
/// Exposed at `/metrics` in the Prometheus text format:
/// - `vitalsd_messages_received_total`, `vitalsd_readings_stored_total`, `vitalsd_duplicates_total`;
/// - `vitalsd_dead_letters_total{reason}` for every dead-letter reason;
/// - `vitalsd_tasks_opened_total{priority}` (tasks that became `critical` or `warning`: opened at that
///   priority, or raised to it), `vitalsd_tasks_updated_total`, and the gauge `vitalsd_tasks_open{priority}`
///   (unresolved tasks by priority, `critical`, `warning`, `routine`, read at each scrape);
/// - `vitalsd_broker_connected` (0/1), `vitalsd_broker_subscribed` (0/1), `vitalsd_broker_reconnects_total`;
/// - `vitalsd_broker_session_takeovers_total` (connections the broker closed because another client took
///   the client id, since start), `vitalsd_broker_session_taken_over` (0/1, 3 or more in a row);
/// - `vitalsd_breaches_suppressed_total` (a condition still active after its task was resolved),
///   `vitalsd_late_breaches_total` (breaches sent to a late-data review task);
/// - `vitalsd_tasks_escalated_total`, `vitalsd_tasks_awaiting_acknowledgement` (open critical tasks on
///   an escalation clock), and `vitalsd_escalations_total{level}` by the level reached: `1` (the
///   owner or care manager), `2` (the backup), `3+` (the backup again);
/// - `vitalsd_outbox_backlog{channel}` (task events not yet delivered), `vitalsd_task_events_delivered_total{channel}`,
///   `vitalsd_delivery_failures_total{channel}` for the channels `mqtt` and `webhook`, and for `fhir`
///   (the FHIR push channel: readings waiting, Observations delivered);
/// - on PostgreSQL, `vitalsd_mqtt_session_owned{session}`: 1 while this node owns the session, 0 as its standby;
/// - `vitalsd_ingest_latency_seconds`: from the moment the network loop read a message to the commit
///   of its batch (a histogram, one observation per message).
public final class VitalsMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let messages: Counter
    private let readings: Counter
    private let duplicates: Counter
    private let tasksUpdated: Counter
    private let deadLetters: [DeadLetterReason: Counter]
    private let tasksOpened: [TaskPriority: Counter]
    private let tasksOpen: [TaskPriority: Gauge]
    private let connected: Gauge
    private let subscribed: Gauge
    private let reconnects: Counter
    private let takeovers: Counter
    private let takenOver: Gauge
    private let latency: DurationHistogram
    private let suppressed: Counter
    private let late: Counter
    private let escalated: Counter
    private let unreached: Counter
    /// By level label: `1`, `2`, `3+`.
    private let escalationsByLevel: [String: Counter]
    private let awaitingAcknowledgement: Gauge
    private let backlog: [String: Gauge]
    private let delivered: [String: Counter]
    private let deliveryFailures: [String: Counter]
    /// The connection's reconnects and takeovers at the last scrape: the counters grow by the difference.
    private let seen = Mutex((reconnects: 0, takeovers: 0))

    public init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        /// The metric `name` (whole, with its unit suffix) and its `# HELP` text.
        func named(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        func counter(_ name: String, _ help: String) -> Counter { registry.makeCounter(descriptor: named(name, help)) }
        func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: named(name, help)) }
        registry.makeGauge(
            descriptor: named("vitalsd_build_info", "Always 1; the label says which version of vitalsd runs."),
            labels: [("version", BuildInfo.version)]
        ).set(to: 1.0)
        messages = counter("vitalsd_messages_received_total", "MQTT messages received and committed (readings, duplicates and dead letters).")
        readings = counter("vitalsd_readings_stored_total", "Readings stored.")
        duplicates = counter("vitalsd_duplicates_total", "Readings received again and not stored a second time (unique key).")
        tasksUpdated = counter("vitalsd_tasks_updated_total", "Breaches added to a task already open for their condition.")
        deadLetters = Dictionary(uniqueKeysWithValues: DeadLetterReason.allCases.map {
            ($0, registry.makeCounter(
                descriptor: named("vitalsd_dead_letters_total", "Messages that could not be accepted, stored as dead letters, by reason."), labels: [("reason", $0.rawValue)]))
        })
        tasksOpened = Dictionary(uniqueKeysWithValues: [TaskPriority.critical, .warning].map {
            ($0, registry.makeCounter(
                descriptor: named("vitalsd_tasks_opened_total", "Tasks that became critical or warning: opened at that priority, or raised to it."), labels: [("priority", $0.rawValue)]))
        })
        tasksOpen = Dictionary(uniqueKeysWithValues: TaskPriority.allCases.map {
            ($0, registry.makeGauge(
                descriptor: named("vitalsd_tasks_open", "Unresolved tasks (open or acknowledged) by priority, read at each scrape."), labels: [("priority", $0.rawValue)]))
        })
        connected = gauge("vitalsd_broker_connected", "1 while the MQTT connection is up.")
        subscribed = gauge("vitalsd_broker_subscribed", "1 while every topic filter is subscribed.")
        reconnects = counter("vitalsd_broker_reconnects_total", "MQTT reconnections since start.")
        takeovers = counter(
            "vitalsd_broker_session_takeovers_total",
            "MQTT connections the broker closed because another client took the client id, since start.")
        takenOver = gauge("vitalsd_broker_session_taken_over", "1 after 3 or more session takeovers in a row.")
        latency = registry.makeDurationHistogram(
            descriptor: named(
                "vitalsd_ingest_latency_seconds",
                "From the network loop's read of a message to the commit of its batch, one observation per message."),
            buckets: [
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
                .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
            ])
        suppressed = counter(
            "vitalsd_breaches_suppressed_total", "Breaches of a condition still active after its task was resolved, not raised again.")
        late = counter("vitalsd_late_breaches_total", "Breaches received late, sent to a late-data review task.")
        escalated = counter("vitalsd_tasks_escalated_total", "Escalations of unacknowledged critical tasks.")
        unreached = counter(
            "vitalsd_escalations_unreached_total", "Escalations that reached nobody (no owner, care manager or backup).")
        escalationsByLevel = Dictionary(uniqueKeysWithValues: ["1", "2", "3+"].map {
            ($0, registry.makeCounter(
                descriptor: named("vitalsd_escalations_total", "Escalations by the level reached: 1 the owner or care manager, 2 the backup, 3+ the backup again."), labels: [("level", $0)]))
        })
        awaitingAcknowledgement = gauge(
            "vitalsd_tasks_awaiting_acknowledgement", "Open critical tasks on an escalation clock.")
        /// One metric per delivery channel, labelled `channel`.
        func perChannel<M>(_ make: (String) -> M) -> [String: M] {
            Dictionary(uniqueKeysWithValues: ["mqtt", "webhook", "fhir"].map { ($0, make($0)) })
        }
        backlog = perChannel {
            registry.makeGauge(
                descriptor: named("vitalsd_outbox_backlog", "Task events (fhir: readings) waiting for delivery, by channel."), labels: [("channel", $0)])
        }
        delivered = perChannel {
            registry.makeCounter(
                descriptor: named("vitalsd_task_events_delivered_total", "Task events (fhir: Observations) the receiver took, by channel."), labels: [("channel", $0)])
        }
        deliveryFailures = perChannel {
            registry.makeCounter(
                descriptor: named("vitalsd_delivery_failures_total", "Failed delivery attempts, by channel (each retried with back-off)."), labels: [("channel", $0)])
        }
    }

    /// Records a run of the alert timers: tasks escalated, and open critical tasks still waiting.
    /// - Parameter unreached: escalations that reached nobody (no owner, care manager or backup).
    func recordEscalations(_ count: Int, byLevel: [Int: Int], unreached nobody: Int = 0, waiting: Int) {
        if count > 0 { escalated.increment(by: Int64(count)) }
        if nobody > 0 { unreached.increment(by: Int64(nobody)) }
        for (level, n) in byLevel where n > 0 { escalationsByLevel[level >= 3 ? "3+" : String(level)]?.increment(by: Int64(n)) }
        awaitingAcknowledgement.set(Int64(waiting))
    }

    /// Records a delivery round of a channel: events delivered, or a failure, and the backlog left.
    public func recordDelivery(channel: String, delivered count: Int, failed: Bool, backlog left: Int?) {
        if count > 0 { delivered[channel]?.increment(by: Int64(count)) }
        if failed { deliveryFailures[channel]?.increment() }
        if let left { backlog[channel]?.set(Int64(left)) }
    }

    /// Records a committed batch.
    func record(_ summary: IngestSummary, messages received: [MQTTMessage], committedAt: ContinuousClock.Instant) {
        messages.increment(by: Int64(summary.messages))
        readings.increment(by: Int64(summary.readingsStored))
        duplicates.increment(by: Int64(summary.duplicates))
        tasksUpdated.increment(by: Int64(summary.tasksUpdated))
        if summary.suppressedBreaches > 0 { suppressed.increment(by: Int64(summary.suppressedBreaches)) }
        if summary.lateBreaches > 0 { late.increment(by: Int64(summary.lateBreaches)) }
        for (reason, n) in summary.deadLetters { deadLetters[reason]?.increment(by: Int64(n)) }
        for (priority, n) in summary.tasksOpened { tasksOpened[priority]?.increment(by: Int64(n)) }
        for (priority, n) in summary.tasksRaised { tasksOpened[priority]?.increment(by: Int64(n)) }
        for m in received { latency.record(committedAt - m.receivedAt) }
    }

    /// Records a batch committed on PostgreSQL.
    func record(_ outcome: MessageIngestOutcome, messages received: [MQTTMessage], committedAt: ContinuousClock.Instant) {
        messages.increment(by: Int64(outcome.messages))
        readings.increment(by: Int64(outcome.readingsStored))
        duplicates.increment(by: Int64(outcome.duplicates))
        tasksUpdated.increment(by: Int64(outcome.alerting.updated))
        if outcome.alerting.suppressed > 0 { suppressed.increment(by: Int64(outcome.alerting.suppressed)) }
        for (reason, n) in outcome.deadLetters {
            if let reason = DeadLetterReason(rawValue: reason) { deadLetters[reason]?.increment(by: Int64(n)) }
        }
        for (priority, n) in outcome.alerting.opened { tasksOpened[priority]?.increment(by: Int64(n)) }
        for (priority, n) in outcome.alerting.raised { tasksOpened[priority]?.increment(by: Int64(n)) }
        for m in received { latency.record(committedAt - m.receivedAt) }
    }

    /// The registry in the Prometheus text exposition format, with the broker gauges and the open
    /// tasks by priority brought up to date.
    /// - Parameter sessionsOwned: on PostgreSQL, each MQTT session and whether this node owns it.
    public func exposition(
        status: MQTTConnectionStatus, openTasks: [TaskPriority: Int] = [:], sessionsOwned: [String: Bool] = [:]
    ) -> String {
        for (session, owned) in sessionsOwned {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    metricName: "vitalsd_mqtt_session_owned", unitName: "",
                    helpText: "1 while this node owns the MQTT session (its lease), 0 as its standby."),
                labels: [("session", session)]
            ).set(to: owned ? 1.0 : 0.0)
        }
        for (priority, n) in openTasks { tasksOpen[priority]?.set(Int64(n)) }
        connected.set(Int64(status.connected ? 1 : 0))
        subscribed.set(Int64(status.subscribed ? 1 : 0))
        seen.withLock { seen in
            if status.reconnects > seen.reconnects { reconnects.increment(by: Int64(status.reconnects - seen.reconnects)) }
            if status.sessionTakeovers > seen.takeovers {
                takeovers.increment(by: Int64(status.sessionTakeovers - seen.takeovers))
            }
            seen = (max(seen.reconnects, status.reconnects), max(seen.takeovers, status.sessionTakeovers))
        }
        takenOver.set(Int64(status.sessionTakenOver ? 1 : 0))
        return registry.emitToString()
    }
}
