import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import VitalsConfig
import VitalsDomain

/// Reloads the configuration on SIGHUP: thresholds and topic filters take effect without dropping
/// the MQTT session. A configuration that fails validation is refused with its errors, and the
/// running one stays. Other keys (broker connection, database, HTTP, FHIR, delivery, adherence and the
/// alert timers) need a restart: a reload that changes them says so in a warning naming them.
public struct ReloadService: Service {
    let configPath: String
    let ingest: IngestService
    let started: VitalsConfiguration
    let logger: Logger

    /// - Parameter started: the configuration the daemon started with.
    public init(configPath: String, ingest: IngestService, started: VitalsConfiguration, logger: Logger) {
        self.configPath = configPath
        self.ingest = ingest
        self.started = started
        self.logger = logger
    }

    /// The sections or keys whose change a reload does not apply.
    public static func needingRestart(from old: VitalsConfiguration, to new: VitalsConfiguration) -> [String] {
        var a = old.mqtt, b = new.mqtt
        (a.topics, a.subscriptions, b.topics, b.subscriptions) = ([], [], [], [])
        var changed: [String] = []
        if a != b { changed.append("mqtt (other than topics and subscriptions)") }
        if old.database != new.database { changed.append("database") }
        if old.http != new.http { changed.append("http") }
        if old.log != new.log { changed.append("log") }
        if old.delivery != new.delivery { changed.append("delivery") }
        if old.fhir != new.fhir { changed.append("fhir") }
        if old.adherence != new.adherence || old.billing != new.billing { changed.append("adherence/billing (routine tasks)") }
        if old.alerts.escalationAfterSeconds != new.alerts.escalationAfterSeconds
            || old.alerts.escalationRepeatSeconds != new.alerts.escalationRepeatSeconds
            || old.alertCheckIntervalSeconds != new.alertCheckIntervalSeconds {
            changed.append("alerts escalation and check interval")
        }
        return changed
    }

    /// An error's description on one log line: its lines joined with `; `.
    static func oneLine(_ error: any Error) -> String {
        String(describing: error).split(whereSeparator: \.isNewline).joined(separator: "; ")
    }

    public func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                let config = try VitalsConfiguration.load(path: configPath, environment: ProcessInfo.processInfo.environment)
                try ingest.reload(pipeline: Daemon.pipeline(config), routes: try config.mqtt.routes())
                logger.notice("configuration reloaded", metadata: ["config.path": "\(configPath)",
                                                                   "mqtt.topic_filters": "\(config.mqtt.allTopicFilters.joined(separator: ","))"])
                Daemon.logWarnings(config, logger: logger)
                let pending = Self.needingRestart(from: started, to: config)
                if !pending.isEmpty {
                    logger.warning("changed settings take effect only after a restart",
                                   metadata: ["config.restart_needed": "\(pending.joined(separator: "; "))"])
                }
            } catch {
                logger.error("configuration reload refused; the running configuration stays",
                             metadata: ["config.path": "\(configPath)", "config.errors": "\(Self.oneLine(error))"])
            }
        }
    }
}
