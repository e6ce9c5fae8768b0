import Foundation
import Glibc
import MQTTClient
import PostgresNIO
import PostgresTestSupport
import Synchronization
import Testing
import VitalsDaemon
import VitalsPostgres

/// Nodes of `vitalsd run` on one PostgreSQL database and one mosquitto, as separate processes.
@Suite("Failover: nodes on PostgreSQL share MQTT sessions by lease", .serialized)
struct ClusterFailoverTests {
    static let sessions = ["s1", "s2", "s3", "s4"]
    /// Two devices per session: `devices/<session>/<session>-g<n>/readings`.
    static let devices = sessions.flatMap { s in (1...2).map { "\(s)-g\($0)" } }

    /// A node's configuration: four sessions, a 3 s lease, the node's own HTTP port.
    /// - Parameter reconnectSeconds: `mqtt.reconnect_min_seconds`; tiny, a resumed node's network
    ///   thread would reconnect before its lease check runs, unless the connection gate stops it.
    static func yaml(
        node: String, broker: Broker, cluster: ThrowawayPostgres, database: String, httpPort: Int, directory: String,
        reconnectSeconds: Double = 0.2, webhookPort: Int? = nil
    ) -> String {
        let delivery = webhookPort.map {
            "delivery:\n  mqtt_enabled: false\n  webhook_url: http://127.0.0.1:\($0)/events\n  webhook_secret_file: \(directory)/webhook-secret\n"
        } ?? "delivery:\n  mqtt_enabled: false\n"
        return delivery + """
        mqtt:
          host: 127.0.0.1
          port: \(broker.port)
          max_batch: 200
          reconnect_min_seconds: \(reconnectSeconds)
          reconnect_max_seconds: 1
        database:
          path: \(directory)/unused.sqlite
          url: postgres://postgres@127.0.0.1:\(cluster.port)/\(database)?sslmode=disable
          password_file: \(cluster.passwordFile)
        cluster:
          node_name: \(node)
          lease_ttl_seconds: 3
          sessions:
        \(sessions.map { "    - client_id: vitalsd-\($0)\n      topics: [devices/\($0)/+/readings]" }.joined(separator: "\n"))
        http:
          port: \(httpPort)
        log:
          level: info
        """
    }

    /// A running node: its process, HTTP port and log.
    struct Node {
        var name: String
        var process: ChildProcess
        var httpPort: Int
        var log: String

        func readyz() async -> (status: Int, body: String)? { await httpGet(port: httpPort, "/readyz") }

        /// How many sessions `/readyz` says this node owns.
        func owned() async -> Int {
            (await readyz()?.body ?? "").split(separator: "\n").filter { $0.contains(": owner (epoch") }.count
        }

        var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    }

    static func start(
        _ name: String, broker: Broker, cluster: ThrowawayPostgres, database: String, directory: String, reconnectSeconds: Double = 0.2,
        webhookPort: Int? = nil, environment: [String: String] = [:]
    ) throws -> Node {
        let port = try Broker.freePort()
        let config = "\(directory)/\(name).yaml"
        try yaml(node: name, broker: broker, cluster: cluster, database: database, httpPort: port, directory: directory,
                 reconnectSeconds: reconnectSeconds, webhookPort: webhookPort)
            .write(toFile: config, atomically: true, encoding: .utf8)
        let log = "\(directory)/\(name).log"
        let process = try ChildProcess(
            path: try vitalsdBinary(), arguments: ["run", "--config", config], logPath: log, extraEnvironment: environment)
        return Node(name: name, process: process, httpPort: port, log: log)
    }

    static func count(_ client: PostgresClient, _ sql: String) async throws -> Int {
        var total = 0
        for try await n in try await client.query(PostgresQuery(unsafeSQL: sql), logger: testLogger).decode(Int64.self) { total = Int(n) }
        return total
    }

    @Test("three nodes share four sessions; kill -9 of a node owning two and the webhook channel mid-burst: the others take them, every reading is stored once, every task event delivered in order")
    func killOwner() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let broker = try await Broker()
        defer { Task { await broker.stop() } }
        try await cluster.withDatabase(deadline: .seconds(300)) { client, database in
            let directory = NSTemporaryDirectory() + "vitalsd-failover-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await Self.enroll(client)
            // Task events go to a webhook, delivered by one node at a time.
            let receiver = WebhookReceiver(port: try Broker.freePort())
            try await receiver.start()
            defer { Task { await receiver.stop() } }
            try "failover-test-secret\n".write(toFile: directory + "/webhook-secret", atomically: true, encoding: .utf8)

            // Node a starts alone and takes all four sessions; when b and c join, a keeps its share of
            // ⌈4 / 3⌉ = 2 and hands the other two over.
            let a = try Self.start("node-a", broker: broker, cluster: cluster, database: database, directory: directory,
                                   webhookPort: receiver.port)
            #expect(await eventually {
                let owned = await a.owned()
                let status = await a.readyz()?.status
                return owned == 4 && status == 200
            }, "\(a.logText)")
            let b = try Self.start("node-b", broker: broker, cluster: cluster, database: database, directory: directory,
                                   webhookPort: receiver.port)
            let c = try Self.start("node-c", broker: broker, cluster: cluster, database: database, directory: directory,
                                   webhookPort: receiver.port)
            #expect(await eventually {
                let (ownedByA, ownedByB, ownedByC) = (await a.owned(), await b.owned(), await c.owned())
                return ownedByA == 2 && ownedByA + ownedByB + ownedByC == 4
            }, "\(a.logText)")
            #expect((await b.readyz()?.body ?? "").contains("node node-b: 3 nodes alive, a share of 2 sessions"))

            // The burst: 300 readings per device, some low enough to open tasks; a is killed as soon
            // as it has stored any of the first half, and the second half goes out with no owner.
            let publisher = try await MQTTPublisher.connect(host: "127.0.0.1", port: broker.port, clientID: "burst-publisher")
            defer { publisher.close() }
            let perDevice = 300
            let base = msAgo(4 * 3600)
            func publish(_ range: Range<Int>) throws {
                for i in range {
                    for device in Self.devices {
                        let session = device.prefix(2)
                        let value: Double = i % 97 == 13 ? 48 : 110
                        try publisher.publish(topic: "devices/\(session)/\(device)/readings",
                                              payload: glucoseJSON(value, at: base + Int64(i) * 30_000))
                    }
                }
            }
            try publish(0..<(perDevice / 2))
            #expect(await eventually {
                let stored = (try? await Self.count(client, "SELECT count(*) FROM readings")) ?? 0
                return stored > 0
            })
            // a, up first, delivers the webhook channel too: its events must go on from another node.
            #expect(try await Self.owner(client, "delivery:webhook") == "node-a")
            a.process.signal(SIGKILL)
            let killedAt = ContinuousClock.now
            #expect(await a.process.waitForExit(seconds: 30))
            try publish((perDevice / 2)..<perDevice)
            try await publisher.waitUntilDelivered()

            // Every session is owned again, by b or c.
            #expect(await eventually {
                let owners = (try? await Self.count(client, """
                    SELECT count(*) FROM mqtt_session_leases WHERE owner IN ('node-b', 'node-c') AND expires_at > now() AND session_id LIKE 'vitalsd-%'
                    """)) ?? 0
                return owners == 4
            })
            let takeover = ContinuousClock.now - killedAt
            print("failover: every session owned again \(takeover) after kill -9 (lease 3 s)")
            #expect(await eventually {
                let (ownedByB, ownedByC) = (await b.owned(), await c.owned())
                return ownedByB + ownedByC == 4
            })

            // Every published reading stored exactly once.
            let total = perDevice * Self.devices.count
            #expect(await eventually {
                let stored = try? await Self.count(client, "SELECT count(*) FROM readings")
                return stored == total
            }, "\(b.logText)\n\(c.logText)")
            #expect(try await Self.count(client, "SELECT count(DISTINCT (device_id, measured_at)) FROM readings") == total)
            #expect(try await Self.count(client, "SELECT count(*) FROM dead_letters") == 0)
            // Tasks were opened, and no condition has two unresolved tasks.
            #expect(try await Self.count(client, "SELECT count(*) FROM tasks") > 0)
            #expect(try await Self.count(client, """
                SELECT count(*) FROM (SELECT 1 FROM tasks WHERE status <> 'resolved' GROUP BY patient_id, vital, direction HAVING count(*) > 1) t
                """) == 0)

            #expect(await eventually {
                let owner = try? await Self.owner(client, "delivery:webhook")
                return owner == "node-b" || owner == "node-c"
            })
            // Every task event reached the webhook, first seen in id order (a repeat after the failover
            // is allowed: delivery is at least once, with the same event id).
            let events = try await Self.count(client, "SELECT count(*) FROM task_events")
            #expect(events > 0)
            #expect(await eventually { Set(Self.deliveredEventIDs(receiver)).count == events })
            let delivered = Self.deliveredEventIDs(receiver)
            var firstSeen: [Int64] = []
            for id in delivered where !firstSeen.contains(id) { firstSeen.append(id) }
            #expect(firstSeen == firstSeen.sorted(), "\(delivered)")
            print("failover: \(events) task events, \(delivered.count) webhook deliveries")
            // The routine checks ran at start, claimed by one node (PostgresTimerRuns).
            #expect(await eventually { (try? await Self.count(client, "SELECT count(*) FROM timer_runs WHERE job = 'routine'")) == 1 })

            // SIGTERM: each node stops and releases its leases.
            for node in [b, c] { node.process.signal(SIGTERM) }
            for node in [b, c] { #expect(await node.process.waitForExit(seconds: 30), "\(node.logText)") }
            let held = try await Self.count(client, "SELECT count(*) FROM mqtt_session_leases WHERE owner IS NOT NULL")
            let rows = try await Self.leaseRows(client)
            #expect(held == 0, "\(rows)\n\(b.logText)\n\(c.logText)")
            #expect(!a.logText.contains("payload"))
        }
    }

    @Test("SIGSTOP of the owner: a standby takes every session; resumed, the frozen node neither writes nor takes a client id back")
    func frozenOwner() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let broker = try await Broker(extraConfiguration: "log_type information")
        defer { Task { await broker.stop() } }
        try await cluster.withDatabase(deadline: .seconds(300)) { client, database in
            let directory = NSTemporaryDirectory() + "vitalsd-frozen-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await Self.enroll(client)
            let a = try Self.start("node-a", broker: broker, cluster: cluster, database: database, directory: directory,
                                   reconnectSeconds: 0.001)
            #expect(await eventually { await a.owned() == 4 }, "\(a.logText)")
            // b joins: each owns two. It tells systemd it is ready once the database answered.
            let systemd = try FakeNotifySocket(abstract: false)
            let b = try Self.start("node-b", broker: broker, cluster: cluster, database: database, directory: directory,
                                   environment: ["NOTIFY_SOCKET": systemd.name])
            #expect(await systemd.wait(for: "READY=1", seconds: 60).last == "READY=1\nSTATUS=node node-b on PostgreSQL")
            #expect(await eventually {
                let (ownedByA, ownedByB) = (await a.owned(), await b.owned())
                return ownedByA == 2 && ownedByB == 2
            }, "\(a.logText)\n\(b.logText)")

            // A second process under a's name is refused once it has seen a's heartbeat go on.
            try FileManager.default.createDirectory(atPath: directory + "/twin", withIntermediateDirectories: true)
            let twin = try Self.start("node-a", broker: broker, cluster: cluster, database: database, directory: directory + "/twin")
            #expect(await twin.process.waitForExit(seconds: 60))
            #expect(twin.logText.contains("cluster.node_name: another running node is named node-a"), "\(twin.logText)")
            #expect(await a.owned() == 2)

            let publisher = try await MQTTPublisher.connect(host: "127.0.0.1", port: broker.port, clientID: "frozen-publisher")
            defer { publisher.close() }
            let base = msAgo(4 * 3600)
            func publish(_ range: Range<Int>) throws {
                for i in range {
                    for device in Self.devices {
                        try publisher.publish(topic: "devices/\(device.prefix(2))/\(device)/readings",
                                              payload: glucoseJSON(110, at: base + Int64(i) * 30_000))
                    }
                }
            }
            func stored() async -> Int { (try? await Self.count(client, "SELECT count(*) FROM readings")) ?? -1 }
            try publish(0..<50)
            #expect(await eventually { await stored() == 50 * Self.devices.count })

            // Frozen: the process keeps its TCP connections, so only the lease's expiry frees the sessions.
            a.process.signal(SIGSTOP)
            let frozenAt = ContinuousClock.now
            #expect(await eventually { await b.owned() == 4 }, "\(b.logText)")
            print("frozen owner: every session owned by the standby \(ContinuousClock.now - frozenAt) after SIGSTOP (lease 3 s)")
            try publish(50..<100)
            #expect(await eventually { await stored() == 100 * Self.devices.count }, "\(b.logText)")
            let takeoversBefore = Self.takeovers(broker)
            // b connected while a's two connections were still open: the broker closed them.
            #expect(takeoversBefore >= 2, "\(Self.brokerLog(broker))")

            // Resumed: a finds its leases gone by its own clock and stands by, without reconnecting.
            a.process.signal(SIGCONT)
            #expect(await eventually { (await a.readyz()?.body ?? "").components(separatedBy: ": standby").count - 1 == 4 }, "\(a.logText)")
            #expect(a.logText.contains("the lease is no longer this node's; stopping"))
            try publish(100..<150)
            try await publisher.waitUntilDelivered()
            #expect(await eventually { await stored() == 150 * Self.devices.count }, "\(b.logText)")
            #expect(try await Self.count(client, "SELECT count(DISTINCT (device_id, measured_at)) FROM readings") == 150 * Self.devices.count)
            #expect(Self.takeovers(broker) == takeoversBefore, "\(Self.brokerLog(broker))")
            #expect(await b.owned() == 4)
            #expect(try await Self.count(client, "SELECT count(*) FROM mqtt_session_leases WHERE owner = 'node-b' AND session_id LIKE 'vitalsd-%'") == 4)
            for node in [a, b] { node.process.signal(SIGTERM) }
            #expect(await systemd.wait(for: "STOPPING=1", seconds: 30).last == "STOPPING=1")
            for node in [a, b] { #expect(await node.process.waitForExit(seconds: 30), "\(node.logText)") }
        }
    }

    static func enroll(_ client: PostgresClient) async throws {
        try await client.query("""
            INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at)
            VALUES ('ana', 'Ana Ruiz', 'care_manager', '$2b$12$abcdefghijklmnopqrstuv', 0, 0)
            """, logger: testLogger)
        for device in devices {
            let patient = "p-\(device)"
            try await client.query("INSERT INTO patients (id, timezone, created_at, care_manager) VALUES (\(patient), 'UTC', 0, 'ana')", logger: testLogger)
            try await client.query("INSERT INTO patient_programs (patient_id, program) VALUES (\(patient), 'diabetes')", logger: testLogger)
            try await client.query("INSERT INTO devices (id, kind, patient_id, created_at) VALUES (\(device), 'glucometer', \(patient), 0)", logger: testLogger)
            try await client.query("""
                INSERT INTO device_bindings (device_id, patient_id, created_at, created_by) VALUES (\(device), \(patient), 0, 'ana')
                """, logger: testLogger)
        }
    }

    static func brokerLog(_ broker: Broker) -> String {
        (try? String(contentsOfFile: broker.directory + "/mosquitto.log", encoding: .utf8)) ?? ""
    }

    /// Connections the broker closed because another client took their client id.
    static func takeovers(_ broker: Broker) -> Int {
        brokerLog(broker).components(separatedBy: "already connected, closing old connection").count - 1
    }

    /// Every lease row as `name owner epoch`, for a failure message.
    static func leaseRows(_ client: PostgresClient) async throws -> String {
        var rows: [String] = []
        for try await (name, owner, epoch) in try await client.query(
            "SELECT session_id, owner, epoch FROM mqtt_session_leases ORDER BY session_id", logger: testLogger
        ).decode((String, String?, Int64).self) { rows.append("\(name) \(owner ?? "-") \(epoch)") }
        return rows.joined(separator: "\n")
    }

    /// The node holding the lease `name`, or nil.
    static func owner(_ client: PostgresClient, _ name: String) async throws -> String? {
        var owner: String?
        for try await o in try await client.query("SELECT owner FROM mqtt_session_leases WHERE session_id = \(name)", logger: testLogger)
            .decode(String?.self) { owner = o }
        return owner
    }

    /// The task event row ids the webhook received, in order, from each body's `event_id`
    /// (`task-event-<id>-<incarnation>`).
    static func deliveredEventIDs(_ receiver: WebhookReceiver) -> [Int64] {
        receiver.requests.withLock { $0 }.compactMap { request in
            guard let key = request.idempotencyKey, key.hasPrefix("task-event-") else { return nil }
            return Int64(key.dropFirst("task-event-".count).prefix { $0 != "-" })
        }
    }
}

@Suite("A deadline that holds when the awaited work ignores cancellation")
struct DeadlineTests {
    @Test("work that ignores cancellation is given up at the deadline; work that ends in time returns its value")
    func deadline() async throws {
        // Resumed by a Dispatch timer after 30 s whatever happens: cancellation does not reach it.
        let stuck: @Sendable () async throws -> Int = {
            await withCheckedContinuation { c in DispatchQueue.global().asyncAfter(deadline: .now() + 30) { c.resume() } }
            return 1
        }
        await #expect(throws: DeadlinePassed.self) { try await withinDeadline(.milliseconds(100), stuck) }
        #expect(try await withinDeadline(.seconds(60)) { 7 } == 7)
        await #expect(throws: CancellationError.self) {
            let task = Task { try await withinDeadline(.seconds(60), stuck) }
            task.cancel()
            return try await task.value
        }
    }
}
