import VitalsDomain

/// One stored reading, as the FHIR mapping needs it (a row of `readings`).
public struct StoredReading: Sendable, Hashable {
    /// The reading's row id: stable for the life of the database.
    public var id: Int64
    public var deviceID: String
    public var patientID: String
    public var type: VitalType
    /// The value in ``VitalsDomain/VitalType/canonicalUnit`` (mm[Hg], /min, mg/dL, kg, %, Cel).
    public var canonicalValue: Double
    /// Epoch milliseconds of the measurement.
    public var measuredAt: Int64
    /// Epoch milliseconds at which vitalsd received it.
    public var receivedAt: Int64
    /// `device`, or `manual` when entered in vitalsd (`vitalsd reading add`).
    public var source: ReadingSource
    public var flags: ObservationFlags
    /// The device's UTC offset at the measurement in minutes east of UTC, when the payload gave one.
    public var localOffsetMinutes: Int?

    public init(
        id: Int64, deviceID: String, patientID: String, type: VitalType, canonicalValue: Double, measuredAt: Int64,
        receivedAt: Int64, source: ReadingSource = .device, flags: ObservationFlags = [], localOffsetMinutes: Int? = nil
    ) {
        self.id = id
        self.deviceID = deviceID
        self.patientID = patientID
        self.type = type
        self.canonicalValue = canonicalValue
        self.measuredAt = measuredAt
        self.receivedAt = receivedAt
        self.source = source
        self.flags = flags
        self.localOffsetMinutes = localOffsetMinutes
    }
}

/// What one FHIR Observation is made of: one reading, or a blood-pressure pair.
///
/// A systolic and a diastolic reading of the same device at the same instant are one Observation,
/// the panel LOINC 85354-9 with components 8480-6 and 8462-4 (hl7.org/fhir/R4/bp.html). The schema's
/// unique key (device, LOINC, measured_at) admits at most one such pair. Every other reading,
/// heart rate included, is an Observation of its own.
public struct ObservationSource: Sendable, Hashable {
    /// The reading, or the systolic reading of a pair.
    public var reading: StoredReading
    /// The diastolic reading of a pair.
    public var diastolic: StoredReading?

    public init(reading: StoredReading, diastolic: StoredReading? = nil) {
        self.reading = reading
        self.diastolic = diastolic
    }

    /// The FHIR logical id: `bp-<systolic reading id>` for a pair, `r-<reading id>` otherwise.
    public var logicalID: String { diastolic == nil ? "r-\(reading.id)" : "bp-\(reading.id)" }

    /// The business identifier's value, from the reading's natural key, which survives a restore of
    /// the database under other row ids: `<device id>/<LOINC>/<measured_at epoch ms>`, with the
    /// panel code 85354-9 for a pair (`cuff-1/85354-9/1772370029000`). A device id never contains `/`.
    public var identifierValue: String {
        "\(reading.deviceID)/\(diastolic == nil ? reading.type.loinc : ObservationCodes.bloodPressurePanel)/\(reading.measuredAt)"
    }
}

/// An enrolled patient (a row of `patients`, with the columns that exist).
public struct StoredPatient: Sendable, Hashable {
    public var id: String
    /// IANA time zone.
    public var timezone: String
    /// Epoch milliseconds of enrolment.
    public var createdAt: Int64
    /// The name as the care team enrolled it (one text, as the workspace keeps it), if recorded.
    public var name: String?
    /// `YYYY-MM-DD`, if recorded.
    public var birthDate: String?
    /// A phone number to call the patient on, if recorded.
    public var phone: String?

    public init(
        id: String, timezone: String, createdAt: Int64, name: String? = nil, birthDate: String? = nil, phone: String? = nil
    ) {
        self.id = id
        self.timezone = timezone
        self.createdAt = createdAt
        self.name = name
        self.birthDate = birthDate
        self.phone = phone
    }
}

/// An enrolled device (a row of `devices`).
public struct StoredDevice: Sendable, Hashable {
    public var id: String
    /// `bp_cuff`, `glucometer`, `cgm`, `scale`, `pulse_oximeter`, `thermometer`, `other`.
    public var kind: String
    public var patientID: String
    /// Epoch milliseconds.
    public var createdAt: Int64

    public init(id: String, kind: String, patientID: String, createdAt: Int64) {
        self.id = id
        self.kind = kind
        self.patientID = patientID
        self.createdAt = createdAt
    }
}

/// A care manager's note on a task (a row of `task_notes`).
public struct StoredTaskNote: Sendable, Hashable {
    /// The workspace user name of the author.
    public var author: String
    /// Epoch milliseconds.
    public var at: Int64
    public var text: String

    public init(author: String, at: Int64, text: String) {
        self.author = author
        self.at = at
        self.text = text
    }
}

/// A care task (a row of `tasks`), with the Observations it points at already resolved.
public struct StoredTask: Sendable, Hashable {
    public var id: Int64
    public var patientID: String
    /// `threshold`, `trend`, `late_data`, `days_of_data`, `no_data`, `device`.
    public var kind: String
    /// `blood_pressure`, `glucose`, …, or the timer condition.
    public var condition: String
    /// `high` or `low`.
    public var direction: String
    /// `critical`, `warning`, `routine`.
    public var priority: String
    /// `open`, `acknowledged`, `resolved`.
    public var status: String
    public var reason: String
    public var occurrences: Int
    /// Epoch milliseconds.
    public var openedAt: Int64
    public var updatedAt: Int64
    public var resolvedAt: Int64?
    /// The task's notes, oldest first.
    public var notes: [StoredTaskNote]
    public var escalationLevel: Int
    /// `pending`, `confirmed`, `not_confirmed`, `not_repeated`, or nil.
    public var confirmation: String?
    public var dataStale: Bool
    /// The care manager who owns the task, when the schema has an owner.
    public var owner: String?
    /// The Observation whose breach opened the task (logical id), for reading-based tasks.
    public var focusObservationID: String?
    /// The latest breaching Observation, when it differs from the focus.
    public var latestObservationID: String?

    public init(
        id: Int64, patientID: String, kind: String, condition: String, direction: String, priority: String,
        status: String, reason: String, occurrences: Int, openedAt: Int64, updatedAt: Int64, resolvedAt: Int64? = nil,
        notes: [StoredTaskNote] = [], escalationLevel: Int = 0, confirmation: String? = nil, dataStale: Bool = false,
        owner: String? = nil, focusObservationID: String? = nil, latestObservationID: String? = nil
    ) {
        self.id = id
        self.patientID = patientID
        self.kind = kind
        self.condition = condition
        self.direction = direction
        self.priority = priority
        self.status = status
        self.reason = reason
        self.occurrences = occurrences
        self.openedAt = openedAt
        self.updatedAt = updatedAt
        self.resolvedAt = resolvedAt
        self.notes = notes
        self.escalationLevel = escalationLevel
        self.confirmation = confirmation
        self.dataStale = dataStale
        self.owner = owner
        self.focusObservationID = focusObservationID
        self.latestObservationID = latestObservationID
    }
}
