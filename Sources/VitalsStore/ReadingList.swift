import Foundation
import GRDB
import VitalsDomain

/// One stored reading as the `reading list` command shows it.
public struct ReadingRow: Sendable, Hashable, Codable {
    public var id: Int64
    public var deviceID: String
    /// The vital type (`glucose`, `systolic_bp`, …).
    public var type: String
    /// The value and unit as the device sent them.
    public var value: Double
    public var unit: String
    /// The value in the type's canonical unit (mg/dL, mm[Hg], kg, …).
    public var canonicalValue: Double
    public var canonicalUnit: String
    public var measuredAt: Date
    public var receivedAt: Date
    /// `device`, or `manual` for a reading entered by hand.
    public var source: String
    /// Flags such as `irregular_heartbeat`, `estimated_time`, `local_time_assumed`.
    public var flags: [String]
    /// Where the measurement time came from: `device`, `device_local`, `vendor_estimate` or `received_at`.
    public var timeSource: String
}

extension AppDatabase {
    /// A patient's readings, newest first (measurement time).
    ///
    /// - Parameters:
    ///   - since: only readings measured at or after this instant.
    ///   - type: only this vital type.
    ///   - limit: at most this many.
    public func readingRows(patientID: String, since: Date? = nil, type: VitalType? = nil, limit: Int = 100) throws -> [ReadingRow] {
        try writer.read { db in
            try Self.fetchReadingRows(db, sql: """
                WHERE patient_id = ?1 AND (?2 IS NULL OR measured_at >= ?2) AND (?3 IS NULL OR type = ?3)
                ORDER BY measured_at DESC, id DESC LIMIT ?4
                """, arguments: [patientID, since.map(epochMilliseconds), type?.rawValue, limit])
        }
    }

    /// Readings selected by `clauses` (`WHERE … ORDER BY … LIMIT …` over `readings`).
    static func fetchReadingRows(_ db: Database, sql clauses: String, arguments: StatementArguments) throws -> [ReadingRow] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT id, device_id, type, value, unit, canonical_value, canonical_unit, measured_at, received_at, source,
                       flags, time_source
                FROM readings
                """ + "\n" + clauses,
            arguments: arguments
        ).map { r in
            ReadingRow(
                id: r["id"], deviceID: r["device_id"], type: r["type"], value: r["value"], unit: r["unit"],
                canonicalValue: r["canonical_value"], canonicalUnit: r["canonical_unit"],
                measuredAt: dateFromEpochMilliseconds(r["measured_at"]), receivedAt: dateFromEpochMilliseconds(r["received_at"]),
                source: r["source"], flags: ((r["flags"] as String?) ?? "").split(separator: ",").map(String.init),
                timeSource: r["time_source"])
        }
    }
}
