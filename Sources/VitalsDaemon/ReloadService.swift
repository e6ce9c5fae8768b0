import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import VitalsConfig

/// Reloads the configuration on SIGHUP: thresholds and topic filters take effect without dropping
/// the MQTT session. A configuration that fails validation is refused with its errors, and the
/// running one stays. Other keys (broker address, database, HTTP) need a restart.
public struct ReloadService: Service {
    let configPath: String
    let ingest: IngestService
    let logger: Logger

    public init(configPath: String, ingest: IngestService, logger: Logger) {
        self.configPath = configPath
        self.ingest = ingest
        self.logger = logger
    }

    public func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            do {
                let config = try VitalsConfiguration.load(path: configPath, environment: ProcessInfo.processInfo.environment)
                try ingest.reload(pipeline: Daemon.pipeline(config), routes: try config.mqtt.routes())
                logger.notice("configuration reloaded", metadata: ["config.path": "\(configPath)",
                                                                   "mqtt.topic_filters": "\(config.mqtt.allTopicFilters.joined(separator: ","))"])
            } catch {
                logger.error("configuration reload refused; the running configuration stays",
                             metadata: ["config.path": "\(configPath)", "config.errors": "\(error)"])
            }
        }
    }
}
