import Foundation
import Logging
import MQTTClient
import Testing
import VitalsConfig

/// Certificates made at test time with openssl: a CA, an unrelated CA, and broker certificates.
struct TestCertificates {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "vitalsd-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=vitalsd test CA"])
        try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "2", "-subj", "/CN=unrelated CA"])
    }

    /// A broker certificate signed by the test CA for `subjectAltName` (e.g. `IP:127.0.0.1`).
    func brokerCertificate(_ name: String, altNames: String) throws -> (ca: String, cert: String, key: String) {
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
        try "subjectAltName=\(altNames)\n".write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", "\(name).csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                     "-out", "\(name).crt", "-days", "2", "-extfile", "\(name).ext"])
        // mosquitto started as root drops to its own user: it must read the key.
        chmod(directory + "/\(name).key", 0o644)
        return (directory + "/ca.crt", directory + "/\(name).crt", directory + "/\(name).key")
    }

    private func openssl(_ arguments: [String]) throws {
        // File arguments are names inside `directory`.
        let files: Set<String> = ["ca.key", "ca.crt", "other-ca.key", "other-ca.crt"]
        let absolute = arguments.map { a in
            files.contains(a) || [".key", ".csr", ".crt", ".ext"].contains(where: { a.hasSuffix($0) }) && !a.hasPrefix("/") && !a.hasPrefix("-")
                ? directory + "/" + a : a
        }
        let p = try ChildProcess(path: "/usr/bin/openssl", arguments: absolute, logPath: directory + "/openssl.log")
        p.waitBlocking()
        guard p.exitCode == 0 else { throw TestFailure("openssl \(arguments.joined(separator: " ")) failed") }
    }
}

@Suite("TLS to the broker", .serialized)
struct TLSTests {
    func status(host: String, port: Int, caFile: String) async throws -> MQTTConnectionStatus {
        var logger = Logger(label: "tls-test")
        logger.logLevel = .critical
        let config = MQTTClientConfiguration(
            host: host, port: port, clientID: "tls-\(UUID().uuidString.prefix(6))", topics: ["devices/+/readings"],
            minReconnectDelay: 0.2, maxReconnectDelay: 0.5, tls: MQTTTLSConfiguration(caFile: caFile))
        return try await MQTTSubscription.with(configuration: config, logger: logger) { sub in
            _ = await eventually { sub.status.subscribed || sub.status.lastError != nil }
            return sub.status
        }
    }

    @Test("a verified connection, a wrong CA and a host-name mismatch, each with its own message")
    func handshakes() async throws {
        let certificates = try TestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }

        let good = try await Broker(tls: try certificates.brokerCertificate("good", altNames: "IP:127.0.0.1,DNS:localhost"))
        let ok = try await status(host: "127.0.0.1", port: good.tlsPort!, caFile: certificates.directory + "/ca.crt")
        #expect(ok.subscribed)
        #expect(ok.lastError == nil)

        let wrongCA = try await status(host: "127.0.0.1", port: good.tlsPort!, caFile: certificates.directory + "/other-ca.crt")
        #expect(!wrongCA.subscribed)
        #expect(wrongCA.lastError?.contains("not signed by the CA in mqtt.tls_ca_file") == true, "\(wrongCA.lastError ?? "-")")

        // The certificate names broker.test; vitalsd connects by IP (failure-modes F8a).
        let named = try await Broker(tls: try certificates.brokerCertificate("named", altNames: "DNS:broker.test"))
        let mismatch = try await status(host: "127.0.0.1", port: named.tlsPort!, caFile: certificates.directory + "/ca.crt")
        #expect(!mismatch.subscribed)
        #expect(mismatch.lastError?.contains("does not name the host '127.0.0.1' (mqtt.host)") == true, "\(mismatch.lastError ?? "-")")
    }

    @Test("config check refuses a TLS file that is not PEM of the right kind, naming the key")
    func wrongKindOfFile() throws {
        let certificates = try TestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let d = certificates.directory
        try "hello, not a certificate\n".write(toFile: d + "/text.pem", atomically: true, encoding: .utf8)
        try "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".write(toFile: d + "/bad64.pem", atomically: true, encoding: .utf8)
        try "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n"
            .write(toFile: d + "/encrypted.key", atomically: true, encoding: .utf8)
        func problems(_ yaml: String) -> [String] {
            do {
                _ = try VitalsConfiguration.parse(yaml: yaml)
                return []
            } catch let error as ConfigurationErrors {
                return error.errors.map(\.description)
            } catch { return ["\(error)"] }
        }
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/text.pem\n") == [
            "mqtt.tls_ca_file: \(d)/text.pem is not PEM certificates (-----BEGIN CERTIFICATE-----): it holds no PEM block"])
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/bad64.pem\n") == [
            "mqtt.tls_ca_file: \(d)/bad64.pem is not PEM certificates (-----BEGIN CERTIFICATE-----): its CERTIFICATE block is not valid base64 DER"])
        // openssl req -newkey writes "-----BEGIN PRIVATE KEY-----": a key where the CA belongs.
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/ca.key\n") == [
            "mqtt.tls_ca_file: \(d)/ca.key holds a PRIVATE KEY where PEM certificates (-----BEGIN CERTIFICATE-----) belong"])
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/ca.crt\n  tls_cert_file: \(d)/ca.crt\n  tls_key_file: \(d)/ca.crt\n") == [
            "mqtt.tls_key_file: \(d)/ca.crt holds a CERTIFICATE where a PEM private key (-----BEGIN PRIVATE KEY-----) belongs"])
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/ca.crt\n  tls_cert_file: \(d)/ca.key\n  tls_key_file: \(d)/ca.key\n") == [
            "mqtt.tls_cert_file: \(d)/ca.key holds a PRIVATE KEY where PEM certificates (-----BEGIN CERTIFICATE-----) belong"])
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/ca.crt\n  tls_cert_file: \(d)/ca.crt\n  tls_key_file: \(d)/encrypted.key\n").first?
            .hasPrefix("mqtt.tls_key_file: \(d)/encrypted.key holds an encrypted private key; vitalsd cannot ask for its passphrase") == true)
        #expect(problems("mqtt:\n  tls_ca_file: \(d)/ca.crt\n  tls_cert_file: \(d)/ca.crt\n  tls_key_file: \(d)/ca.key\n").isEmpty)
    }

    @Test("a CA file OpenSSL cannot read: the connection error names mqtt.tls_ca_file")
    func unreadableCAAtConnect() async throws {
        let certificates = try TestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let good = try await Broker(tls: try certificates.brokerCertificate("good", altNames: "IP:127.0.0.1"))
        // PEM-shaped (a DER SEQUENCE of length 0), so only OpenSSL can tell it is no certificate.
        let fake = certificates.directory + "/fake-ca.pem"
        try "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n".write(toFile: fake, atomically: true, encoding: .utf8)
        let status = try await status(host: "127.0.0.1", port: good.tlsPort!, caFile: fake)
        #expect(!status.subscribed)
        #expect(status.lastError == "TLS: the file in mqtt.tls_ca_file (\(fake)) holds no CA certificate OpenSSL can read (PEM X.509 certificates expected)")
    }

    @Test("missing files and a client certificate without a CA are refused before connecting (F8b, F8c)")
    func configuration() throws {
        let certificates = try TestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let d = certificates.directory
        do {
            _ = try VitalsConfiguration.parse(yaml: "mqtt:\n  tls_ca_file: /nonexistent/ca.pem\n")
            Issue.record("accepted a missing CA file")
        } catch let error as ConfigurationErrors {
            #expect(error.errors.map(\.key) == ["mqtt.tls_ca_file"])
            #expect(error.description.contains("/nonexistent/ca.pem does not exist"))
        } catch { Issue.record("\(error)") }
        do {
            _ = try VitalsConfiguration.parse(yaml: "mqtt:\n  tls_cert_file: \(d)/ca.crt\n  tls_key_file: \(d)/ca.key\n")
            Issue.record("accepted a client certificate without a CA")
        } catch let error as ConfigurationErrors {
            #expect(error.errors.map(\.key) == ["mqtt.tls_ca_file"])
        } catch { Issue.record("\(error)") }
    }
}
