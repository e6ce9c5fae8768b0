import Dispatch
import Synchronization

/// A one-shot rendezvous between the loop thread, which waits, and the consumer, which commits.
///
/// The first of ``resolve(_:)``'s calls wins; later calls do nothing.
final class AcknowledgementGate: Sendable {
    enum Outcome: Sendable { case acknowledged, abandoned }

    private let outcome = Mutex<Outcome?>(nil)
    private let semaphore = DispatchSemaphore(value: 0)

    func resolve(_ value: Outcome) {
        let first = outcome.withLock { current in
            guard current == nil else { return false }
            current = value
            return true
        }
        if first { semaphore.signal() }
    }

    /// Blocks the calling thread until resolved. Only the loop thread calls this.
    func wait() -> Outcome {
        semaphore.wait()
        return outcome.withLock { $0 ?? .abandoned }
    }
}

/// Messages read from the broker whose acknowledgements are held back until ``acknowledge()``.
///
/// The broker learns that these messages were received only after the consumer calls
/// ``acknowledge()``, which it must do only once every message is durably stored (or kept as a
/// dead letter). A batch that is never acknowledged is never acknowledged to the broker either,
/// so the broker delivers it again on the next connection.
public final class MQTTDeliveryBatch: Sendable {
    /// The messages, in the order the broker sent them.
    public let messages: [MQTTMessage]
    let gate: AcknowledgementGate

    init(messages: [MQTTMessage], gate: AcknowledgementGate) {
        self.messages = messages
        self.gate = gate
    }

    /// Releases the PUBACKs of every message in the batch. Call after the commit.
    public func acknowledge() {
        gate.resolve(.acknowledged)
    }
}

/// The batches of one subscription, in delivery order. At most one batch is outstanding: the next
/// is read from the broker only after the previous one was acknowledged.
public struct MQTTDeliveries: AsyncSequence, Sendable {
    public typealias Element = MQTTDeliveryBatch
    let stream: AsyncStream<MQTTDeliveryBatch>

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<MQTTDeliveryBatch>.AsyncIterator
        public mutating func next() async -> MQTTDeliveryBatch? { await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator()) }
}
