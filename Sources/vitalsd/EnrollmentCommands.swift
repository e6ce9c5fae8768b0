import ArgumentParser
import Foundation
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

extension Program: ExpressibleByArgument {}
extension DeviceKind: ExpressibleByArgument {}
extension VitalType: ExpressibleByArgument {}
extension ThresholdLevel: ExpressibleByArgument {}
extension ThresholdDirection: ExpressibleByArgument {}
extension TaskStatus: ExpressibleByArgument {}

struct PatientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patient", abstract: "Enroll and list patients; caseloads.",
        subcommands: [Add.self, List.self, Show.self, Assign.self, Pause.self, Resume.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll a patient, or update their time zone, programs and the details given.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "External patient id.") var id: String
        @Option(help: "IANA time zone, e.g. America/Chicago.") var timezone: String
        @Option(name: .customLong("program"), help: "Program (repeat for several): \(Program.allCases.map(\.rawValue).joined(separator: ", ")).")
        var programs: [Program]
        @Option(help: "Name, as the care manager reads it (PHI: shown in the workspace, never logged).") var name: String?
        @Option(help: "Date of birth, YYYY-MM-DD.") var birthDate: String?
        @Option(help: "Phone number to call the patient.") var phone: String?
        @Option(help: "User name of the patient's care manager: new tasks go to them.") var careManager: String?
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let patient = Patient(id: id, timezone: timezone, programs: programs, name: name, birthDate: birthDate, phone: phone,
                                  careManager: careManager)
            let change = try db.upsertPatient(patient, actor: actor(by))
            print("patient \(id): \(change.rawValue)")
        }
    }

    struct Assign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a patient in a care manager's caseload: tasks opened from then on go to them.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "User name of the care manager (role care_manager or admin).") var careManager: String?
        @Flag(help: "Take the patient out of any caseload: new tasks wait in Unassigned.") var none = false
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func validate() throws {
            guard (careManager != nil) != none else { throw ValidationError("give --care-manager USER or --none") }
        }

        func run() throws {
            let (_, db) = try options.database()
            let changed = try db.assignCareManager(patientID: patient, username: careManager, actor: actor(by))
            print("patient \(patient): care manager \(careManager.map(Username.normalized) ?? "none")\(changed ? "" : " (unchanged)")")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List enrolled patients.")
        @OptionGroup var options: GlobalOptions
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let patients = try db.patients()
            try emit(format, json: patients, header: ["patient_id", "timezone", "programs", "care_manager", "enrolled_at"],
                     rows: patients.map {
                         [$0.id, $0.timezone, $0.programs.map(\.rawValue).joined(separator: ";"), $0.careManager ?? "", iso($0.createdAt)]
                     })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a patient, their devices, thresholds and unresolved tasks.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Patient id.") var id: String

        func run() throws {
            let (config, db) = try options.database()
            guard let p = try db.patient(id: id) else { throw ValidationError("patient \(id) is not enrolled") }
            print("patient:   \(p.id)")
            if let name = p.name { print("name:      \(name)") }
            if let birth = p.birthDate { print("born:      \(birth)") }
            if let phone = p.phone { print("phone:     \(phone)") }
            print("care manager: \(p.careManager ?? "none")")
            print("timezone:  \(p.timezone)")
            print("programs:  \(p.programs.map(\.rawValue).joined(separator: ", "))")
            print("enrolled:  \(iso(p.createdAt))")
            print("devices:")
            for d in try db.devices(patientID: id) { print("  \(d.id) (\(d.kind.rawValue))") }
            print("thresholds:")
            try ThresholdCommand.printEffective(patient: p, config: config, db: db, indent: "  ")
            let tasks = try db.tasks(patientID: id)
            print("unresolved tasks:")
            for t in tasks where t.status != .resolved {
                print("  #\(t.id) \(t.priority.rawValue) \(t.status.rawValue): \(t.reason)")
            }
            let suppressed = tasks.filter { $0.status == .resolved && $0.suppressedBreaches > 0 }
            if !suppressed.isEmpty {
                print("breaches after a resolve that opened nothing (suppressed):")
                for t in suppressed {
                    print("  #\(t.id) \(t.vital) \(t.direction.rawValue): \(t.suppressedBreaches), last measured \(iso(t.lastSuppressedAt))"
                          + (t.latest.map { "; latest \($0.summary)" } ?? ""))
                }
            }
        }
    }
}

struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device", abstract: "Register and list devices; show their status and events.",
        subcommands: [Add.self, List.self, Status.self, Events.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a device for a patient, or rebind it.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Device id exactly as its topic or payload spells it; ids are case-sensitive (AA:BB and aa:bb are two devices).")
        var id: String
        @Option(help: "Patient the device belongs to.") var patient: String
        @Option(help: "Kind: \(DeviceKind.allCases.map(\.rawValue).joined(separator: ", ")).") var kind: DeviceKind = .other
        @Flag(help: "Move the device from the patient it belongs to now.") var reassign = false
        @Option(help: "With --reassign: when the device changed hands, RFC 3339 with an offset (default: now). Readings measured before it stay with the previous patient.")
        var at: String?
        @Option(help: "For a new device: when it was handed to the patient, RFC 3339 with an offset. Readings measured before it are before_binding dead letters (default: none are).")
        var from: String?
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func validate() throws {
            if at != nil && !reassign { throw ValidationError("--at goes with --reassign") }
            for (name, value) in [("--at", at), ("--from", from)] {
                if let value, MeasurementTimePolicy.parseRFC3339(value) == nil {
                    throw ValidationError("\(name) must be RFC 3339 with a UTC offset, e.g. 2026-03-01T08:00:00-06:00")
                }
            }
        }

        func run() throws {
            let (_, db) = try options.database()
            let change = try db.upsertDevice(
                Device(id: id, kind: kind, patientID: patient), actor: actor(by), reassign: reassign,
                at: at.flatMap(MeasurementTimePolicy.parseRFC3339) ?? Date(), from: from.flatMap(MeasurementTimePolicy.parseRFC3339))
            print("device \(id): \(change.rawValue)")
            // Ids are case-sensitive, like topic levels: a second spelling is a second device.
            for other in try db.devices() where other.id != id && other.id.lowercased() == id.lowercased() {
                FileHandle.standardError.write(Data(
                    "vitalsd: warning: device \(other.id) differs from \(id) only in case; ids are case-sensitive, so they are two devices: enroll a device under the exact spelling its topic or payload uses\n".utf8))
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List devices.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this patient's devices.") var patient: String?
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let devices = try db.devices(patientID: patient)
            try emit(format, json: devices, header: ["device_id", "kind", "patient_id", "registered_at"],
                     rows: devices.map { [$0.id, $0.kind.rawValue, $0.patientID, iso($0.createdAt)] })
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the latest battery, signal and perfusion-index values (telemetry, never readings).")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this device.") var device: String?
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let status = try db.deviceStatus(deviceID: device)
            try emit(format, json: status, header: ["device_id", "name", "value", "observed_at"],
                     rows: status.map { [$0.deviceID, $0.name, Observation.format($0.value), iso($0.observedAt)] })
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show device events: error codes and HI/LO markers sent instead of values, newest first.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this device.") var device: String?
        @Option(help: "At most this many.") var limit = 100
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let events = try db.deviceEvents(deviceID: device, limit: limit)
            try emit(format, json: events, header: ["id", "device_id", "kind", "type", "code", "measured_at", "received_at"],
                     rows: events.map { [String($0.id), $0.deviceID, $0.kind, $0.type ?? "", $0.code, iso($0.measuredAt), iso($0.receivedAt)] })
        }
    }
}

struct ThresholdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "threshold", abstract: "Per-patient thresholds, which win over program defaults.",
        subcommands: [Set.self, Clear.self, List.self, Rule.self])

    struct Rule: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a trend rule for one patient: another bound, off, or back to the configured rule.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Rule id, as configured under alerts (e.g. weight_gain_7d).") var rule: String
        @Option(help: "The patient's bound, in the rule type's canonical unit (kg, mm[Hg], mg/dL, ...).", transform: decimalArgument) var bound: Double?
        @Flag(help: "Switch the rule off for this patient.") var off = false
        @Flag(help: "Remove the patient's change; the configured rule applies again.") var clear = false
        @Option(help: "Clinician who ordered it (default: the invoking user).") var by: String?

        func validate() throws {
            guard [bound != nil, off, clear].filter({ $0 }).count == 1 else {
                throw ValidationError("give exactly one of --bound, --off or --clear")
            }
        }

        func run() throws {
            let (config, db) = try options.database()
            guard let p = try db.patient(id: patient) else { throw ValidationError("patient \(patient) is not enrolled") }
            guard var configured = config.alerts.rules(for: p.programs).first(where: { $0.id == rule }) else {
                let known = config.alerts.rules(for: p.programs).map(\.id)
                throw ValidationError("no rule '\(rule)' applies to patient \(patient); rules in force: \(known.isEmpty ? "none" : known.joined(separator: ", "))")
            }
            if let bound {
                configured.bound = bound
                if let problem = configured.problem { throw ValidationError("refused: \(problem)") }
            }
            let change: RuleOverride? = clear ? nil : RuleOverride(bound: bound, disabled: off)
            try db.setRuleOverride(patientID: patient, ruleID: rule, override: change, actor: actor(by))
            print(clear ? "patient \(patient): \(rule) as configured" : off ? "patient \(patient): \(rule) off"
                  : "patient \(patient): \(rule): \(configured.summary)")
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a patient's own limit. High limits are inclusive (>=), low limits exclusive (<).")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Vital type: \(VitalType.allCases.map(\.rawValue).joined(separator: ", ")).") var type: VitalType
        @Option(help: "critical or warning.") var level: ThresholdLevel
        @Option(help: "high or low.") var direction: ThresholdDirection
        @Option(help: "The limit: a plain decimal number.", transform: decimalArgument) var value: Double
        @Option(help: "Unit of --value (default: the canonical unit of the type, e.g. mg/dL).") var unit: String?
        @Option(help: "Clinician who ordered the limit (default: the invoking user).") var by: String?

        func run() throws {
            let (config, db) = try options.database()
            var canonical = value
            if let unit {
                guard let u = UCUMUnit(spelling: unit), let c = u.convert(value, to: type.canonicalUnit) else {
                    throw ValidationError("unit '\(unit)' does not measure \(type.rawValue)")
                }
                canonical = (c * 1_000_000).rounded() / 1_000_000
            }
            let slot = ThresholdSlot(type: type, level: level, direction: direction)
            if !type.plausibleRange.contains(canonical),
               let problem = config.thresholds.problemSetting(slot, to: canonical, programs: [], overrides: [:]) {
                throw ValidationError(problem)
            }
            guard let p = try db.patient(id: patient) else { throw ValidationError("patient \(patient) is not enrolled") }
            if let problem = config.thresholds.problemSetting(
                slot, to: canonical, programs: p.programs, overrides: try db.thresholdOverrides(patientID: patient)) {
                throw ValidationError(problem)
            }
            try db.setThreshold(patientID: patient, slot: slot, value: canonical, actor: actor(by))
            print("patient \(patient): \(type.rawValue) \(level.rawValue) \(direction.rawValue) = \(Observation.format(canonical)) \(type.canonicalUnit.rawValue)")
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a patient's own limit; the program default applies again.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option var type: VitalType
        @Option var level: ThresholdLevel
        @Option var direction: ThresholdDirection
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let removed = try db.clearThreshold(
                patientID: patient, slot: ThresholdSlot(type: type, level: level, direction: direction), actor: actor(by))
            print(removed ? "cleared" : "no patient limit was set")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the limits in force for a patient, with where each comes from.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String

        func run() throws {
            let (config, db) = try options.database()
            guard let p = try db.patient(id: patient) else { throw ValidationError("patient \(patient) is not enrolled") }
            try ThresholdCommand.printEffective(patient: p, config: config, db: db, indent: "")
        }
    }

    static func printEffective(patient: Patient, config: VitalsConfiguration, db: AppDatabase, indent: String) throws {
        let overrides = try db.thresholdOverrides(patientID: patient.id)
        var rows: [[String]] = []
        for type in VitalType.allCases {
            let (limits, origins) = config.thresholds.effectiveLimits(for: type, programs: patient.programs, overrides: overrides)
            for level in [ThresholdLevel.critical, .warning] {
                for direction in [ThresholdDirection.high, .low] {
                    guard let v = limits[level, direction] else { continue }
                    let origin: String
                    switch origins[ThresholdSlot(type: type, level: level, direction: direction)] {
                    case .patient: origin = "patient"
                    case .program(let p): origin = "program \(p.rawValue)"
                    default: origin = "default"
                    }
                    let op = direction == .high ? ">=" : "<"
                    rows.append([indent + type.rawValue, level.rawValue, "\(op) \(Observation.format(v)) \(type.canonicalUnit.rawValue)", origin])
                }
            }
        }
        printTable([indent + "type", "level", "limit", "from"], rows)
        let changes = try db.ruleOverrides(patientID: patient.id)
        let rules = config.alerts.rules(for: patient.programs)
        guard !rules.isEmpty else { return }
        print("")
        printTable([indent + "rule", "level", "trend", "from"], rules.map { r in
            var rule = r
            var origin = "configured"
            if let change = changes[r.id] {
                if change.disabled { return [indent + r.id, r.level.rawValue, "off", "patient"] }
                if let b = change.bound { rule.bound = b; origin = "patient" }
            }
            return [indent + rule.id, rule.level.rawValue, rule.summary, origin]
        })
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enroll patients and devices from CSV: patient_id,program,timezone,device_id[,device_kind,name,birth_date,phone,care_manager]. Idempotent.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "CSV file.") var file: String
    @Flag(help: "Allow rows that move an existing device to another patient.") var reassign = false
    @Option(help: "Who makes the change (default: the invoking user).") var by: String?

    func run() throws {
        let rows = try EnrollmentCSV.read(path: file)
        let (_, db) = try options.database()
        let s = try db.importEnrollment(rows, actor: actor(by), reassign: reassign)
        print("patients: \(s.patientsCreated) created, \(s.patientsUpdated) updated; devices: \(s.devicesCreated) created, \(s.devicesUpdated) updated; \(s.unchanged) unchanged")
    }
}
