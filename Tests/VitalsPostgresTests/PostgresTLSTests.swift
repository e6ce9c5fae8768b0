import PostgresTestSupport
import Foundation
import PostgresNIO
import Testing
import VitalsPostgres

/// Whether this connection is encrypted, as the server sees it.
func connectionIsEncrypted(_ client: PostgresClient) async throws -> Bool {
    let rows = try await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: testLogger).collect()
    return try rows.map { try $0.decode(Bool.self) } == [true]
}

@Suite("TLS to PostgreSQL per sslmode, against a server with a certificate from a private CA")
struct PostgresTLSTests {
    @Test func disableConnectsInTheClear() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let encrypted = try await cluster.withClient(settings: cluster.settings(), deadline: .seconds(60)) { client in
            try await connectionIsEncrypted(client)
        }
        #expect(!encrypted)
    }

    @Test func requireEncryptsWithoutCheckingTheCertificate() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let settings = try cluster.settings(parameters: "sslmode=require")
        let encrypted = try await cluster.withClient(settings: settings, deadline: .seconds(60)) { client in
            try await connectionIsEncrypted(client)
        }
        #expect(encrypted)
    }

    @Test func verifyFullConnectsToTheNameInTheCertificateSignedByTheGivenCA() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let settings = try cluster.settings(
            host: "localhost", parameters: "sslmode=verify-full&sslrootcert=\(cluster.certificateAuthorityFile)")
        let encrypted = try await cluster.withClient(settings: settings, deadline: .seconds(60)) { client in
            try await connectionIsEncrypted(client)
        }
        #expect(encrypted)
    }

    /// postgres-nio keeps retrying a connection that fails; the refusal shows as the deadline passing
    /// without a single query answered.
    @Test(arguments: [
        ("localhost", "sslmode=verify-full"),  // the private CA is not among the system's roots
        ("127.0.0.1", "sslmode=verify-full&sslrootcert=CA"),  // the certificate names localhost, not this address
    ])
    func verifyFullRefusesAnUntrustedCertificateOrAnotherName(host: String, parameters: String) async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let settings = try cluster.settings(
            host: host, parameters: parameters.replacingOccurrences(of: "CA", with: cluster.certificateAuthorityFile))
        await #expect(throws: (any Error).self) {
            try await cluster.withClient(settings: settings, maximumConnections: 1, deadline: .seconds(3)) { client in
                try await connectionIsEncrypted(client)
            }
        }
    }
}
