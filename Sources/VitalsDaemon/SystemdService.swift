import Foundation
import Logging
import MQTTClient
import ServiceLifecycle

/// Tells systemd how the daemon is doing (`Type=notify`):
/// - `READY=1` once the broker connection is up and every topic filter is subscribed;
/// - `WATCHDOG=1` every `WATCHDOG_USEC`/2, but only while the ingest path is alive: its MQTT loop
///   thread has turned within the last two watchdog intervals, and at least the last 2 s (it turns at
///   least once a second, and stalls only while a commit waits on the database);
/// - `STOPPING=1` when a graceful shutdown begins.
public struct SystemdService: Service {
    let notifier: SystemdNotifier
    let readyStatus: String
    let isReady: @Sendable () -> Bool
    let isAlive: @Sendable (Duration) -> Bool
    let logger: Logger

    /// The SQLite daemon: ready once connected and subscribed; alive while the MQTT loop turns.
    public init(notifier: SystemdNotifier, ingest: IngestService, logger: Logger) {
        self.init(
            notifier: notifier, readyStatus: "connected and subscribed", isReady: { ingest.connectionStatus.subscribed },
            isAlive: { ingest.loopIsAlive(within: $0) }, logger: logger)
    }

    /// - Parameters:
    ///   - readyStatus: the `STATUS=` text sent with `READY=1`.
    ///   - isReady: polled until true, then `READY=1` is sent once.
    ///   - isAlive: whether the work the watchdog guards has made progress within the given interval.
    public init(
        notifier: SystemdNotifier, readyStatus: String, isReady: @escaping @Sendable () -> Bool,
        isAlive: @escaping @Sendable (Duration) -> Bool, logger: Logger
    ) {
        self.notifier = notifier
        self.readyStatus = readyStatus
        self.isReady = isReady
        self.isAlive = isAlive
        self.logger = logger
    }

    public func run() async throws {
        guard notifier.socketPath != nil else { return }
        var ready = false
        let tick = notifier.watchdogInterval.map { min($0, .milliseconds(250)) } ?? .milliseconds(250)
        var lastPing = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if !ready && isReady() {
                ready = notifier.notify("READY=1\nSTATUS=\(readyStatus)")
                logger.info("notified systemd: ready")
            }
            if let interval = notifier.watchdogInterval, ContinuousClock.now - lastPing >= interval {
                // The loop turns at least once a second (its poll timeout), so allow at least 2 s.
                if isAlive(max(interval * 2, .seconds(2))) {
                    notifier.notify("WATCHDOG=1")
                } else {
                    logger.warning("ingest loop stalled; withholding the watchdog ping")
                }
                lastPing = ContinuousClock.now
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: tick) }
        }
        // Listed last in the service group, this service is the first told to shut down.
        notifier.notify("STOPPING=1")
    }
}
