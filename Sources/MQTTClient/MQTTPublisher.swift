internal import CMosquitto
import Foundation
import Synchronization

/// A QoS 1 publisher on libmosquitto's own network thread (`mosquitto_loop_start`).
///
/// Used by `vitalsd replay`, task-event delivery and tests to play devices. Create it with
/// ``connect(host:port:clientID:username:password:tls:timeout:)``. ``waitUntilDelivered(timeout:)`` returns
/// once the broker has acknowledged every message published so far.
///
/// ## Threading
/// libmosquitto's thread runs the callbacks; ``publish(topic:payload:retain:)`` may be called from any
/// thread (libmosquitto locks its queues in threaded mode).
public final class MQTTPublisher: Sendable {
    private let handle: PublisherHandle
    private let state: PublisherState

    /// Connects to the broker, starts the network thread and waits for the broker's CONNACK
    /// without blocking a thread: the CONNACK callback resumes the caller.
    ///
    /// - Parameters:
    ///   - host: broker host.
    ///   - port: broker port.
    ///   - clientID: client id; a clean session is used.
    ///   - timeout: seconds to wait for the broker to accept the connection.
    /// - Throws: ``MQTTError`` when the connection fails, is refused, or no CONNACK comes in time.
    public static func connect(
        host: String, port: Int, clientID: String, username: String? = nil, password: String? = nil,
        tls: MQTTTLSConfiguration? = nil, timeout: Double = 10
    ) async throws -> MQTTPublisher {
        let publisher = try MQTTPublisher(host: host, port: port, clientID: clientID, username: username, password: password, tls: tls)
        let state = publisher.state
        let code: Int32? = await withCheckedContinuation { (c: CheckedContinuation<Int32?, Never>) in
            state.waitForConnack(c)
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { state.connackTimedOut() }
        }
        guard let code else {
            publisher.close()
            throw MQTTError(code: -1, message: "no CONNACK from \(host):\(port) within \(timeout) s")
        }
        guard code == 0 else {
            publisher.close()
            throw MQTTError(code: code, message: "broker refused connection: \(String(cString: mosquitto_connack_string(code)))")
        }
        return publisher
    }

    /// Creates the client, queues CONNECT and starts libmosquitto's network thread.
    private init(
        host: String, port: Int, clientID: String, username: String?, password: String?, tls: MQTTTLSConfiguration?
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
    /// The CONNACK code once received, and the caller waiting for it.
    private let connack = Mutex<(code: Int32?, done: Bool, waiter: CheckedContinuation<Int32?, Never>?)>((nil, false, nil))

    /// Resumes `c` with the CONNACK code when it comes (at once if it came), or nil on timeout.
    func waitForConnack(_ c: CheckedContinuation<Int32?, Never>) {
        let ready: Int32?? = connack.withLock { s in
            if s.done { return .some(s.code) }
            s.waiter = c
            return .none
        }
        if let ready { c.resume(returning: ready) }
    }

    func received(connack code: Int32) { finish(code) }

    func connackTimedOut() { finish(nil) }

    private func finish(_ code: Int32?) {
        let waiter = connack.withLock { s -> CheckedContinuation<Int32?, Never>? in
            guard !s.done else { return nil }
            s.done = true
            s.code = code
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: code)
    }
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
    Unmanaged<PublisherState>.fromOpaque(userdata).takeUnretainedValue().received(connack: rc)
}

private func publisherOnPublish(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32) {
    guard let userdata else { return }
    Unmanaged<PublisherState>.fromOpaque(userdata).takeUnretainedValue().acknowledged.add(1, ordering: .relaxed)
}
