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
    let ingest: IngestService
    let logger: Logger

    public init(notifier: SystemdNotifier, ingest: IngestService, logger: Logger) {
        self.notifier = notifier
        self.ingest = ingest
        self.logger = logger
    }

    public func run() async throws {
        guard notifier.socketPath != nil else { return }
        var ready = false
        let tick = notifier.watchdogInterval.map { min($0, .milliseconds(250)) } ?? .milliseconds(250)
        var lastPing = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if !ready && ingest.connectionStatus.subscribed {
                ready = notifier.notify("READY=1\nSTATUS=connected and subscribed")
                logger.info("notified systemd: ready")
            }
            if let interval = notifier.watchdogInterval, ContinuousClock.now - lastPing >= interval {
                // The loop turns at least once a second (its poll timeout), so allow at least 2 s.
                if ingest.loopIsAlive(within: max(interval * 2, .seconds(2))) {
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
