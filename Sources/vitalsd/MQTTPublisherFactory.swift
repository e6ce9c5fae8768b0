import Foundation
import MQTTClient
import VitalsConfig
import VitalsDaemon

enum MQTTPublisherFactory {
    /// A publisher to the configured broker, with a client id of its own (never the daemon's).
    static func make(_ config: VitalsConfiguration) async throws -> MQTTPublisher {
        try await MQTTPublisher.connect(
            host: config.mqtt.host, port: config.mqtt.port, clientID: "vitalsd-replay-\(getpid())",
            username: config.mqtt.username, password: try config.mqttPassword(), tls: Daemon.tlsConfiguration(config))
    }
}
