import Dispatch
import ServiceLifecycle
import Synchronization
import VitalsDomain

/// Runs blocking work (a synchronous SQLite call that may wait up to the busy timeout for another
/// process's lock) on a Dispatch thread, off Swift's cooperative pool.
///
/// The pool has one thread per core. Timer services that waited for a held database lock on it used
/// up both threads of a 2-core machine, and `/healthz` then took 9 s to answer. Cancelling the
/// awaiting task (graceful shutdown) returns at once with `CancellationError`; the abandoned call
/// finishes on its own thread and its result is dropped.
/// - Throws: what `body` throws, or `CancellationError`.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    let pending = PendingResult<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            pending.set(continuation)
            if Task.isCancelled {
                pending.resume(.failure(CancellationError()))
                return
            }
            DispatchQueue.global(qos: .utility).async {
                pending.resume(Result { try body() })
            }
        }
    } onCancel: {
        pending.resume(.failure(CancellationError()))
    }
}

/// Runs async `body` with a deadline that holds even when `body` does not answer cancellation: a
/// query on a connection the server dropped while this process was frozen can wait for ever. The
/// caller gets ``DeadlinePassed`` after `limit` (or `CancellationError` at once when cancelled) and
/// goes on; `body` is cancelled and left to finish on its own, its result dropped.
/// - Throws: what `body` throws, ``DeadlinePassed``, or `CancellationError`.
public func withinDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let pending = PendingResult<T>()
    let work = Task {
        do { pending.resume(.success(try await body())) } catch { pending.resume(.failure(error)) }
    }
    let timer = Task {
        try await Task.sleep(for: limit)
        pending.resume(.failure(DeadlinePassed(limit: limit)))
        work.cancel()
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            pending.set(continuation)
            if Task.isCancelled { pending.resume(.failure(CancellationError())) }
        }
    } onCancel: {
        pending.resume(.failure(CancellationError()))
        work.cancel()
    }
}

/// Work that did not end within its deadline (``withinDeadline(_:_:)``).
public struct DeadlinePassed: Error, CustomStringConvertible {
    public var limit: Duration
    public var description: String { "no answer within \(limit.components.seconds) s" }
}

/// Database work of a timer service: the database's own async API (GRDB runs it on its own
/// threads, off the cooperative pool), abandoned at once (`CancellationError`) when a graceful
/// shutdown begins.
func databaseWork<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await cancelWhenGracefulShutdown { try await body() }
}

/// Runs `body` every `interval` of `clock` until a graceful shutdown begins, first at once when
/// `immediately` is true, otherwise after the first interval. The wait ends early on shutdown.
func repeatUntilShutdown(
    every interval: Duration, clock: any WallClock = SystemWallClock(), immediately: Bool = false, _ body: () async -> Void
) async {
    await repeatUntilShutdown(firstAfter: immediately ? nil : interval, clock: clock) {
        await body()
        return interval
    }
}

/// Runs `body` until a graceful shutdown begins, waiting before each next turn as long as the turn
/// before returned; the first turn comes after `firstAfter`, or at once when it is nil. The wait
/// ends early on shutdown.
func repeatUntilShutdown(
    firstAfter first: Duration?, clock: any WallClock = SystemWallClock(), _ body: () async -> Duration
) async {
    var pause = first
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
        if let wait = pause {
            try? await cancelWhenGracefulShutdown { try await clock.sleep(for: wait) }
            guard !Task.isShuttingDownGracefully && !Task.isCancelled else { break }
        }
        pause = await body()
    }
}

/// A continuation resumed once, by whichever comes first: the work or the cancellation.
private final class PendingResult<T: Sendable>: Sendable {
    private enum State: Sendable {
        case empty
        case waiting(CheckedContinuation<T, any Error>)
        case early(Result<T, any Error>)
        case done
    }

    private let state = Mutex<State>(.empty)

    func set(_ c: CheckedContinuation<T, any Error>) {
        let result: Result<T, any Error>? = state.withLock { s in
            switch s {
            case .early(let r):
                s = .done
                return r
            case .empty:
                s = .waiting(c)
                return nil
            case .waiting, .done:
                return nil
            }
        }
        if let result { c.resume(with: result) }
    }

    func resume(_ result: Result<T, any Error>) {
        let c: CheckedContinuation<T, any Error>? = state.withLock { s in
            switch s {
            case .waiting(let c):
                s = .done
                return c
            case .empty:
                s = .early(result)
                return nil
            case .early, .done:
                return nil
            }
        }
        c?.resume(with: result)
    }
}
