import Synchronization
import Testing
import VitalsPostgres

/// An instant on a test time line: a duration since an arbitrary origin.
struct TestInstant: InstantProtocol {
    var sinceOrigin: Duration
    func advanced(by duration: Duration) -> TestInstant { TestInstant(sinceOrigin: sinceOrigin + duration) }
    func duration(to other: TestInstant) -> Duration { other.sinceOrigin - sinceOrigin }
    static func < (a: TestInstant, b: TestInstant) -> Bool { a.sinceOrigin < b.sinceOrigin }
}

/// A clock that moves only when the test advances it.
final class TestClock: Clock, Sendable {
    private let current = Mutex(TestInstant(sinceOrigin: .zero))
    var now: TestInstant { current.withLock { $0 } }
    var minimumResolution: Duration { .nanoseconds(1) }
    func advance(by duration: Duration) { current.withLock { $0 = $0.advanced(by: duration) } }
    func sleep(until deadline: TestInstant, tolerance: Duration?) async throws {
        while now < deadline { try await Task.sleep(for: .milliseconds(1)) }
    }
}

@Suite("When a node renews its session lease, and when it must stop acknowledging")
struct LeaseKeeperTests {
    let t0 = TestInstant(sinceOrigin: .seconds(1000))
    func at(_ seconds: Double) -> TestInstant { t0.advanced(by: .seconds(seconds)) }

    /// ttl 10 s, renewal every 3 s, margin 2 s: renew from 3 s after the last confirmation, stop
    /// acknowledging from 10 − 2 = 8 s after it.
    func keeper() throws -> LeaseKeeper<TestInstant> {
        try LeaseKeeper(ttl: .seconds(10), renewInterval: .seconds(3), safetyMargin: .seconds(2), acquiredAt: t0)
    }

    @Test func keepsThenRenewsThenStops() throws {
        let k = try keeper()
        #expect(k.action(at: at(0)) == .keep)
        #expect(k.action(at: at(2.999)) == .keep)
        #expect(k.action(at: at(3)) == .renew)
        #expect(k.action(at: at(7.999)) == .renew)
        #expect(k.mayAcknowledge(at: at(7.999)))
        #expect(k.action(at: at(8)) == .stopAcknowledging)
        #expect(!k.mayAcknowledge(at: at(8)))
        #expect(k.action(at: at(3600)) == .stopAcknowledging)
    }

    @Test func aConfirmedRenewalCountsFromWhenItWasSent() throws {
        var k = try keeper()
        // Sent at 3.5 s, answered later: the lease lasts at least until 3.5 + 10 by the server.
        k.confirmed(sentAt: at(3.5))
        #expect(k.action(at: at(6.4)) == .keep)       // 2.9 s after
        #expect(k.action(at: at(6.5)) == .renew)      // 3 s after
        #expect(k.action(at: at(11.49)) == .renew)    // 7.99 s after
        #expect(k.action(at: at(11.5)) == .stopAcknowledging) // 8 s after
        #expect(k.nextDeadline(after: at(5)) == at(6.5))
        #expect(k.nextDeadline(after: at(7)) == at(11.5))
        #expect(k.nextDeadline(after: at(11.5)) == nil)
    }

    @Test func anOlderConfirmationDoesNotMoveTheLeaseBack() throws {
        var k = try keeper()
        k.confirmed(sentAt: at(5))
        k.confirmed(sentAt: at(4)) // a late answer to an earlier renewal
        #expect(k.lastConfirmed == at(5))
        #expect(k.action(at: at(12.9)) == .renew)
        #expect(k.action(at: at(13)) == .stopAcknowledging)
    }

    @Test func refusesTimingsThatCannotKeepALeaseSafely() {
        #expect(throws: LeaseTimingError.self) {
            try LeaseKeeper(ttl: .seconds(10), renewInterval: .seconds(8), safetyMargin: .seconds(2), acquiredAt: t0)
        }
        #expect(throws: LeaseTimingError.self) {
            try LeaseKeeper(ttl: .seconds(10), renewInterval: .seconds(3), safetyMargin: .zero, acquiredAt: t0)
        }
        #expect(throws: LeaseTimingError.self) {
            try LeaseKeeper(ttl: .seconds(10), renewInterval: .zero, safetyMargin: .seconds(2), acquiredAt: t0)
        }
        #expect(throws: LeaseTimingError.self) {
            try LeaseKeeper(ttl: .seconds(2), renewInterval: .seconds(1), safetyMargin: .seconds(3), acquiredAt: t0)
        }
    }

    @Test func readsAnInjectedClock() throws {
        let clock = TestClock()
        var keeper = try LeaseKeeperClock(
            clock: clock, ttl: .seconds(15), renewInterval: .seconds(5), safetyMargin: .seconds(3), acquiredAt: clock.now)
        #expect(keeper.action == .keep)
        clock.advance(by: .seconds(5))
        #expect(keeper.action == .renew)
        let sent = keeper.now
        clock.advance(by: .milliseconds(300)) // the round trip
        keeper.confirmed(sentAt: sent)
        #expect(keeper.action == .keep)
        clock.advance(by: .milliseconds(11_699)) // 11.999 s after the send: 15 − 3 = 12 s not yet reached
        #expect(keeper.mayAcknowledge)
        clock.advance(by: .milliseconds(1))
        #expect(!keeper.mayAcknowledge)
        #expect(keeper.action == .stopAcknowledging)
    }
}

@Suite("A node's share of the MQTT sessions")
struct SessionShareTests {
    @Test("⌈sessions / nodes alive⌉, at least one")
    func share() {
        #expect(ClusterMembership.share(sessions: 4, nodes: 1) == 4)
        #expect(ClusterMembership.share(sessions: 4, nodes: 2) == 2)
        #expect(ClusterMembership.share(sessions: 4, nodes: 3) == 2)
        #expect(ClusterMembership.share(sessions: 5, nodes: 3) == 2)
        #expect(ClusterMembership.share(sessions: 4, nodes: 8) == 1)
        #expect(ClusterMembership.share(sessions: 1, nodes: 0) == 1)
    }
}
