import PostgresTestSupport
import Foundation
import PostgresNIO
import Synchronization
import Testing
import VitalsPostgres

/// Polls `condition` every 20 ms until it holds; false after `seconds` (a bound for a failing test,
/// never a pace: a passing test returns as soon as the condition holds).
func eventually(within seconds: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// The roles a holder reported through `onChange`, in order.
final class RoleLog: Sendable {
    private let roles = Mutex<[SessionRole]>([])
    func append(_ role: SessionRole) { roles.withLock { $0.append(role) } }
    var all: [SessionRole] { roles.withLock { $0 } }
}

@Suite("A node holds an MQTT session's lease: standby, owner, takeover, fencing after a freeze")
struct SessionLeaseHolderTests {
    /// ttl 6 s, renewal every 0.5 s, stop acknowledging 2 s before a possible expiry, standby tries
    /// every 0.1 s: an owner steps down only when its renewals stall for 4 s, which a busy test
    /// machine does not reach.
    static let timing = try! LeaseTiming(ttl: .seconds(6), renewInterval: .milliseconds(500),
                                         safetyMargin: .seconds(2), standbyRetry: .milliseconds(100))

    /// Whether the server's clock has passed `instant`.
    static func serverPassed(_ client: PostgresClient, _ instant: Date) async throws -> Bool {
        let rows = try await client.query("SELECT now() > \(instant)", logger: testLogger)
        for try await passed in rows.decode(Bool.self) { return passed }
        return false
    }

    @Test func theOwnerRenewsAStandbyWaitsAndTakesOverWhenTheOwnerShutsDown() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let leases = SessionLeases(client: client, logger: testLogger)
            let a = SessionLeaseHolder(leases: leases, session: "gw-east", node: "node-a", timing: Self.timing,
                                       clock: ContinuousClock(), logger: testLogger)
            let b = SessionLeaseHolder(leases: leases, session: "gw-east", node: "node-b", timing: Self.timing,
                                       clock: ContinuousClock(), logger: testLogger)
            let aRoles = RoleLog(), bRoles = RoleLog()
            let runA = Task { await a.run { aRoles.append($0) } }
            #expect(await eventually { a.currentLease() != nil })
            let first = try #require(a.currentLease())
            #expect(first.epoch == 1 && first.node == "node-a")
            let runB = Task { await b.run { bRoles.append($0) } }

            // Past the first grant's expiry by the server's clock, the owner still holds the session
            // (it renewed) and the standby waited.
            #expect(try await eventually { try await Self.serverPassed(client, first.expiresAt) })
            #expect(a.currentLease() == first)
            #expect(b.role == .standby)
            let row = try #require(try await leases.owners().first)
            #expect(row.owner == "node-a" && row.epoch == 1)

            // node-a shuts down: it releases the lease, and node-b takes the session with the next epoch.
            runA.cancel()
            await runA.value
            #expect(a.currentLease() == nil)
            // Released, not left to expire: nobody holds it, or node-b already does.
            #expect(try await leases.owners().first?.owner != "node-a")
            #expect(await eventually(within: 10) { b.currentLease() != nil })
            let second = try #require(b.currentLease())
            #expect(second.epoch == 2 && second.node == "node-b")
            #expect(aRoles.all == [.owner(first)])
            #expect(bRoles.all == [.owner(second)])
            // The former owner's lease fences its writes.
            await #expect(throws: LeaseLost.self) {
                try await PostgresIngest(client: client, logger: testLogger).store(batch: IngestBatch(), lease: first)
            }
            runB.cancel()
            await runB.value
            let last = try #require(try await leases.owners().first)
            #expect(last.owner == nil && last.epoch == 2)
        }
    }

    @Test func aFrozenOwnerIsReplacedAndOnResumingNeitherAcknowledgesNorWrites() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            // node-a's clock stands still while it is frozen: its renewal loop never wakes, as a
            // process under SIGSTOP.
            let frozenClock = TestClock()
            let a = SessionLeaseHolder(leases: leases, session: "gw-west", node: "node-a", timing: Self.timing,
                                       clock: frozenClock, logger: testLogger)
            let b = SessionLeaseHolder(leases: leases, session: "gw-west", node: "node-b", timing: Self.timing,
                                       clock: ContinuousClock(), logger: testLogger)
            let aRoles = RoleLog()
            let runA = Task { await a.run { aRoles.append($0) } }
            #expect(await eventually { a.currentLease() != nil })
            let first = try #require(a.currentLease())
            let runB = Task { await b.run() }

            // Nobody renews node-a's lease: node-b takes it once it expires by the server's clock.
            #expect(await eventually(within: 30) { b.currentLease() != nil })
            let second = try #require(b.currentLease())
            #expect(second.epoch == first.epoch + 1)

            // node-a resumes: its monotonic clock has moved on by the time it was stopped. It no longer
            // holds the session before its loop has even run, and its loop reports the loss.
            frozenClock.advance(by: .seconds(10))
            #expect(a.currentLease() == nil)
            #expect(a.role == .standby)
            #expect(await eventually(within: 10) { aRoles.all == [.owner(first), .standby] })
            // A batch it had in hand when frozen is refused by the database, whatever its clock says.
            await #expect(throws: LeaseLost.self) {
                try await PostgresIngest(client: client, logger: testLogger)
                    .store(batch: IngestBatch(readings: [glucose("d1", at: 1_000)]), lease: first)
            }
            #expect(try await rowCount(client, "readings") == 0)
            // node-b keeps the session while node-a, resumed, stands by.
            #expect(b.currentLease() == second)

            runA.cancel()
            runB.cancel()
            await runA.value
            await runB.value
        }
    }
}
