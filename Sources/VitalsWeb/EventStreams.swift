import Foundation
import VitalsStore

/// What the open `/events` streams share: one read of the worklist cursor for all of them, and a
/// bound on how many one session may hold open.
///
/// Each stream used to read the cursor every 300 ms itself, so a user (or a script with their
/// cookie) who opened streams by the hundred multiplied the reads; now the cursor is read at most
/// once per ``maxAge`` however many streams wait on it, and a session holds at most
/// ``perSession`` streams (a browser keeps one per open tab).
actor EventStreams {
    /// How old a cursor may be before it is read again: 250 ms, under the streams' 300 ms tick.
    static let maxAge: Duration = .milliseconds(250)
    /// Open streams allowed per session.
    static let perSession = 8

    private let database: AppDatabase
    private var cached: (cursor: String, at: ContinuousClock.Instant)?
    private var reading: Task<String, any Error>?
    private var open: [Data: Int] = [:]

    init(database: AppDatabase) {
        self.database = database
    }

    /// `<newest task event id>.<newest audit id>`, read at most once per ``maxAge``; callers that
    /// arrive while a read is running wait for it.
    /// - Throws: database errors.
    func cursor() async throws -> String {
        let now = ContinuousClock.now
        if let cached, now - cached.at < Self.maxAge { return cached.cursor }
        if let reading { return try await reading.value }
        let database = database
        let task = Task { () throws -> String in
            let c = try await database.worklistCursor()
            return "\(c.taskEvent).\(c.audit)"
        }
        reading = task
        defer { reading = nil }
        let cursor = try await task.value
        cached = (cursor, ContinuousClock.now)
        return cursor
    }

    /// Claims a stream for a session. - Returns: false when the session holds ``perSession`` already.
    func open(session: Data) -> Bool {
        let count = open[session, default: 0]
        guard count < Self.perSession else { return false }
        open[session] = count + 1
        return true
    }

    /// Gives a stream back.
    func close(session: Data) {
        let count = open[session, default: 0] - 1
        open[session] = count > 0 ? count : nil
    }
}
