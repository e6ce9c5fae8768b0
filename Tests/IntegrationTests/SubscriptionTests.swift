import Foundation
import Logging
import MQTTClient
import Testing

/// The commit-before-acknowledge contract of `MQTTSubscription`, against a real broker.
@Suite("MQTT subscription acknowledgements", .serialized)
struct SubscriptionTests {
    func configuration(_ broker: Broker, clientID: String) -> MQTTClientConfiguration {
        MQTTClientConfiguration(port: broker.port, clientID: clientID, topics: ["t/+/r"], minReconnectDelay: 0.1)
    }

    /// Connects, takes the first batch, acknowledges it or not, and leaves; gives up after 30 s (only
    /// when nothing is left to deliver, or on a very busy machine).
    /// - Returns: the payloads of that batch, or none.
    func receiveOnce(_ broker: Broker, clientID: String, acknowledge: Bool) async throws -> [String] {
        var logger = Logger(label: "test")
        logger.logLevel = .error
        return try await MQTTSubscription.with(configuration: configuration(broker, clientID: clientID), logger: logger) { sub in
            await withTaskGroup(of: [String].self) { group in
                group.addTask {
                    for await batch in sub.deliveries {
                        if acknowledge { batch.acknowledge() }
                        return batch.messages.map { String(decoding: $0.payload, as: UTF8.self) }
                    }
                    return []
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(30))
                    return []
                }
                let first = await group.next() ?? []
                group.cancelAll()
                return first
            }
        }
    }

    @Test("a batch never acknowledged is delivered again: leaving without acknowledging loses nothing")
    func abandonedBatchIsRedelivered() async throws {
        let broker = try await Broker()
        let id = "ack-test-\(UUID().uuidString.prefix(6))"
        // Create the persistent session, then queue messages while nobody is connected.
        _ = try await MQTTSubscription.with(configuration: configuration(broker, clientID: id), logger: Logger(label: "t")) { sub in
            #expect(await eventually { sub.status.subscribed })
        }
        let pub = try await MQTTPublisher.connect(host: "127.0.0.1", port: broker.port, clientID: "pub-\(id)")
        defer { pub.close() }
        let all = Set((0..<50).map { "m\($0)" })
        for i in 0..<50 { try pub.publish(topic: "t/d\(i)/r", payload: Array("m\(i)".utf8)) }
        try await pub.waitUntilDelivered()

        // Take a batch and leave without acknowledging it; so does every later connection for the
        // batch it reads after the one it acknowledges. With PUBACKs sent before the commit, those
        // messages would never come again.
        let abandoned = try await receiveOnce(broker, clientID: id, acknowledge: false)
        #expect(!abandoned.isEmpty)
        var acknowledged = Set<String>()
        for _ in 0..<20 where acknowledged != all {
            acknowledged.formUnion(try await receiveOnce(broker, clientID: id, acknowledge: true))
        }
        // QoS 1 is at least once: the broker may repeat a message, which the store absorbs; it must
        // never drop one that was not acknowledged.
        #expect(acknowledged == all)
        #expect(Set(abandoned).isSubset(of: acknowledged))
    }
}
