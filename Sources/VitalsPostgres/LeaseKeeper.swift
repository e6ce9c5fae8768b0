/// What a node does next with a session lease it holds.
public enum LeaseAction: Sendable, Hashable {
    /// Nothing to do yet: the lease is confirmed recently enough; acknowledging is allowed.
    case keep
    /// Time to renew; acknowledging is still allowed.
    case renew
    /// The last confirmed renewal is too old: the lease may expire soon and another node take the
    /// session. Stop acknowledging at once and disconnect the session.
    case stopAcknowledging
}

/// Decides, from the node's own clock, when to renew a session lease and when to stop trusting it.
///
/// The lease the server granted lasts `ttl` from the server's `now()` at the renewal, which is no
/// earlier than the moment the node *sent* the renewal. So the node measures from the send time of
/// the last renewal that succeeded: the lease is certainly live until `sent + ttl` (up to the two
/// clocks' rate difference, which `safetyMargin` covers together with the time the node needs to
/// stop acknowledging and disconnect). At `sent + ttl - safetyMargin` the node stops acknowledging
/// and disconnects, before any other node can take the session.
///
/// A pure value: the caller passes the instants; ``LeaseKeeperClock`` reads them from a clock.
public struct LeaseKeeper<Instant: InstantProtocol>: Sendable, Hashable where Instant.Duration == Duration {
    /// How long each renewal extends the lease on the server.
    public let ttl: Duration
    /// How long after a confirmed renewal the next one is due.
    public let renewInterval: Duration
    /// How long before the lease could expire the node stops acknowledging.
    public let safetyMargin: Duration
    /// When the last renewal (or the acquisition) that succeeded was sent.
    public private(set) var lastConfirmed: Instant

    /// - Parameters:
    ///   - ttl: the lease's lifetime per renewal.
    ///   - renewInterval: the time between renewals; several renewals fit before the margin, so one
    ///     lost round trip does not stop acknowledging.
    ///   - safetyMargin: stop acknowledging this long before the lease could expire.
    ///   - acquiredAt: when the acquisition that granted the lease was sent.
    /// - Throws: ``LeaseTimingError`` unless `0 < renewInterval < ttl - safetyMargin` and `safetyMargin > 0`.
    public init(ttl: Duration, renewInterval: Duration, safetyMargin: Duration, acquiredAt: Instant) throws(LeaseTimingError) {
        guard safetyMargin > .zero else { throw LeaseTimingError(message: "the lease safety margin must be positive") }
        guard renewInterval > .zero else { throw LeaseTimingError(message: "the lease renewal interval must be positive") }
        guard renewInterval < ttl - safetyMargin else {
            throw LeaseTimingError(message: "the lease renewal interval must be shorter than the ttl minus the safety margin")
        }
        self.ttl = ttl
        self.renewInterval = renewInterval
        self.safetyMargin = safetyMargin
        self.lastConfirmed = acquiredAt
    }

    /// Records a renewal that succeeded.
    /// - Parameter sentAt: when that renewal was sent (not when its answer came). An older instant
    ///   than the last one recorded is ignored.
    public mutating func confirmed(sentAt: Instant) {
        if sentAt > lastConfirmed { lastConfirmed = sentAt }
    }

    /// The action due at `now`.
    ///
    /// `stopAcknowledging` from `lastConfirmed + ttl - safetyMargin` on; `renew` from
    /// `lastConfirmed + renewInterval`; `keep` before.
    public func action(at now: Instant) -> LeaseAction {
        let age = lastConfirmed.duration(to: now)
        if age >= ttl - safetyMargin { return .stopAcknowledging }
        if age >= renewInterval { return .renew }
        return .keep
    }

    /// Whether the node may acknowledge a message at `now`: until `lastConfirmed + ttl - safetyMargin`.
    public func mayAcknowledge(at now: Instant) -> Bool {
        action(at: now) != .stopAcknowledging
    }

    /// When the next action is due after `now`: the next renewal, or the moment to stop
    /// acknowledging; nil once acknowledging has stopped.
    public func nextDeadline(after now: Instant) -> Instant? {
        switch action(at: now) {
        case .keep: return lastConfirmed.advanced(by: renewInterval)
        case .renew: return lastConfirmed.advanced(by: ttl - safetyMargin)
        case .stopAcknowledging: return nil
        }
    }
}

/// Lease timings that cannot keep a lease safely.
public struct LeaseTimingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Which condition failed.
    public var message: String
    public var description: String { message }
}

/// A ``LeaseKeeper`` that reads its instants from an injected clock.
///
/// Production passes `ContinuousClock()` (monotonic: wall-clock steps do not move it); tests pass a
/// clock they move by hand.
public struct LeaseKeeperClock<C: Clock>: Sendable where C.Duration == Duration {
    /// The clock.
    public let clock: C
    /// The decisions.
    public private(set) var keeper: LeaseKeeper<C.Instant>

    /// - Parameters:
    ///   - clock: the clock to read.
    ///   - ttl, renewInterval, safetyMargin: as in ``LeaseKeeper/init(ttl:renewInterval:safetyMargin:acquiredAt:)``.
    ///   - acquiredAt: when the acquisition was sent, read from `clock`.
    /// - Throws: ``LeaseTimingError``.
    public init(clock: C, ttl: Duration, renewInterval: Duration, safetyMargin: Duration, acquiredAt: C.Instant) throws(LeaseTimingError) {
        self.clock = clock
        self.keeper = try LeaseKeeper(ttl: ttl, renewInterval: renewInterval, safetyMargin: safetyMargin, acquiredAt: acquiredAt)
    }

    /// The clock's now: read it just before sending a renewal, and pass it to ``confirmed(sentAt:)`` on success.
    public var now: C.Instant { clock.now }

    /// Records a renewal that succeeded, sent at `sentAt`.
    public mutating func confirmed(sentAt: C.Instant) { keeper.confirmed(sentAt: sentAt) }

    /// The action due now.
    public var action: LeaseAction { keeper.action(at: clock.now) }

    /// Whether the node may acknowledge now.
    public var mayAcknowledge: Bool { keeper.mayAcknowledge(at: clock.now) }
}
