import Foundation
import NIOSSL
import PostgresNIO

/// Where and how to reach the PostgreSQL server: parsed from a `postgres://` URL and an optional
/// password file.
///
/// The URL has the shape `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=MODE[&sslrootcert=PATH]]`
/// (`postgresql://` also accepted; user, host and database percent-decoded; port 5432 by default).
/// A password inside the URL is refused: it would end up in configuration files and process
/// listings; it comes from the password file instead, whose trailing newline is trimmed.
///
/// `sslmode` as in libpq (postgresql.org/docs/15/libpq-ssl.html, table 34.1), three of its modes:
/// - `disable`: no TLS (loopback or a private network only);
/// - `require`: TLS, the server's certificate is not verified (protects against eavesdropping only);
/// - `verify-full` (the default when `sslmode` is absent): TLS, the certificate must chain to a trusted
///   root (the system's, or `sslrootcert`) and name the host.
///
/// Neither ``description`` nor a `dump` shows the password.
public struct PostgresSettings: Sendable, Equatable, CustomStringConvertible {
    /// How the connection is protected; libpq's `sslmode` names.
    public enum SSLMode: String, Sendable, Equatable, CaseIterable {
        case disable
        case require
        case verifyFull = "verify-full"
    }

    /// Host name or IP address of the server.
    public var host: String
    /// TCP port of the server.
    public var port: Int
    /// The role to connect as.
    public var username: String
    /// The database to connect to.
    public var database: String
    /// TLS mode.
    public var sslMode: SSLMode
    /// A PEM file of the certificate authorities to trust for `verify-full` instead of the system's; nil for the system's.
    public var rootCertificatePath: String?
    /// The password, from the password file; nil when none was given (trust or peer authentication).
    public var password: Secret?

    /// A string that never shows itself: its description and mirror say `<redacted>`.
    public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// The secret text.
        public let value: String
        /// - Parameter value: the secret text.
        public init(_ value: String) { self.value = value }
        public var description: String { "<redacted>" }
        public var debugDescription: String { "<redacted>" }
        public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
    }

    /// Parses `url` and reads the password from `passwordFile`.
    ///
    /// - Parameters:
    ///   - url: a `postgres://` URL (see the type's documentation).
    ///   - passwordFile: a file holding the password, trailing newline trimmed; nil for none.
    /// - Throws: ``PostgresSettingsError`` naming what is wrong (never echoing a password).
    public init(url: String, passwordFile: String? = nil) throws(PostgresSettingsError) {
        func fail(_ code: PostgresSettingsError.Code, _ message: String) -> PostgresSettingsError {
            PostgresSettingsError(code: code, message: message)
        }
        guard let components = URLComponents(string: url) else {
            throw fail(.badURL, "database.url is not a URL (expected postgres://USER@HOST:PORT/DATABASE)")
        }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw fail(.badURL, "database.url must start with postgres:// (got scheme '\(components.scheme ?? "")')")
        }
        guard components.percentEncodedPassword == nil else {
            throw fail(.passwordInURL, "database.url must not hold a password: put it in the password file")
        }
        guard let user = components.user, !user.isEmpty else {
            throw fail(.badURL, "database.url names no user (expected postgres://USER@HOST:PORT/DATABASE)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw fail(.badURL, "database.url names no host (expected postgres://USER@HOST:PORT/DATABASE)")
        }
        // URLComponents keeps the brackets of an IPv6 literal in `host`.
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else {
            throw fail(.badURL, "database.url port \(port) is not between 1 and 65535")
        }
        let path = components.path
        let database = path.hasPrefix("/") ? String(path.dropFirst()) : path
        guard !database.isEmpty, !database.contains("/") else {
            throw fail(.badURL, "database.url names no database (expected postgres://USER@HOST:PORT/DATABASE)")
        }
        var sslMode = SSLMode.verifyFull
        var rootCertificatePath: String?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, let mode = SSLMode(rawValue: value) else {
                    let known = SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
                    throw fail(.badSSLMode, "database.url sslmode '\(item.value ?? "")' is not one of \(known)")
                }
                sslMode = mode
            case "sslrootcert":
                guard let value = item.value, !value.isEmpty else {
                    throw fail(.badURL, "database.url sslrootcert is empty")
                }
                rootCertificatePath = value
            default:
                throw fail(.badURL, "database.url parameter '\(item.name)' is not supported (sslmode, sslrootcert)")
            }
        }
        var password: Secret?
        if let passwordFile {
            let text: String
            do {
                text = try String(contentsOfFile: passwordFile, encoding: .utf8)
            } catch {
                throw fail(.passwordFileUnreadable, "database password file \(passwordFile) cannot be read")
            }
            var trimmed = Substring(text)
            while trimmed.last == "\n" || trimmed.last == "\r\n" || trimmed.last == "\r" { trimmed.removeLast() }
            guard !trimmed.isEmpty else {
                throw fail(.passwordFileEmpty, "database password file \(passwordFile) is empty")
            }
            password = Secret(String(trimmed))
        }
        self.init(
            host: bareHost, port: port, username: user, database: database, sslMode: sslMode,
            rootCertificatePath: rootCertificatePath, password: password)
    }

    /// Settings from their parts.
    public init(
        host: String, port: Int = 5432, username: String, database: String, sslMode: SSLMode = .verifyFull,
        rootCertificatePath: String? = nil, password: Secret? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.database = database
        self.sslMode = sslMode
        self.rootCertificatePath = rootCertificatePath
        self.password = password
    }

    /// The URL without the password, for logs and `config check`.
    public var description: String {
        var text = "postgres://\(username)@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
        if let rootCertificatePath { text += "&sslrootcert=\(rootCertificatePath)" }
        return text
    }

    /// The TLS configuration for ``sslMode``; nil for `disable`.
    public var tlsConfiguration: TLSConfiguration? {
        switch sslMode {
        case .disable:
            return nil
        case .require:
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .none
            return tls
        case .verifyFull:
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .fullVerification
            if let rootCertificatePath { tls.trustRoots = .file(rootCertificatePath) }
            return tls
        }
    }

    /// The TLS part of the client configuration for ``sslMode``.
    public var tls: PostgresClient.Configuration.TLS {
        tlsConfiguration.map { .require($0) } ?? .disable
    }

    /// A postgres-nio client configuration for these settings.
    ///
    /// - Parameters:
    ///   - maximumConnections: the pool's size.
    ///   - connectTimeout: how long one TCP connection attempt may take.
    /// - Returns: the configuration, with the password when one was read.
    public func clientConfiguration(
        maximumConnections: Int = 10, connectTimeout: Duration = .seconds(10)
    ) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password?.value, database: database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = connectTimeout
        return configuration
    }
}

/// Why ``PostgresSettings`` could not be made. The message names the setting, never a password.
public struct PostgresSettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of mistake.
    public enum Code: Sendable, Equatable {
        /// Not a `postgres://USER@HOST:PORT/DATABASE` URL, or an unsupported parameter.
        case badURL
        /// The URL carries a password.
        case passwordInURL
        /// `sslmode` is not `disable`, `require` or `verify-full`.
        case badSSLMode
        /// The password file is missing or unreadable.
        case passwordFileUnreadable
        /// The password file holds nothing but a newline.
        case passwordFileEmpty
    }

    /// What kind of mistake.
    public var code: Code
    /// A sentence for the operator.
    public var message: String
    public var description: String { message }

    /// An error from its parts.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }
}
