import Foundation
import Synchronization

/// The wall-clock time the daemon's rules and timers see, and its sleep.
///
/// Production passes ``SystemWallClock``; tests pass a ``ManualWallClock`` and move it forward, so an
/// escalation after 30 minutes or three silent days take no real time and do not depend on the hour
/// the tests run. Rules never read the time themselves: they get `now` from the caller.
public protocol WallClock: Sendable {
    /// The current instant.
    func now() -> Date
    /// Waits until this clock has moved `duration` forward from now.
    /// - Throws: `CancellationError` when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The system's real-time clock.
public struct SystemWallClock: WallClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

/// A clock that moves only when told to: for tests and for replays on a simulated time line.
///
/// ``sleep(for:)`` returns once ``advance(by:)`` or ``set(_:)`` has moved the clock past its deadline.
public final class ManualWallClock: WallClock {
    private struct Sleeper {
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }

    private let state: Mutex<(now: Date, sleepers: [Int: Sleeper], next: Int)>

    /// - Parameter start: the clock's first reading.
    public init(_ start: Date) {
        state = Mutex((start, [:], 0))
    }

    public func now() -> Date { state.withLock { $0.now } }

    /// Moves the clock forward by `seconds` and wakes the sleepers whose deadline has come.
    public func advance(by seconds: TimeInterval) {
        set(now().addingTimeInterval(seconds))
    }

    /// Sets the clock to `date` (never backwards) and wakes the sleepers whose deadline has come.
    public func set(_ date: Date) {
        let due: [CheckedContinuation<Void, any Error>] = state.withLock { s in
            s.now = max(s.now, date)
            let ready = s.sleepers.filter { $0.value.deadline <= s.now }
            for key in ready.keys { s.sleepers[key] = nil }
            return ready.map(\.value.continuation)
        }
        for c in due { c.resume() }
    }

    public func sleep(for duration: Duration) async throws {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        let key = state.withLock { s -> Int in
            s.next += 1
            return s.next
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let resumeNow: Bool = state.withLock { s in
                    let deadline = s.now.addingTimeInterval(seconds)
                    if deadline <= s.now || Task.isCancelled { return true }
                    s.sleepers[key] = Sleeper(deadline: deadline, continuation: c)
                    return false
                }
                if resumeNow {
                    if Task.isCancelled { c.resume(throwing: CancellationError()) } else { c.resume() }
                }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                defer { s.sleepers[key] = nil }
                return s.sleepers[key]?.continuation
            }
            c?.resume(throwing: CancellationError())
        }
    }
}
