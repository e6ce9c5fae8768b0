import Foundation
import Logging
import NIOPosix
import NIOSSL
import PostgresNIO
import VitalsDomain

/// What an operator's command learns of a PostgreSQL database: the server's version and the state
/// of vitalsd's schema in it.
public struct PostgresDatabaseStatus: Sendable, Hashable {
    /// The server's `server_version`, e.g. `15.8 (Debian 15.8-0+deb12u1)`.
    public var serverVersion: String
    /// Migrations recorded in `schema_migrations`, oldest first.
    public var applied: [String]
    /// Migrations of this build not yet applied, in the order they would run.
    public var pending: [String]
    /// Migrations recorded in the database that this build does not know: a newer build migrated it.
    public var unknown: [String]

    /// - Parameters: as the properties.
    public init(serverVersion: String, applied: [String], pending: [String], unknown: [String]) {
        self.serverVersion = serverVersion
        self.applied = applied
        self.pending = pending
        self.unknown = unknown
    }
}

/// Why a PostgreSQL database could not be reached or used, in words an operator can act on: the
/// server's own message (e.g. `password authentication failed for user "vitalsd"`), a refused TCP
/// connection, a TLS failure. Never the password.
public struct PostgresUnavailable: Error, Sendable, CustomStringConvertible {
    /// The settings' description (no password) and the reason.
    public let description: String

    /// - Parameters:
    ///   - settings: where the command tried to connect.
    ///   - error: what postgres-nio or the server answered.
    public init(_ settings: PostgresSettings, _ error: any Error) {
        description = "\(settings): \(Self.reason(error))"
    }

    /// The server's message and SQLSTATE when there is one; otherwise the underlying network or TLS
    /// error. postgres-nio's own description of its errors is deliberately generic.
    static func reason(_ error: any Error) -> String {
        if let transaction = error as? PostgresTransactionError, let inner = transaction.closureError ?? transaction.beginError {
            return reason(inner)
        }
        guard let psql = error as? PSQLError else { return String(describing: error) }
        if let message = psql.serverInfo?[.message] {
            let state = psql.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return message + state
        }
        if let connection = psql.underlying as? NIOConnectionError {
            // "Connection refused", "No route to host": what the operator checks next.
            let failures = connection.connectionErrors.map { failure -> String in
                let reason = (failure.error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? String(describing: failure.error)
                return "\(failure.target): \(reason)"
            }
            let lookup = [connection.dnsAError, connection.dnsAAAAError].compactMap { $0 }.first
            return failures.isEmpty
                ? "cannot resolve \(connection.host)\(lookup.map { " (\($0))" } ?? "")"
                : "cannot connect to " + failures.joined(separator: "; ")
        }
        if let underlying = psql.underlying { return String(describing: underlying) }
        return String(describing: psql.code)
    }
}

/// The operator's commands on a PostgreSQL database: find out whether it can be reached, what
/// schema it holds, and migrate it. Each opens its own connections and closes them before it returns.
public enum PostgresAdmin {
    /// Connects once, without postgres-nio's pool (which would retry a refused password for ever), and
    /// reads the server's version and the schema's migrations.
    /// - Parameters:
    ///   - settings: where and how to connect.
    ///   - connectTimeout: how long the TCP connection may take.
    ///   - logger: postgres-nio's logger.
    /// - Returns: the server's version and the migrations applied, pending and unknown to this build.
    /// - Throws: ``PostgresUnavailable`` naming the reason (refused, authentication, TLS, a missing database).
    public static func status(
        _ settings: PostgresSettings, connectTimeout: Duration = .seconds(10), logger: Logger
    ) async throws(PostgresUnavailable) -> PostgresDatabaseStatus {
        do {
            let connection = try await connect(settings, connectTimeout: connectTimeout, logger: logger)
            do {
                let version = try await connection.query("SHOW server_version", logger: logger).decode(String.self).collected()
                let exists = try await connection.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
                    .decode(Bool.self).collected()
                let applied = exists.first == true
                    ? try await connection.query("SELECT name FROM schema_migrations ORDER BY applied_at, name", logger: logger)
                        .decode(String.self).collected()
                    : []
                try await connection.close()
                let known = PostgresSchema.migrations.map(\.name)
                return PostgresDatabaseStatus(
                    serverVersion: version.first ?? "unknown", applied: applied,
                    pending: known.filter { !applied.contains($0) }, unknown: applied.filter { !known.contains($0) })
            } catch {
                try? await connection.close()
                throw error
            }
        } catch {
            throw PostgresUnavailable(settings, error)
        }
    }

    /// Applies this build's pending migrations (``PostgresSchema/migrate(_:migrations:logger:)``) and,
    /// when any ran, records `database.migrated` in the audit trail under `actor`.
    /// - Parameters:
    ///   - settings: where and how to connect.
    ///   - actor: who runs the upgrade, for the audit trail.
    ///   - now: the time recorded with it.
    ///   - logger: receives one line per migration applied.
    /// - Returns: the names applied, in order; empty when the schema was up to date.
    /// - Throws: ``PostgresUnavailable`` when the database cannot be reached, or with the server's
    ///   error for the migration that failed (it and later ones are not recorded).
    public static func migrate(
        _ settings: PostgresSettings, actor: String, now: Date, logger: Logger
    ) async throws(PostgresUnavailable) -> [String] {
        // The probe first: it fails at once where the pool would retry a wrong password for ever.
        _ = try await status(settings, logger: logger)
        do {
            return try await withClient(settings, logger: logger) { client in
                let applied = try await PostgresSchema.migrate(client, logger: logger)
                if !applied.isEmpty {
                    try await client.query("""
                        INSERT INTO audit_log (at, actor, action, target_type, target_id, detail)
                        VALUES (\(epochMilliseconds(now)), \(actor), 'database.migrated',
                                'database', 'database.url', \("migrations=" + applied.joined(separator: "; ")))
                        """, logger: logger)
                }
                return applied
            }
        } catch {
            throw PostgresUnavailable(settings, error)
        }
    }

    /// Runs `body` with a running client of two connections, and shuts the client down after it.
    /// - Throws: what `body` throws.
    public static func withClient<T: Sendable>(
        _ settings: PostgresSettings, logger: Logger, _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: settings.clientConfiguration(maximumConnections: 2), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// One connection, failing at once on a refused password or TLS handshake.
    static func connect(_ settings: PostgresSettings, connectTimeout: Duration, logger: Logger) async throws -> PostgresConnection {
        let tls: PostgresConnection.Configuration.TLS = try settings.tlsConfiguration.map { .require(try NIOSSLContext(configuration: $0)) } ?? .disable
        var configuration = PostgresConnection.Configuration(
            host: settings.host, port: settings.port, username: settings.username, password: settings.password?.value,
            database: settings.database, tls: tls)
        let components = connectTimeout.components
        configuration.options.connectTimeout = .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000)
        return try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
    }
}
