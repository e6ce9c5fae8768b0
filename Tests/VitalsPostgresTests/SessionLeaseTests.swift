import PostgresTestSupport
import Foundation
import PostgresNIO
import Testing
import VitalsPostgres

/// A reading row for glucose from device `device` at `measuredAt` ms.
func glucose(_ device: String, at measuredAt: Int64, _ mgdl: Double = 110) -> StoredReading {
    StoredReading(
        deviceID: device, patientID: "p-" + device, type: "glucose", loinc: "41653-7", value: mgdl, unit: "mg/dL",
        canonicalValue: mgdl, canonicalUnit: "mg/dL", measuredAt: measuredAt, receivedAt: measuredAt + 1500)
}

/// Enrols the devices the tests' readings name (readings refer to enrolled devices and patients):
/// d1, d2, d3 and dev-0 … dev-99 of patients "p-" + device, and gm-7 of patient p-7.
func enrollTestDevices(_ client: PostgresClient) async throws {
    let devices = ["d1", "d2", "d3"] + (0..<100).map { "dev-\($0)" }
    let pairs = devices.map { ($0, "p-" + $0) } + [("gm-7", "p-7")]
    try await client.query("""
        INSERT INTO patients (id, timezone, created_at) SELECT DISTINCT unnest(\(pairs.map(\.1))::text[]), 'UTC', 0
        """, logger: testLogger)
    try await client.query("""
        INSERT INTO devices (id, kind, patient_id, created_at)
        SELECT d, 'glucometer', p, 0 FROM unnest(\(pairs.map(\.0))::text[], \(pairs.map(\.1))::text[]) AS t(d, p)
        """, logger: testLogger)
}

/// The number of rows of `table`, counted by the server.
func rowCount(_ client: PostgresClient, _ table: String) async throws -> Int64 {
    let rows = try await client.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"), logger: testLogger)
    for try await count in rows.decode(Int64.self) { return count }
    return -1
}

/// Waits (up to 60 s) until a query of this database that starts with `prefix` waits for a lock.
func waitUntilBlocked(_ client: PostgresClient, queryStartingWith prefix: String) async throws {
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline {
        let waiting = try await client.query("""
            SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND starts_with(ltrim(query), \(prefix))
            """, logger: testLogger).collect().map { try $0.decode(Int64.self) }
        if waiting.first ?? 0 > 0 { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw ClusterFailure("no query starting with '\(prefix)' waited for a lock within 60 s")
}

@Suite("MQTT session leases in PostgreSQL: exclusive, taken over after expiry, fencing a former owner")
struct SessionLeaseTests {
    @Test func aLiveLeaseIsExclusive() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            let a = try #require(try await leases.acquire(session: "gw-east", node: "node-a", ttl: .seconds(60)))
            #expect(a.epoch == 1)
            #expect(a.node == "node-a")
            #expect(try await leases.acquire(session: "gw-east", node: "node-b", ttl: .seconds(60)) == nil)
            // Not even its holder takes a live lease again: the process that held it may still run.
            #expect(try await leases.acquire(session: "gw-east", node: "node-a", ttl: .seconds(60)) == nil)
            // Another session is independent.
            let other = try #require(try await leases.acquire(session: "gw-west", node: "node-b", ttl: .seconds(60)))
            #expect(other.epoch == 1)
            #expect(try await leases.renew(a))

            let owners = try await leases.owners()
            #expect(owners.map(\.session) == ["gw-east", "gw-west"])
            #expect(owners.map(\.owner) == ["node-a", "node-b"])
            #expect(owners.map(\.epoch) == [1, 1])
            // Expiry by the server's clock: 60 s after the renewal, so at most 60 s from the server's now.
            let remaining = try await client.query(
                "SELECT extract(epoch FROM expires_at - now())::float8 FROM mqtt_session_leases WHERE session_id = 'gw-east'",
                logger: testLogger).collect().map { try $0.decode(Double.self) }
            #expect(remaining.count == 1 && remaining[0] > 0 && remaining[0] <= 60)
        }
    }

    @Test func anExpiredLeaseIsTakenOverWithTheNextEpochAndFencesTheFormerOwner() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let a = try #require(try await leases.acquire(session: "gw-east", node: "node-a", ttl: .milliseconds(300)))
            #expect(try await ingest.store(batch: IngestBatch(readings: [glucose("d1", at: 1_000), glucose("d1", at: 2_000)]), lease: a)
                == IngestOutcome(newReadings: 2, newDeadLetters: 0))

            // node-a stops renewing; node-b tries until the server's clock passes the expiry.
            var taken: Lease?
            let deadline = Date().addingTimeInterval(60)
            while taken == nil, Date() < deadline {
                taken = try await leases.acquire(session: "gw-east", node: "node-b", ttl: .seconds(60))
                if taken == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            let b = try #require(taken)
            #expect(b.epoch == 2)

            // The former owner learns it lost the lease, and its batch is refused whole.
            #expect(try await leases.renew(a) == false)
            let fenced = IngestBatch(
                readings: [glucose("d1", at: 3_000), glucose("d2", at: 3_000)],
                deadLetters: [StoredDeadLetter(receivedAt: 3_000, topic: "devices/d9/readings", deviceID: "d9", reason: "unknown_device", detail: "not enrolled", payload: [1, 2, 3])])
            await #expect(throws: LeaseLost(lease: a, currentOwner: "node-b", currentEpoch: 2)) {
                try await ingest.store(batch: fenced, lease: a)
            }
            #expect(try await rowCount(client, "readings") == 2)
            #expect(try await rowCount(client, "readings WHERE measured_at = 3000") == 0)
            #expect(try await rowCount(client, "dead_letters") == 0)
            #expect(try await leases.release(a) == false)

            // The new owner stores the same batch.
            #expect(try await ingest.store(batch: fenced, lease: b) == IngestOutcome(newReadings: 2, newDeadLetters: 1))
            #expect(try await rowCount(client, "readings") == 4)
            let owners = try await leases.owners()
            #expect(owners.map(\.owner) == ["node-b"])
            #expect(owners.map(\.epoch) == [2])
        }
    }

    @Test func aTakeoverWaitsForTheBatchInFlightToCommit() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let a = try #require(try await leases.acquire(session: "gw-east", node: "node-a", ttl: .milliseconds(300)))
            try await client.withConnection { blocker in
                // Another transaction holds the readings table, so node-a's batch stops after its lease check.
                try await blocker.query("BEGIN", logger: testLogger)
                try await blocker.query("LOCK TABLE readings IN EXCLUSIVE MODE", logger: testLogger)
                async let stored = ingest.store(batch: IngestBatch(readings: [glucose("d1", at: 7_000)]), lease: a)
                try await waitUntilBlocked(client, queryStartingWith: "INSERT INTO readings")
                // The lease expires by the server's clock while the batch is in flight.
                let deadline = Date().addingTimeInterval(60)
                while Date() < deadline {
                    let expired = try await client.query(
                        "SELECT clock_timestamp() > expires_at FROM mqtt_session_leases", logger: testLogger
                    ).collect().map { try $0.decode(Bool.self) }
                    if expired == [true] { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                // node-b's takeover waits for the batch's lock on the lease row…
                async let taken = leases.acquire(session: "gw-east", node: "node-b", ttl: .seconds(60))
                try await waitUntilBlocked(client, queryStartingWith: "INSERT INTO mqtt_session_leases")
                try await blocker.query("COMMIT", logger: testLogger)
                // …so the batch commits under epoch 1, and node-b owns the session from epoch 2 on.
                #expect(try await stored == IngestOutcome(newReadings: 1, newDeadLetters: 0))
                #expect(try await taken?.epoch == 2)
            }
            #expect(try await rowCount(client, "readings") == 1)
            await #expect(throws: LeaseLost(lease: a, currentOwner: "node-b", currentEpoch: 2)) {
                try await ingest.store(batch: IngestBatch(readings: [glucose("d1", at: 8_000)]), lease: a)
            }
        }
    }

    @Test func aReleasedLeaseIsFreeAtOnceAndFencesItsFormerHolder() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let a = try #require(try await leases.acquire(session: "s", node: "node-a", ttl: .seconds(60)))
            #expect(try await leases.release(a))
            #expect(try await leases.owners() == [SessionOwnership(session: "s", owner: nil, epoch: 1, expiresAt: nil)])
            await #expect(throws: LeaseLost(lease: a, currentOwner: nil, currentEpoch: 1)) {
                try await ingest.store(batch: IngestBatch(readings: [glucose("d1", at: 1)]), lease: a)
            }
            #expect(try await leases.renew(a) == false)
            let b = try #require(try await leases.acquire(session: "s", node: "node-b", ttl: .seconds(60)))
            #expect(b.epoch == 2)
            // A lease for a session that has no row at all is lost too.
            let ghost = Lease(session: "never", node: "node-a", epoch: 1, expiresAt: Date(), ttl: .seconds(1))
            await #expect(throws: LeaseLost(lease: ghost, currentOwner: nil, currentEpoch: nil)) {
                try await ingest.store(batch: IngestBatch(readings: [glucose("d1", at: 1)]), lease: ghost)
            }
            #expect(try await rowCount(client, "readings") == 0)
        }
    }

    @Test func tenNodesAcquiringAtOnceGetExactlyOneLease() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            // Five rounds: a fresh session (an INSERT race), then a released one (an UPDATE race) four times.
            for round in 1...5 {
                let winners = try await withThrowingTaskGroup(of: Lease?.self) { group in
                    for n in 0..<10 {
                        group.addTask { try await leases.acquire(session: "gw-1", node: "node-\(n)", ttl: .seconds(60)) }
                    }
                    var won: [Lease] = []
                    for try await lease in group { if let lease { won.append(lease) } }
                    return won
                }
                #expect(winners.count == 1)
                let winner = try #require(winners.first)
                #expect(winner.epoch == Int64(round))
                let owners = try await leases.owners()
                #expect(owners.map(\.owner) == [winner.node])
                #expect(owners.map(\.epoch) == [Int64(round)])
                #expect(try await leases.release(winner))
            }
        }
    }
}

@Suite("The throw-away cluster's guard against a refused password")
struct RefusedPasswordTests {
    /// postgres-nio retries a refused password instead of failing: without a deadline this would hang.
    @Test func aWrongPasswordEndsAtTheDeadline() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        var settings = try cluster.settings()
        settings.password = PostgresSettings.Secret("not-the-password")
        let started = ContinuousClock.now
        await #expect(throws: ClusterFailure.self) {
            try await cluster.withClient(settings: settings, maximumConnections: 1, deadline: .seconds(2)) { client in
                try await rowCount(client, "pg_database")
            }
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }
}
