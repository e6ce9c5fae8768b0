import Foundation
import Logging
import MQTTClient
import ServiceLifecycle
import Synchronization
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// A broker, a database file and a configuration for one test.
final class TestEnvironment: @unchecked Sendable {
    let broker: Broker
    let directory: String
    let configPath: String
    let config: VitalsConfiguration
    let database: AppDatabase
    /// The port of the daemon process's HTTP endpoints.
    let httpPort: Int
    /// The port of the daemon's web listener (workspace and FHIR API), when the configuration turns it on.
    let webPort: Int
    /// Daemons started in this process, cancelled when the test ends however it ends.
    private let daemons = Mutex<[Task<Void, any Error>]>([])

    /// - Parameters:
    ///   - mqttExtra: more YAML lines for the `mqtt` section (indented by 2), e.g. subscriptions.
    ///   - extraYAML: more top-level sections for the configuration file.
    ///   - httpPort: the daemon's HTTP port; default a free one.
    ///   - webPort: the web listener's port, when the configuration needs it (FHIR public URL); default a free one.
    ///   - databasePath: the database file; default `vitalsd.sqlite` in the broker's directory.
    init(clientID: String = "vitalsd-test-\(UUID().uuidString.prefix(8))", logLevel: String = "warning",
         logFormat: String = "text", httpPort: Int? = nil, webPort: Int? = nil, mqttExtra: String = "", extraYAML: String = "",
         databasePath: String? = nil) async throws {
        broker = try await Broker()
        directory = broker.directory
        let port = try httpPort ?? Broker.freePort()
        self.httpPort = port
        self.webPort = try webPort ?? Broker.freePort()
        let yaml = """
            mqtt:
              port: \(broker.port)
              client_id: \(clientID)
              reconnect_min_seconds: 0.2
              reconnect_max_seconds: 1
            \(mqttExtra)
            database:
              path: \(databasePath ?? directory + "/vitalsd.sqlite")
            log:
              level: \(logLevel)
              format: \(logFormat)
            http:
              port: \(port)
            \(extraYAML)
            """
        configPath = directory + "/vitalsd.yaml"
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        config = try VitalsConfiguration.load(path: configPath, environment: [:])
        database = try Daemon.openDatabase(config)
        try database.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes]), actor: "test")
        try database.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p1"), actor: "test")
        try database.upsertDevice(Device(id: "g2", kind: .cgm, patientID: "p1"), actor: "test")
    }

    func publisher() async throws -> MQTTPublisher {
        try await MQTTPublisher.connect(host: "127.0.0.1", port: broker.port, clientID: "pub-\(UUID().uuidString.prefix(8))")
    }

    func statistics() throws -> Statistics { try database.statistics() }

    /// Runs the daemon in this process until the returned handle is stopped.
    func startDaemon() throws -> RunningDaemon {
        var logger = Logger(label: "vitalsd-test")
        logger.logLevel = .warning
        let service = try Daemon.makeIngestService(config, database: database, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], logger: logger))
        let task = Task { try await group.run() }
        daemons.withLock { $0.append(task) }
        return RunningDaemon(service: service, group: group, task: task)
    }

    /// Teardown, also after a failed expectation or a thrown error: every in-process daemon is
    /// cancelled (its MQTT loop ends instead of retrying a broker that is about to stop), then the
    /// broker stops. Daemon processes end with their ``ChildProcess``.
    deinit {
        for task in daemons.withLock({ $0 }) { task.cancel() }
    }

    /// Runs the built `vitalsd run` as a child process.
    func startProcess(environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(
            path: try vitalsdBinary(), arguments: ["run", "--config", configPath],
            logPath: directory + "/vitalsd.log", extraEnvironment: environment)
    }
}

struct RunningDaemon {
    let service: IngestService
    let group: ServiceGroup
    let task: Task<Void, any Error>

    /// Waits until the daemon is connected and subscribed (as long as a loaded machine needs).
    func waitUntilSubscribed() async throws {
        guard await eventually(60, { service.connectionStatus.subscribed }) else {
            throw TestFailure("daemon did not subscribe: \(service.connectionStatus)")
        }
    }

    /// Graceful shutdown, as on SIGTERM.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// Publishes `payload` every 200 ms until the daemon has stored `readings` rows: a message published
/// before the daemon's first subscription is dropped by the broker, so the first one must be repeated
/// (same measured_at, so the repeats are duplicates).
/// - Returns: false if that did not happen within 60 s.
func publishUntilStored(_ pub: MQTTPublisher, _ env: TestEnvironment, topic: String = "devices/g1/readings",
                        payload: [UInt8], readings: Int = 1) async -> Bool {
    await eventually {
        try? pub.publish(topic: topic, payload: payload)
        try? await Task.sleep(for: .milliseconds(200))
        return (try? env.statistics().readings) == readings
    }
}

/// A canonical glucose message measured `secondsAgo` seconds ago (whole milliseconds).
func glucoseJSON(_ value: Double, at ms: Int64) -> [UInt8] {
    Array(#"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":\#(ms)}"#.utf8)
}

/// Epoch milliseconds for `secondsAgo` seconds before now, rounded to the second so runs don't collide.
func msAgo(_ secondsAgo: Double) -> Int64 {
    Int64((Date().timeIntervalSince1970 - secondsAgo).rounded(.down) * 1000)
}
