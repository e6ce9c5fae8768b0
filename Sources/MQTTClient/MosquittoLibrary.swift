internal import CMosquitto
import Glibc

/// The process-wide libmosquitto initialisation.
///
/// `mosquitto_lib_init` is not thread-safe; call ``initialize()`` once from the main thread at
/// start-up, before any client is created. Later calls do nothing.
public enum MosquittoLibrary {
    private static let once: Void = {
        _ = mosquitto_lib_init()
    }()

    /// Initialises libmosquitto once.
    public static func initialize() {
        _ = once
    }

    /// The version of the linked libmosquitto, e.g. "2.0.11".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, revision: Int32 = 0
        _ = mosquitto_lib_version(&major, &minor, &revision)
        return "\(major).\(minor).\(revision)"
    }

    /// Turns a libmosquitto return code into an error, or nil for success.
    static func check(_ rc: Int32, _ what: @autoclosure () -> String) -> MQTTError? {
        guard rc != MOSQ_ERR_SUCCESS.rawValue else { return nil }
        return MQTTError(code: rc, message: "\(what()): \(describe(rc))")
    }

    /// Applies TLS settings to a handle: CA, optional client certificate, minimum version, and
    /// certificate and host-name verification (never insecure).
    /// - Throws: ``MQTTError`` naming the file or setting libmosquitto refused.
    static func configureTLS(_ mosq: OpaquePointer, _ tls: MQTTTLSConfiguration) throws {
        let rc = mosquitto_tls_set(mosq, tls.caFile, nil, tls.certFile, tls.keyFile, nil)
        if rc != MOSQ_ERR_SUCCESS.rawValue {
            throw MQTTError(
                code: rc,
                message: "TLS: cannot use mqtt.tls_ca_file '\(tls.caFile)'\(tls.certFile.map { ", mqtt.tls_cert_file '\($0)'" } ?? "")\(tls.keyFile.map { ", mqtt.tls_key_file '\($0)'" } ?? ""): \(describe(rc))")
        }
        if let error = check(mosquitto_tls_opts_set(mosq, 1, tls.version, nil), "TLS: mqtt.tls_version '\(tls.version)'") {
            throw error
        }
        _ = mosquitto_tls_insecure_set(mosq, false)
    }

    /// libmosquitto's text for a return code; for `MOSQ_ERR_ERRNO`, the system error.
    static func describe(_ rc: Int32) -> String {
        if rc == MOSQ_ERR_ERRNO.rawValue {
            return String(cString: strerror(errno))
        }
        return String(cString: mosquitto_strerror(rc))
    }
}
