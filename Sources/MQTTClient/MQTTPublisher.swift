internal import CMosquitto
import Foundation
import Synchronization

/// A QoS 1 publisher on libmosquitto's own network thread (`mosquitto_loop_start`).
///
/// Used by `vitalsd replay` and by tests to play devices. ``waitUntilDelivered(timeout:)`` returns
/// once the broker has acknowledged every message published so far.
///
/// ## Threading
/// libmosquitto's thread runs the callbacks; ``publish(topic:payload:retain:)`` may be called from any
/// thread (libmosquitto locks its queues in threaded mode).
public final class MQTTPublisher: Sendable {
    private let handle: PublisherHandle
    private let state: PublisherState

    /// Connects to the broker and starts the network thread.
    ///
    /// - Parameters:
    ///   - host: broker host.
    ///   - port: broker port.
    ///   - clientID: client id; a clean session is used.
    ///   - timeout: seconds to wait for the broker to accept the connection.
    /// - Throws: ``MQTTError`` when the connection fails or is refused.
    public init(
        host: String, port: Int, clientID: String, username: String? = nil, password: String? = nil,
        tls: MQTTTLSConfiguration? = nil, timeout: Double = 10
    ) throws {
        MosquittoLibrary.initialize()
        let state = PublisherState()
        let context = Unmanaged.passRetained(state).toOpaque()
        guard let mosq = mosquitto_new(clientID, true, context) else {
            Unmanaged<PublisherState>.fromOpaque(context).release()
            throw MQTTError(code: -1, message: "mosquitto_new failed for client id '\(clientID)'")
        }
        self.state = state
        self.handle = PublisherHandle(mosq: mosq, context: context)
        _ = mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
        _ = mosquitto_max_inflight_messages_set(mosq, 1000)
        if let username { _ = mosquitto_username_pw_set(mosq, username, password) }
        if let tls { try MosquittoLibrary.configureTLS(mosq, tls) }
        mosquitto_connect_callback_set(mosq, publisherOnConnect)
        mosquitto_publish_callback_set(mosq, publisherOnPublish)
        if let error = MosquittoLibrary.check(mosquitto_connect(mosq, host, Int32(port), 30), "connect to \(host):\(port)") {
            throw error
        }
        if let error = MosquittoLibrary.check(mosquitto_loop_start(mosq), "start network thread") {
            throw error
        }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let connack = state.connack.withLock { $0 }
            if connack == 0 { return }
            if let code = connack {
                throw MQTTError(code: code, message: "broker refused connection: \(String(cString: mosquitto_connack_string(code)))")
            }
            usleep(2000)
        }
        throw MQTTError(code: -1, message: "no CONNACK from \(host):\(port) within \(timeout) s")
    }

    /// Queues one message for delivery with QoS 1.
    /// - Throws: ``MQTTError`` when libmosquitto refuses it (payload too large, no connection).
    public func publish(topic: String, payload: [UInt8], retain: Bool = false) throws {
        state.published.add(1, ordering: .relaxed)
        let rc = payload.withUnsafeBytes { bytes in
            mosquitto_publish(handle.mosq, nil, topic, Int32(bytes.count), bytes.baseAddress, 1, retain)
        }
        if let error = MosquittoLibrary.check(rc, "publish") {
            state.published.subtract(1, ordering: .relaxed)
            throw error
        }
    }

    /// Messages the broker has acknowledged (PUBACK).
    public var acknowledged: Int { state.acknowledged.load(ordering: .relaxed) }

    /// Waits until every published message is acknowledged by the broker.
    /// - Throws: ``MQTTError`` on timeout.
    public func waitUntilDelivered(timeout: Double = 60) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while state.acknowledged.load(ordering: .relaxed) < state.published.load(ordering: .relaxed) {
            if Date() > deadline {
                throw MQTTError(code: -1, message: "broker did not acknowledge every message within \(timeout) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Disconnects and stops the network thread.
    public func close() {
        handle.close()
    }

    deinit { handle.close() }
}

/// Counters shared between libmosquitto's thread and callers.
final class PublisherState: Sendable {
    let connack = Mutex<Int32?>(nil)
    let published = Atomic<Int>(0)
    let acknowledged = Atomic<Int>(0)
}

/// Owns a publisher's libmosquitto handle.
///
/// `@unchecked Sendable`: `mosq` is immutable and libmosquitto's public calls lock internally in
/// threaded mode; `closed` is guarded by a Mutex so the handle is destroyed exactly once.
final class PublisherHandle: @unchecked Sendable {
    let mosq: OpaquePointer
    let context: UnsafeMutableRawPointer
    private let closed = Mutex(false)

    init(mosq: OpaquePointer, context: UnsafeMutableRawPointer) {
        self.mosq = mosq
        self.context = context
    }

    func close() {
        let first = closed.withLock { c -> Bool in
            defer { c = true }
            return !c
        }
        guard first else { return }
        _ = mosquitto_disconnect(mosq)
        _ = mosquitto_loop_stop(mosq, false)
        mosquitto_destroy(mosq)
        Unmanaged<PublisherState>.fromOpaque(context).release()
    }
}

private func publisherOnConnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32) {
    guard let userdata else { return }
    Unmanaged<PublisherState>.fromOpaque(userdata).takeUnretainedValue().connack.withLock { $0 = rc }
}

private func publisherOnPublish(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32) {
    guard let userdata else { return }
    Unmanaged<PublisherState>.fromOpaque(userdata).takeUnretainedValue().acknowledged.add(1, ordering: .relaxed)
}
