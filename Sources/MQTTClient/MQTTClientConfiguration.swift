/// Connection settings for the broker.
public struct MQTTClientConfiguration: Sendable, Hashable {
    /// Broker host name or address.
    public var host: String
    /// Broker TCP port (1883 for plain MQTT).
    public var port: Int
    /// A stable client id. The broker keeps the persistent session, and the messages queued while
    /// vitalsd is down, under this id; a random id would lose them (failure-modes F4).
    public var clientID: String
    /// Keepalive interval in seconds (5–65535). The broker drops a client it has not heard from in 1.5 × this.
    public var keepAlive: Int
    /// Topic filters subscribed with QoS 1 on every connect.
    public var topics: [String]
    /// Most messages read before they are handed on for commit in one batch.
    public var maxBatch: Int
    /// First reconnect delay, in seconds; doubled after each failed attempt up to ``maxReconnectDelay``.
    public var minReconnectDelay: Double
    /// Reconnect delay cap, in seconds.
    public var maxReconnectDelay: Double
    /// The cap of the delay before reconnecting after the session was taken over by another client
    /// with the same client id, in seconds: twice ``maxReconnectDelay`` (60 s by default). Two
    /// clients with one id then knock each other off at most about once per this interval instead
    /// of thousands of times a second.
    public var takeoverBackoffMax: Double { 2 * maxReconnectDelay }
    /// Optional user name; the password comes with it.
    public var username: String?
    /// Optional password, never logged.
    public var password: String?
    /// TLS to the broker; nil for plain TCP.
    public var tls: MQTTTLSConfiguration?

    public init(
        host: String = "127.0.0.1", port: Int = 1883, clientID: String, keepAlive: Int = 60,
        topics: [String] = ["devices/+/readings"], maxBatch: Int = 500, minReconnectDelay: Double = 1,
        maxReconnectDelay: Double = 30, username: String? = nil, password: String? = nil,
        tls: MQTTTLSConfiguration? = nil
    ) {
        self.tls = tls
        self.host = host
        self.port = port
        self.clientID = clientID
        self.keepAlive = keepAlive
        self.topics = topics
        self.maxBatch = maxBatch
        self.minReconnectDelay = minReconnectDelay
        self.maxReconnectDelay = maxReconnectDelay
        self.username = username
        self.password = password
    }
}

/// TLS settings. The broker's certificate and host name are always verified: there is no insecure mode.
public struct MQTTTLSConfiguration: Sendable, Hashable {
    /// PEM file of the CA that signed the broker's certificate.
    public var caFile: String
    /// Optional PEM client certificate, with its key, for brokers that authenticate clients by certificate.
    public var certFile: String?
    public var keyFile: String?
    /// Lowest protocol version: `tlsv1.2` (default) or `tlsv1.3`.
    public var version: String

    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil, version: String = "tlsv1.2") {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.version = version
    }
}

/// One message as the broker delivered it.
public struct MQTTMessage: Sendable, Hashable {
    /// The topic it was published to.
    public var topic: String
    /// The payload bytes, unchanged.
    public var payload: [UInt8]
    /// Delivery QoS (0, 1 or 2).
    public var qos: Int
    /// True when the broker sent it as a retained message (on subscribe).
    public var retain: Bool
    /// When the network loop read it (monotonic clock).
    public var receivedAt: ContinuousClock.Instant

    public init(topic: String, payload: [UInt8], qos: Int = 1, retain: Bool = false,
                receivedAt: ContinuousClock.Instant = .now) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.receivedAt = receivedAt
    }
}

/// What the connection is doing now; read by health checks.
public struct MQTTConnectionStatus: Sendable, Hashable {
    /// The broker accepted the connection (CONNACK 0).
    public var connected = false
    /// Every topic filter was granted by the broker on the current connection.
    public var subscribed = false
    /// Successful connections after the first.
    public var reconnects = 0
    /// The last connection problem, for operators (no payload data).
    public var lastError: String?
    /// Connections the broker closed while it stayed reachable, the next attempt being accepted at
    /// once: the mark of another client connecting with the same client id (MQTT 3.1.1 §3.1.4: the
    /// broker disconnects the existing client). Counted since start.
    public var sessionTakeovers = 0
    /// True after 3 takeovers in a row, until a connection has stayed up for twice the takeover
    /// back-off cap: another client keeps taking this client id's session.
    public var sessionTakenOver = false

    public init() {}
}

/// An MQTT failure, with libmosquitto's own message.
public struct MQTTError: Error, Sendable, CustomStringConvertible {
    /// The libmosquitto return code (`MOSQ_ERR_*`), or -1 for errors of this module.
    public var code: Int32
    /// What failed and why, e.g. "connect to 127.0.0.1:1883: Connection refused".
    public var message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
