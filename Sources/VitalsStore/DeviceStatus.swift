import Foundation
import GRDB
import VitalsDomain

/// A stored device-status value (`device_status`): the latest report of one telemetry name.
public struct StoredDeviceStatus: Sendable, Hashable, Codable {
    public var deviceID: String
    /// `battery_percent`, `battery_mv`, `signal_dbm`, `signal_bars`, `perfusion_index`, `external_power`.
    public var name: String
    public var value: Double
    /// When the device reported it.
    public var observedAt: Date
    public var receivedAt: Date

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id", name, value, observedAt = "observed_at", receivedAt = "received_at"
    }
}

/// A stored device event (`device_events`): an error code or range marker sent instead of a value.
public struct StoredDeviceEvent: Sendable, Hashable, Codable {
    public var id: Int64
    public var deviceID: String
    /// `device_error`, `above_range`, `below_range`.
    public var kind: String
    /// The vital type, when known.
    public var type: String?
    /// Which rule matched (`sfloat_nan`, `hi_marker`, …).
    public var code: String
    public var measuredAt: Date?
    public var receivedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, deviceID = "device_id", kind, type, code, measuredAt = "measured_at", receivedAt = "received_at"
    }
}

extension AppDatabase {
    /// The latest device-status values, by device and name.
    /// - Parameter deviceID: only this device's, or all.
    public func deviceStatus(deviceID: String? = nil) throws -> [StoredDeviceStatus] {
        try writer.read { db in try Self.fetchDeviceStatus(db, deviceID: deviceID) }
    }

    static func fetchDeviceStatus(_ db: Database, deviceID: String?) throws -> [StoredDeviceStatus] {
        try Row.fetchAll(db, sql: """
            SELECT device_id, name, value, observed_at, received_at FROM device_status
            WHERE ?1 IS NULL OR device_id = ?1 ORDER BY device_id, name
            """, arguments: [deviceID]).map {
            StoredDeviceStatus(deviceID: $0["device_id"], name: $0["name"], value: $0["value"],
                               observedAt: dateFromEpochMilliseconds($0["observed_at"]),
                               receivedAt: dateFromEpochMilliseconds($0["received_at"]))
        }
    }

    /// Device events, newest first.
    /// - Parameters:
    ///   - deviceID: only this device's, or all.
    ///   - limit: at most this many (default 100).
    public func deviceEvents(deviceID: String? = nil, limit: Int = 100) throws -> [StoredDeviceEvent] {
        try writer.read { db in
            try Self.fetchDeviceEvents(db, where: "?1 IS NULL OR device_id = ?1", arguments: [deviceID, limit])
        }
    }

    /// Device events matching `condition` (SQL over `device_events`, with numbered parameters),
    /// newest first; the last of `arguments` is the limit.
    static func fetchDeviceEvents(_ db: Database, where condition: String, arguments: StatementArguments) throws -> [StoredDeviceEvent] {
        try Row.fetchAll(db, sql: """
            SELECT id, device_id, kind, type, code, measured_at, received_at FROM device_events
            WHERE (\(condition)) ORDER BY id DESC LIMIT ?
            """, arguments: arguments).map {
            StoredDeviceEvent(id: $0["id"], deviceID: $0["device_id"], kind: $0["kind"], type: $0["type"], code: $0["code"],
                              measuredAt: ($0["measured_at"] as Int64?).map(dateFromEpochMilliseconds),
                              receivedAt: dateFromEpochMilliseconds($0["received_at"]))
        }
    }
}
