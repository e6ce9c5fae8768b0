import Foundation

/// What a device said about one reading, beyond its value (`../shared/reference/payload-formats.md`
/// Appendix B, "flags").
public struct ObservationFlags: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// The cuff detected an irregular heartbeat (Tenovi `irregular_heartbeat`, Telli `arrhythmia: 1`,
    /// iHealth `IsArr`, SenML `irregular` true).
    public static let irregularHeartbeat = ObservationFlags(rawValue: 1 << 0)
    /// The reading was stored on the device and sent later (Telli `mem: "1"`).
    public static let fromDeviceMemory = ObservationFlags(rawValue: 1 << 1)
    /// The time was estimated, not measured by a trusted clock (Tenovi `estimated_timestamp: true`,
    /// or vitalsd used the receive time).
    public static let estimatedTime = ObservationFlags(rawValue: 1 << 2)
    /// The payload gave a local time without an offset; vitalsd read it in a configured time zone.
    public static let localTimeAssumed = ObservationFlags(rawValue: 1 << 3)
    /// Entered or edited by hand on the device or in the vendor app (Withings `attrib` 2/4, iHealth
    /// `DataSource` other than `FromDevice`).
    public static let manualEntry = ObservationFlags(rawValue: 1 << 4)
    /// The unit is not in the format's registry (SenML `mmHg`, `beat/min`), accepted by alias.
    public static let unregisteredUnit = ObservationFlags(rawValue: 1 << 5)

    /// Every flag with its stored name, in a fixed order.
    public static let names: [(ObservationFlags, String)] = [
        (.irregularHeartbeat, "irregular_heartbeat"), (.fromDeviceMemory, "from_device_memory"),
        (.estimatedTime, "estimated_time"), (.localTimeAssumed, "local_time_assumed"),
        (.manualEntry, "manual_entry"), (.unregisteredUnit, "unregistered_unit"),
    ]

    /// The flags of a stored form; unknown names are ignored.
    public init(stored: String?) {
        let names = Set((stored ?? "").split(separator: ",").map(String.init))
        self = Self.names.reduce(into: ObservationFlags()) { flags, entry in
            if names.contains(entry.1) { flags.insert(entry.0) }
        }
    }

    /// The stored form: names joined by commas (`irregular_heartbeat,from_device_memory`), or nil when empty.
    public var stored: String? {
        let list = Self.names.filter { contains($0.0) }.map(\.1)
        return list.isEmpty ? nil : list.joined(separator: ",")
    }
}

/// Where a reading's measurement time came from (failure-modes F9, F22).
public enum TimeSource: String, Sendable, Hashable, CaseIterable {
    /// The device's clock, with a UTC offset or as UTC epoch time.
    case device
    /// A naive local time from the device, read in the subscription's or the patient's time zone.
    case deviceLocal = "device_local"
    /// The vendor estimated it (Tenovi `estimated_timestamp`).
    case vendorEstimate = "vendor_estimate"
    /// The device gave no time; vitalsd used the time it received the message.
    case receivedAt = "received_at"
}

/// A device-health value sent along with readings: never a reading, never a day of data.
///
/// Stored as the latest value per device and name in `device_status`.
public struct DeviceStatusValue: Sendable, Hashable {
    /// What is measured.
    public enum Name: String, Sendable, Hashable, CaseIterable {
        /// Remaining battery, percent (0–100).
        case batteryPercent = "battery_percent"
        /// Battery voltage, millivolts (BodyTrace `batteryVoltage`).
        case batteryMillivolts = "battery_mv"
        /// Received signal strength, dBm (negative; BodyTrace sends 91 for −91 dBm).
        case signalDBm = "signal_dbm"
        /// Signal bars as the device counts them (Telli `devdata.r` 1–4).
        case signalBars = "signal_bars"
        /// Perfusion index of a pulse oximeter, percent.
        case perfusionIndex = "perfusion_index"
        /// The device runs on external power (Telli `batt: "pwr"`): 1.
        case externalPower = "external_power"
    }

    public var deviceID: String
    public var name: Name
    public var value: Double
    /// When the device reported it (the reading's time), or the receive time.
    public var observedAt: Date

    public init(deviceID: String, name: Name, value: Double, observedAt: Date) {
        self.deviceID = deviceID
        self.name = name
        self.value = value
        self.observedAt = observedAt
    }
}

/// A flag a device sent apart from the reading it belongs to: Tenovi posts `irregular_heartbeat` as
/// its own message with the blood pressure's `timestamp` (`payload-formats.md` §1.1). It flags the
/// device's blood-pressure and pulse readings of that time, whether they arrive before or after it.
public struct ReadingMarker: Sendable, Hashable {
    public var deviceID: String
    public var measuredAt: Date
    public var flags: ObservationFlags

    public init(deviceID: String, measuredAt: Date, flags: ObservationFlags) {
        self.deviceID = deviceID
        self.measuredAt = measuredAt
        self.flags = flags
    }
}

/// A device event that is not a measurement: an error code or an above/below-range marker sent in
/// place of a value (failure-modes F21). Stored in `device_events`, and the reading is dead-lettered
/// (`device_error`, `out_of_meter_range`); it is never a clinical value.
public struct DeviceEvent: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// An error code or "not a number" sentinel (SFLOAT 0x07FF = 2047, `Err`).
        case deviceError = "device_error"
        /// The meter's "HI": the value is above what it can measure.
        case aboveRange = "above_range"
        /// The meter's "LO": below what it can measure.
        case belowRange = "below_range"
    }

    public var deviceID: String
    public var kind: Kind
    /// The vital the device was measuring, when known.
    public var type: VitalType?
    /// When, or nil when the payload gave no usable time.
    public var measuredAt: Date?
    /// Which sentinel it was, in vitalsd's words (`sfloat_nan`, `hi_marker`), never payload text.
    public var code: String

    public init(deviceID: String, kind: Kind, type: VitalType?, measuredAt: Date?, code: String) {
        self.deviceID = deviceID
        self.kind = kind
        self.type = type
        self.measuredAt = measuredAt
        self.code = code
    }
}
