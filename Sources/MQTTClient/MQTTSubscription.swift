internal import CMosquitto
import Foundation
import Glibc
import Logging
import Synchronization

/// A QoS 1 subscription on a persistent session, whose acknowledgements wait for the consumer's commit.
///
/// ## Durability
/// libmosquitto 2.0 queues the PUBACK of a QoS 1 message *before* it calls `on_message`, and has no
/// manual acknowledgement. vitalsd therefore drives the network loop itself on a dedicated thread in
/// threaded mode (`mosquitto_threaded_set`), where queued packets reach the socket only in
/// `mosquitto_loop_write`. The loop reads a batch with `mosquitto_loop_read`, hands it to the consumer
/// through ``deliveries``, waits until the consumer calls ``MQTTDeliveryBatch/acknowledge()`` after its
/// commit, and only then calls `mosquitto_loop_write`. Nothing is written to the socket while read
/// messages are unacknowledged. If the process dies, or the consumer never acknowledges, the PUBACKs
/// are dropped with the connection (`mosquitto_reconnect` and `mosquitto_destroy` discard the queue)
/// and the broker redelivers the messages on the next connection with the same client id.
///
/// ## Threading
/// One thread, started by ``with(configuration:logger:_:)``, makes every libmosquitto call and runs
/// every callback. The consumer's task and health checks touch only `Sendable` state.
public final class MQTTSubscription: Sendable {
    /// The delivered batches. Iterate it once.
    public let deliveries: MQTTDeliveries
    private let loop: SubscriberLoop

    /// The current connection state.
    public var status: MQTTConnectionStatus { loop.status.withLock { $0 } }

    /// Replaces the subscribed topic filters on the live connection, without dropping the session:
    /// removed filters are unsubscribed, the list is subscribed with QoS 1, and reconnects use it.
    public func updateTopics(_ topics: [String]) {
        loop.updateTopics(topics)
    }

    /// When the network loop last turned, in `DispatchTime` uptime nanoseconds. It turns at least
    /// once a second, except while it waits for a batch to be committed.
    public var lastLoopTurn: UInt64 { loop.heartbeat.load(ordering: .relaxed) }

    /// True when the network loop turned within `interval` of now.
    public func loopTurned(within interval: Duration) -> Bool {
        let age = Double(DispatchTime.now().uptimeNanoseconds &- lastLoopTurn) / 1e9
        let limit = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
        return age <= limit
    }

    private init(configuration: MQTTClientConfiguration, logger: Logger, mayConnect: (@Sendable () -> Bool)?) throws {
        let (stream, continuation) = AsyncStream.makeStream(of: MQTTDeliveryBatch.self, bufferingPolicy: .unbounded)
        self.deliveries = MQTTDeliveries(stream: stream)
        self.loop = try SubscriberLoop(configuration: configuration, logger: logger, continuation: continuation, mayConnect: mayConnect)
    }

    /// Connects, subscribes, runs `body` with the subscription, then disconnects.
    ///
    /// Connection failures are retried with a doubling delay, capped at
    /// ``MQTTClientConfiguration/maxReconnectDelay``; they never end the subscription.
    /// When `body` returns or throws, batches not yet acknowledged are abandoned (and redelivered
    /// by the broker later), a clean DISCONNECT is sent if nothing is unacknowledged, and the loop
    /// thread ends within a few seconds.
    ///
    /// - Parameter mayConnect: asked on the loop thread before every connection attempt, first and
    ///   reconnect; while it answers false no attempt is made (a node that no longer owns the
    ///   session's lease must not take the client id back from its new owner). Nil: always.
    /// - Throws: ``MQTTError`` if the client cannot be created (bad client id, out of memory), or
    ///   whatever `body` throws.
    public static func with<R>(
        configuration: MQTTClientConfiguration, logger: Logger, mayConnect: (@Sendable () -> Bool)? = nil,
        _ body: (MQTTSubscription) async throws -> R
    ) async throws -> R {
        MosquittoLibrary.initialize()
        let subscription = try MQTTSubscription(configuration: configuration, logger: logger, mayConnect: mayConnect)
        subscription.loop.start()
        do {
            let result = try await body(subscription)
            await subscription.loop.stop()
            return result
        } catch {
            await subscription.loop.stop()
            throw error
        }
    }
}

/// Owns the libmosquitto handle of a subscription and runs its network loop.
///
/// `@unchecked Sendable` because `mosq`, `pending`, `subscribeMID`, `accepted` and the topic lists are plain stored
/// properties: they are used only on the loop thread (``run()`` and the callbacks it triggers, which
/// libmosquitto calls from inside `loop_read`/`loop_misc` on that same thread, since
/// `mosquitto_loop_start` is never called). Other threads use only `status`, `stopping`, `gate`,
/// `finished`, `desiredTopics`, `heartbeat` (all synchronised) and the write end of the wake pipe.
final class SubscriberLoop: @unchecked Sendable {
    let configuration: MQTTClientConfiguration
    let logger: Logger
    private let continuation: AsyncStream<MQTTDeliveryBatch>.Continuation
    /// Asked before every connection attempt (``MQTTSubscription/with(configuration:logger:mayConnect:_:)``).
    private let mayConnect: (@Sendable () -> Bool)?

    private var mosq: OpaquePointer?
    var pending: [MQTTMessage] = []
    var subscribeMID: Int32 = -1
    var accepted = false
    /// The filters subscribed on the current connection, and those of the last SUBSCRIBE sent.
    var subscribedTopics: [String] = []
    var lastSubscribeTopics: [String] = []
    private let desiredTopics: Mutex<[String]>
    var connections = 0
    /// Takeover detection (loop thread): when the current connection was accepted, whether the last
    /// accepted connection was closed by the broker with no failed attempt since, takeovers in a row,
    /// and when the last takeover warning was logged (uptime nanoseconds).
    var connectedSince: UInt64 = 0
    var lostWhileConnected = false
    var consecutiveTakeovers = 0
    var lastTakeoverLog: UInt64?

    let status = Mutex(MQTTConnectionStatus())
    let heartbeat = Atomic<UInt64>(DispatchTime.now().uptimeNanoseconds)
    private let stopping = Atomic<Bool>(false)
    private let gate = Mutex<AcknowledgementGate?>(nil)
    private let finished = Mutex<(done: Bool, waiters: [OnceContinuation])>((false, []))
    private let wakeRead: Int32
    private let wakeWrite: Int32

    init(
        configuration: MQTTClientConfiguration, logger: Logger,
        continuation: AsyncStream<MQTTDeliveryBatch>.Continuation, mayConnect: (@Sendable () -> Bool)? = nil
    ) throws {
        self.mayConnect = mayConnect
        self.configuration = configuration
        self.logger = logger
        self.continuation = continuation
        self.desiredTopics = Mutex(configuration.topics)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw MQTTError(code: -1, message: "pipe: \(String(cString: strerror(errno)))")
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        _ = fcntl(wakeRead, F_SETFL, fcntl(wakeRead, F_GETFL) | O_NONBLOCK)
        _ = fcntl(wakeWrite, F_SETFL, fcntl(wakeWrite, F_GETFL) | O_NONBLOCK)

        let context = Unmanaged.passRetained(self).toOpaque()
        guard let handle = mosquitto_new(configuration.clientID, false, context) else {
            Unmanaged<SubscriberLoop>.fromOpaque(context).release()
            close(wakeRead)
            close(wakeWrite)
            throw MQTTError(code: -1, message: "mosquitto_new failed for client id '\(configuration.clientID)'")
        }
        mosq = handle
        _ = mosquitto_threaded_set(handle, true)
        _ = mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
        if let user = configuration.username {
            _ = mosquitto_username_pw_set(handle, user, configuration.password)
        }
        if let tls = configuration.tls {
            do {
                try MosquittoLibrary.configureTLS(handle, tls)
            } catch {
                mosquitto_destroy(handle)
                Unmanaged<SubscriberLoop>.fromOpaque(context).release()
                close(wakeRead)
                close(wakeWrite)
                throw error
            }
            mosquitto_log_callback_set(handle, subscriberOnLog)
        }
        mosquitto_connect_callback_set(handle, subscriberOnConnect)
        mosquitto_disconnect_callback_set(handle, subscriberOnDisconnect)
        mosquitto_message_callback_set(handle, subscriberOnMessage)
        mosquitto_subscribe_callback_set(handle, subscriberOnSubscribe)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "vitalsd-mqtt"
        thread.start()
    }

    /// Abandons any batch awaiting acknowledgement, wakes the loop and waits for it to end.
    ///
    /// Waits at most `timeout` seconds: a loop thread blocked in a TCP connect to an unreachable
    /// broker cannot be interrupted, and shutdown must stay bounded (failure-modes F3c).
    func stop(timeout: Double = 5) async {
        stopping.store(true, ordering: .sequentiallyConsistent)
        gate.withLock { $0?.resolve(.abandoned) }
        wake()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = OnceContinuation(c)
            let already = finished.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(once)
                return false
            }
            if already { once.resume() }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) { once.resume() }
        }
    }

    private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    func updateTopics(_ topics: [String]) {
        desiredTopics.withLock { $0 = topics }
        wake()
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    // MARK: Loop thread

    private func run() {
        guard let mosq else { return }
        var delay = configuration.minReconnectDelay
        var initialised = false
        while !isStopping {
            heartbeat.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
            if mosquitto_socket(mosq) < 0 {
                accepted = false
                if let mayConnect, !mayConnect() {
                    // Not this client's turn (its lease is gone): no attempt until the owner stops it.
                    sleepInterruptibly(seconds: 0.1)
                    continue
                }
                let rc: Int32
                if initialised {
                    rc = mosquitto_reconnect(mosq)
                } else {
                    rc = mosquitto_connect(mosq, configuration.host, Int32(configuration.port), Int32(configuration.keepAlive))
                    initialised = rc == MOSQ_ERR_SUCCESS.rawValue || rc == MOSQ_ERR_ERRNO.rawValue
                        || rc == MOSQ_ERR_EAI.rawValue
                }
                if var error = MosquittoLibrary.check(rc, "connect to \(configuration.host):\(configuration.port)") {
                    lostWhileConnected = false  // the broker is unreachable: not a takeover
                    if let tls = tlsProblem() { error.message = tls }
                    status.withLock { $0.lastError = error.message }
                    logger.warning(
                        "broker connection failed; retrying",
                        metadata: ["mqtt.error": "\(error.message)", "mqtt.retry_in_s": "\(delay)"])
                    sleepInterruptibly(seconds: delay)
                    delay = min(delay * 2, configuration.maxReconnectDelay)
                    continue
                }
                // CONNECT is only queued in threaded mode. Nothing has been read, so writing acks nothing.
                flushWrites()
            }

            let events = waitForSocket(timeoutMilliseconds: 1000)
            if events.wake { drainWake() }
            if isStopping { break }
            if events.readable { readAvailable() }

            if !pending.isEmpty {
                guard deliverPending() else { break }
            }
            if mosquitto_socket(mosq) >= 0 {
                let desired = desiredTopics.withLock { $0 }
                if accepted && desired != subscribedTopics { changeSubscriptions(to: desired) }
                _ = mosquitto_loop_misc(mosq)
                flushWrites()
                if accepted { clearTakeoverIfStable() }
            }
            if mosquitto_socket(mosq) < 0 {
                markDisconnected()
                if accepted {
                    delay = configuration.minReconnectDelay
                    lostWhileConnected = !isStopping
                    clearTakeoverIfStable()
                    if consecutiveTakeovers > 0 {
                        // Another client took the session: wait before taking it back, doubling.
                        sleepInterruptibly(seconds: takeoverBackoff)
                    }
                } else {
                    sleepInterruptibly(seconds: delay)
                    delay = min(delay * 2, configuration.maxReconnectDelay)
                }
            }
        }
        teardown()
    }

    /// Reads packets while the socket has data, up to `maxBatch` messages.
    private func readAvailable() {
        guard let mosq else { return }
        repeat {
            let rc = mosquitto_loop_read(mosq, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                let message = tlsProblem() ?? "connection lost: \(MosquittoLibrary.describe(rc))"
                if !isStopping {
                    logger.log(level: connectionLogLevel(.warning), "broker connection lost", metadata: ["mqtt.error": "\(message)"])
                }
                status.withLock { $0.lastError = message }
                return
            }
        } while pending.count < configuration.maxBatch && mosquitto_socket(mosq) >= 0 && socketReadable()
    }

    /// Hands `pending` to the consumer and blocks until it is acknowledged or abandoned.
    /// - Returns: false when abandoned: the loop must end without writing.
    private func deliverPending() -> Bool {
        let g = AcknowledgementGate()
        gate.withLock { $0 = g }
        if isStopping { g.resolve(.abandoned) }
        if case .terminated = continuation.yield(MQTTDeliveryBatch(messages: pending, gate: g)) {
            g.resolve(.abandoned)
        }
        let outcome = g.wait()
        gate.withLock { $0 = nil }
        // An abandoned batch stays in `pending`: its PUBACKs are queued inside libmosquitto, and a
        // non-empty `pending` is what keeps flushWrites() and teardown() from ever sending them.
        guard outcome == .acknowledged else { return false }
        pending.removeAll(keepingCapacity: true)
        flushWrites()
        return true
    }

    private func flushWrites() {
        guard let mosq, pending.isEmpty, mosquitto_socket(mosq) >= 0 else { return }
        if mosquitto_want_write(mosq) {
            let rc = mosquitto_loop_write(mosq, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                status.withLock { $0.lastError = "write failed: \(MosquittoLibrary.describe(rc))" }
            }
        }
    }

    private func waitForSocket(timeoutMilliseconds: Int32) -> (readable: Bool, wake: Bool) {
        guard let mosq else { return (false, false) }
        let sock = mosquitto_socket(mosq)
        var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        if sock >= 0 {
            var events = Int16(POLLIN)
            if pending.isEmpty && mosquitto_want_write(mosq) { events |= Int16(POLLOUT) }
            fds.append(pollfd(fd: sock, events: events, revents: 0))
        }
        let n = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        guard n > 0 else { return (false, false) }
        let wake = fds[0].revents & Int16(POLLIN) != 0
        let readable = fds.count > 1 && fds[1].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0
        return (readable, wake)
    }

    private func socketReadable() -> Bool {
        guard let mosq else { return false }
        var fd = pollfd(fd: mosquitto_socket(mosq), events: Int16(POLLIN), revents: 0)
        return poll(&fd, 1, 0) > 0 && fd.revents & Int16(POLLIN) != 0
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeRead, &buffer, buffer.count) > 0 {}
    }

    /// Waits `seconds` or until woken (stop, new topics); the heartbeat keeps turning every second,
    /// since a deliberate wait is not a stalled loop.
    private func sleepInterruptibly(seconds: Double) {
        let deadline = DispatchTime.now().uptimeNanoseconds &+ UInt64(max(0, seconds) * 1e9)
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return }
            heartbeat.store(now, ordering: .relaxed)
            var fd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
            if poll(&fd, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1))) > 0 { return }
        }
    }

    /// The wait before reconnecting after `consecutiveTakeovers` takeovers in a row: the minimum
    /// reconnect delay doubled each time, capped at ``MQTTClientConfiguration/takeoverBackoffMax``.
    private var takeoverBackoff: Double {
        min(configuration.minReconnectDelay * pow(2, Double(min(consecutiveTakeovers, 30))), configuration.takeoverBackoffMax)
    }

    /// Ends a takeover episode once a connection has stayed up for twice the back-off cap.
    private func clearTakeoverIfStable() {
        guard consecutiveTakeovers > 0 else { return }
        let up = Double(DispatchTime.now().uptimeNanoseconds &- connectedSince) / 1e9
        guard up >= 2 * configuration.takeoverBackoffMax else { return }
        if status.withLock({ $0.sessionTakenOver }) {
            logger.notice("MQTT session held again", metadata: ["mqtt.client_id": "\(configuration.clientID)"])
        }
        consecutiveTakeovers = 0
        lastTakeoverLog = nil
        status.withLock { $0.sessionTakenOver = false }
    }

    /// Counts a takeover: the last connection was closed by a reachable broker (MQTT 3.1.1 §3.1.4
    /// step 2: a new connection with the same client id closes the existing one). Warns at most once
    /// a minute while it goes on; the per-connection lines are debug meanwhile.
    private func recordTakeover() {
        consecutiveTakeovers += 1
        let flagged = consecutiveTakeovers >= 3
        let total = status.withLock { s -> Int in
            s.sessionTakeovers += 1
            s.sessionTakenOver = s.sessionTakenOver || flagged
            return s.sessionTakeovers
        }
        guard flagged else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if let last = lastTakeoverLog, now &- last < 60_000_000_000 { return }
        lastTakeoverLog = now
        logger.warning(
            "MQTT session taken over: another client connects with this client id and the broker closes this connection; is a second vitalsd using the same mqtt.client_id?",
            metadata: ["mqtt.client_id": "\(configuration.clientID)", "mqtt.takeovers": "\(total)",
                       "mqtt.takeovers_in_a_row": "\(consecutiveTakeovers)", "mqtt.retry_in_s": "\(takeoverBackoff)"])
    }

    /// The level of a per-connection log line: debug while the session is being taken over, so that
    /// two clients fighting over one id do not flood the log (one warning a minute says it).
    private func connectionLogLevel(_ level: Logger.Level) -> Logger.Level {
        consecutiveTakeovers >= 3 ? .debug : level
    }

    private func markDisconnected() {
        status.withLock {
            $0.connected = false
            $0.subscribed = false
        }
    }

    private func teardown() {
        if let mosq {
            if pending.isEmpty && mosquitto_socket(mosq) >= 0 {
                // Every read message was acknowledged: leave cleanly. The session stays on the broker.
                _ = mosquitto_disconnect(mosq)
                flushWrites()
            }
            mosquitto_destroy(mosq)
            self.mosq = nil
            Unmanaged.passUnretained(self).release()
        }
        markDisconnected()
        close(wakeRead)
        close(wakeWrite)
        continuation.finish()
        let waiters = finished.withLock { state -> [OnceContinuation] in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for w in waiters { w.resume() }
        logger.info("MQTT subscription closed")
    }

    // MARK: Callbacks (loop thread)

    func didConnect(_ rc: Int32) {
        guard mosq != nil else { return }
        guard rc == 0 else {
            let text = String(cString: mosquitto_connack_string(rc))
            lostWhileConnected = false
            status.withLock { $0.lastError = "broker refused connection: \(text)" }
            // 4 and 5 are bad credentials and not authorised: retrying alone will not fix them.
            logger.error(
                "broker refused connection",
                metadata: ["mqtt.connack": "\(rc)", "mqtt.reason": "\(text)", "mqtt.retryable": "\(rc != 4 && rc != 5)"])
            return
        }
        accepted = true
        connections += 1
        connectedSince = DispatchTime.now().uptimeNanoseconds
        if lostWhileConnected {
            lostWhileConnected = false
            recordTakeover()
        }
        status.withLock { [connections] s in
            s.connected = true
            s.subscribed = false
            s.reconnects = connections - 1
        }
        logger.log(
            level: connectionLogLevel(.info), "connected to broker",
            metadata: ["mqtt.host": "\(configuration.host)", "mqtt.port": "\(configuration.port)",
                       "mqtt.client_id": "\(configuration.clientID)"])
        // Always subscribe, whatever session_present says: the configured list is the truth (F4).
        subscribe(desiredTopics.withLock { $0 })
    }

    /// Sends SUBSCRIBE (QoS 1) for `topics`; it leaves with the next write.
    private func subscribe(_ topics: [String]) {
        guard let mosq else { return }
        var cTopics = topics.map { strdup($0) }
        defer { cTopics.forEach { free($0) } }
        var mid: Int32 = 0
        let src = cTopics.withUnsafeMutableBufferPointer { buffer in
            mosquitto_subscribe_multiple(mosq, &mid, Int32(buffer.count), buffer.baseAddress, 1, 0, nil)
        }
        if let error = MosquittoLibrary.check(src, "subscribe") {
            logger.error("subscribe failed", metadata: ["mqtt.error": "\(error.message)"])
        }
        subscribeMID = mid
        lastSubscribeTopics = topics
        subscribedTopics = topics
    }

    /// Unsubscribes filters no longer wanted and subscribes the new list, on the live connection.
    private func changeSubscriptions(to topics: [String]) {
        guard let mosq else { return }
        let removed = subscribedTopics.filter { !topics.contains($0) }
        if !removed.isEmpty {
            var cTopics = removed.map { strdup($0) }
            defer { cTopics.forEach { free($0) } }
            let rc = cTopics.withUnsafeMutableBufferPointer { buffer in
                mosquitto_unsubscribe_multiple(mosq, nil, Int32(buffer.count), buffer.baseAddress, nil)
            }
            if let error = MosquittoLibrary.check(rc, "unsubscribe") {
                logger.error("unsubscribe failed", metadata: ["mqtt.error": "\(error.message)"])
            }
        }
        status.withLock { $0.subscribed = false }
        logger.info("topic filters changed", metadata: ["mqtt.topic_filters": "\(topics.joined(separator: ","))",
                                                        "mqtt.unsubscribed": "\(removed.joined(separator: ","))"])
        subscribe(topics)
    }

    func didSubscribe(mid: Int32, granted: [Int32]) {
        guard mid == subscribeMID else { return }
        let refused = granted.enumerated().filter { $0.element == 0x80 || $0.element < 1 }
        for (index, qos) in refused {
            let topic = index < lastSubscribeTopics.count ? lastSubscribeTopics[index] : "?"
            logger.error(
                "broker did not grant QoS 1 subscription",
                metadata: ["mqtt.topic_filter": "\(topic)", "mqtt.granted_qos": "\(qos)"])
        }
        status.withLock { $0.subscribed = refused.isEmpty }
        if refused.isEmpty {
            logger.log(level: connectionLogLevel(.info), "subscribed", metadata: ["mqtt.topic_filters": "\(lastSubscribeTopics.joined(separator: ","))"])
        }
    }

    func didDisconnect(_ rc: Int32) {
        markDisconnected()
    }

    /// TLS lines libmosquitto logged since the last check (host-name and certificate verification).
    private var tlsLog: [String] = []

    func didLog(level: Int32, _ text: String) {
        if text.contains("host name verification failed") || text.contains("OpenSSL Error") || text.contains("Unable to load")
            || text.contains("certificate/key are inconsistent") {
            tlsLog.append(text)
        }
    }

    /// A specific message for the TLS failure libmosquitto just logged, or nil; clears the log.
    private func tlsProblem() -> String? {
        defer { tlsLog.removeAll() }
        guard let tls = configuration.tls, !tlsLog.isEmpty else { return nil }
        if tlsLog.contains(where: { $0.contains("host name verification failed") }) {
            return "TLS: the broker's certificate does not name the host '\(configuration.host)' (mqtt.host); connect by a name or address in its certificate"
        }
        // libmosquitto reads the files at the first connect: "Unable to load CA certificates",
        // "Unable to load client certificate", "Unable to load client key file" (net_mosq.c).
        if tlsLog.contains(where: { $0.contains("Unable to load CA certificates") }) {
            return "TLS: the file in mqtt.tls_ca_file (\(tls.caFile)) holds no CA certificate OpenSSL can read (PEM X.509 certificates expected)"
        }
        if tlsLog.contains(where: { $0.contains("Unable to load client certificate") }) {
            return "TLS: the file in mqtt.tls_cert_file (\(tls.certFile ?? "-")) holds no certificate OpenSSL can read (PEM X.509 expected)"
        }
        if tlsLog.contains(where: { $0.contains("Unable to load client key") }) {
            return "TLS: the file in mqtt.tls_key_file (\(tls.keyFile ?? "-")) holds no private key OpenSSL can read"
        }
        if tlsLog.contains(where: { $0.contains("certificate/key are inconsistent") }) {
            return "TLS: the key in mqtt.tls_key_file does not belong to the certificate in mqtt.tls_cert_file"
        }
        if tlsLog.contains(where: { $0.contains("certificate verify failed") }) {
            return "TLS: the broker's certificate is not signed by the CA in mqtt.tls_ca_file (\(tls.caFile)), or it has expired"
        }
        return "TLS: handshake failed: \(tlsLog.last ?? "")"
    }

    func didReceive(_ message: MQTTMessage) {
        pending.append(message)
    }
}

/// A continuation that may be resumed from two places (completion and timeout), resuming once.
final class OnceContinuation: Sendable {
    private let continuation: Mutex<CheckedContinuation<Void, Never>?>

    init(_ c: CheckedContinuation<Void, Never>) { continuation = Mutex(c) }

    func resume() {
        continuation.withLock { c in
            c?.resume()
            c = nil
        }
    }
}

// libmosquitto callbacks: file-level functions, never closures, so that they carry no actor
// isolation. They run on the loop thread and find their SubscriberLoop through `userdata`.

private func subscriberLoop(_ userdata: UnsafeMutableRawPointer?) -> SubscriberLoop? {
    guard let userdata else { return nil }
    return Unmanaged<SubscriberLoop>.fromOpaque(userdata).takeUnretainedValue()
}

private func subscriberOnConnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32) {
    subscriberLoop(userdata)?.didConnect(rc)
}

private func subscriberOnDisconnect(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ rc: Int32) {
    subscriberLoop(userdata)?.didDisconnect(rc)
}

private func subscriberOnLog(_ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ level: Int32, _ text: UnsafePointer<CChar>?) {
    guard let text else { return }
    subscriberLoop(userdata)?.didLog(level: level, String(cString: text))
}

private func subscriberOnSubscribe(
    _ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ mid: Int32, _ count: Int32,
    _ granted: UnsafePointer<Int32>?
) {
    let list = granted.map { Array(UnsafeBufferPointer(start: $0, count: Int(count))) } ?? []
    subscriberLoop(userdata)?.didSubscribe(mid: mid, granted: list)
}

private func subscriberOnMessage(
    _ mosq: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ message: UnsafePointer<mosquitto_message>?
) {
    guard let m = message?.pointee, let loop = subscriberLoop(userdata) else { return }
    let topic = m.topic.map { String(cString: $0) } ?? ""
    let payload: [UInt8]
    if let bytes = m.payload, m.payloadlen > 0 {
        payload = Array(UnsafeRawBufferPointer(start: bytes, count: Int(m.payloadlen)))
    } else {
        payload = []
    }
    loop.didReceive(MQTTMessage(topic: topic, payload: payload, qos: Int(m.qos), retain: m.retain))
}
