import ArgumentParser
import Foundation
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

extension CareProgram: ExpressibleByArgument {}
extension InteractionModality: ExpressibleByArgument {}

/// A `YYYY-MM-DD` argument.
extension LocalDate: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

struct EpisodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "episode", abstract: "RPM episodes of care: consent date, end, billing practitioner.",
        subcommands: [Start.self, End.self, List.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a patient's RPM episode on the consent date.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Consent date, YYYY-MM-DD, in the patient's time zone.") var start: LocalDate
        @Option(help: "The practitioner who bills RPM for this patient.") var practitioner: String
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let e = try db.startEpisode(patientID: patient, startDate: start, practitioner: practitioner, actor: actor(by))
            print("episode \(e.id) for \(patient) from \(start)")
        }
    }

    struct End: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a patient's open episode (the end date is its last day).")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Last day, YYYY-MM-DD.") var end: LocalDate
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            try db.endEpisode(patientID: patient, endDate: end, actor: actor(by))
            print("episode of \(patient) ends \(end)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List episodes.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String?
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let episodes = try db.episodes(patientID: patient)
            try emit(format, json: episodes, header: ["id", "patient_id", "start", "end", "billing_practitioner"],
                     rows: episodes.map { [String($0.id), $0.patientID, $0.startDate.description, $0.endDate?.description ?? "", $0.billingPractitioner] })
        }
    }
}

struct TimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time", abstract: "Care-management minutes (append-only; corrections void an entry).",
        subcommands: [Log.self, Void.self, List.self])

    struct Log: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Log minutes of RPM or CCM time for a patient.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Whole minutes of one piece of work (1 to billing.max_entry_minutes, default 120).") var minutes: Int
        @Option(help: "Who did the work.") var by: String
        @Option(help: "What was done.") var activity: String
        @Flag(help: "A real-time interactive communication with the patient or caregiver.") var interactive = false
        @Option(help: "audio, video or sync_message; required with --interactive.") var modality: InteractionModality?
        @Option(help: "rpm or ccm: each minute belongs to one program.") var program: CareProgram = .rpm
        @Option(help: "When (RFC 3339, or YYYY-MM-DD for noon in the patient's time zone); default now.") var at: String?
        @Option(help: "The task the time was spent on.") var task: Int64?

        func validate() throws {
            if interactive && modality == nil { throw ValidationError("--interactive needs --modality audio|video|sync_message") }
            if !interactive && modality != nil { throw ValidationError("--modality is for --interactive entries") }
        }

        func run() throws {
            let (config, db) = try options.database()
            guard let p = try db.patient(id: patient), let zone = TimeZone(identifier: p.timezone) else {
                throw ValidationError("patient \(patient) is not enrolled")
            }
            let when = try parseInstant(at, zone: zone)
            let id = try db.logTime(NewTimeEntry(
                patientID: patient, program: program, minutes: minutes, performedAt: when, performedBy: by,
                activity: activity, modality: interactive ? modality : nil, taskID: task,
                maxMinutes: config.billing.maxEntryMinutes))
            print("time entry \(id): \(minutes) min \(program.rawValue) for \(patient)")
        }
    }

    struct Void: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Void a time entry, recording who and why.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Entry id.") var entry: Int64
        @Option(help: "Who voids the entry, for the audit trail.") var by: String
        @Option var reason: String

        func run() throws {
            let (_, db) = try options.database()
            let id = try db.voidTime(entryID: entry, by: by, reason: reason)
            print("time entry \(entry) voided by entry \(id)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A patient's time entries.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let entries = try db.timeEntries(patientID: patient)
            try emit(format, json: entries,
                     header: ["id", "performed_at", "program", "time", "interactive", "by", "state", "activity"],
                     rows: entries.map { e in
                         // A timer's entry counts its seconds; "1" minute for 5 s read as a billable minute.
                         [String(e.id), iso(e.performedAt), e.program.rawValue,
                          e.lengthText, e.modality?.rawValue ?? "no",
                          e.performedBy, e.voidsEntryID.map { "voids \($0)" } ?? (e.voided ? "voided" : "valid"),
                          e.voidReason ?? e.activity]
                     })
        }
    }
}

/// An instant from RFC 3339, or a `YYYY-MM-DD` date (noon in `zone`); now when nil.
func parseInstant(_ text: String?, zone: TimeZone) throws -> Date {
    guard let text else { return Date() }
    if let d = MeasurementTimePolicy.parseRFC3339(text) { return d }
    if let day = LocalDate(text) { return day.start(in: zone).addingTimeInterval(12 * 3600) }
    throw ValidationError("'\(text)' is neither RFC 3339 nor YYYY-MM-DD")
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "What is billable, and the evidence behind it.",
        subcommands: [Billing.self, Days.self, Adherence.self])

    struct Billing: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per patient: device periods ending in the month with days of data and code, and the month's management minutes and codes.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "YYYY-MM.") var month: String
        @Option var format: OutputFormat = .table

        func run() throws {
            guard let m = YearMonth(month) else { throw ValidationError("--month must be YYYY-MM") }
            let (config, db) = try options.database()
            let report = try db.billingReport(month: m, rules: config.billing)
            try emit(format, json: report, header: PatientBilling.columns + (format == .csv ? ["review"] : []),
                     rows: report.flatMap { $0.rows(review: format == .csv) })
            if format == .table {
                // Time entries that did not count, under the table: never billed in silence.
                for p in report { for note in p.review { print("review \(p.patientID): \(note)") } }
            }
        }
    }

    struct Days: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The dated transmission log of one device period: each local date with device data.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Period number, 1 for the first period of the patient's latest episode.") var period: Int
        @Option var format: OutputFormat = .table

        func run() throws {
            let (config, db) = try options.database()
            let evidence: PeriodEvidence
            do {
                evidence = try db.periodEvidence(patientID: patient, period: period, rules: config.billing)
            } catch let error as BillingError {
                throw ValidationError(error.description)
            }
            let (chosen, days) = (evidence.period, evidence.days)
            if format != .json {
                print("patient \(patient), episode \(evidence.episode.id), period \(period): \(chosen.start)..\(chosen.end) (\(evidence.timezone))")
                print("days of data: \(days.count) -> \(evidence.code ?? "no device code")")
            }
            try emit(format, json: days, header: ["date", "readings", "first", "last", "devices"],
                     rows: days.map { [$0.date.description, String($0.readings), iso($0.first), iso($0.last), $0.devices.joined(separator: ";")] })
        }
    }

    struct Adherence: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per open episode: days of data so far in the current period, days left, and whether 16 (99454) or 2 (99445) are still reachable.")
        @OptionGroup var options: GlobalOptions
        @Option var format: OutputFormat = .table

        func run() throws {
            let (config, db) = try options.database()
            let rows = try db.adherence(rules: config.billing)
            try emit(format, json: rows,
                     header: ["patient_id", "period", "data_days", "days_left", "16_reachable", "2_reachable", "last_data_day"],
                     rows: rows.map { a in
                         [a.patientID, "\(a.period.number): \(a.period.start)..\(a.period.end)", String(a.dataDaysSoFar),
                          String(a.daysLeft), a.reachable16 ? "yes" : "NO", a.reachable2 ? "yes" : "NO", a.lastDataDay?.description ?? "never"]
                     })
        }
    }
}

struct ReadingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reading", abstract: "A patient's readings; readings entered by hand.", subcommands: [List.self, Add.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A patient's readings, newest first, with measurement times in the patient's time zone.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Only readings measured at or after this time: RFC 3339, or YYYY-MM-DD (midnight in the patient's time zone).")
        var since: String?
        @Option(help: "Only this vital type: \(VitalType.allCases.map(\.rawValue).joined(separator: ", ")).") var type: VitalType?
        @Option(help: "At most this many readings.") var limit: Int = 100
        @Option var format: OutputFormat = .table

        func validate() throws {
            if limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() throws {
            let (_, db) = try options.database()
            guard let p = try db.patient(id: patient), let zone = TimeZone(identifier: p.timezone) else {
                throw ValidationError("patient \(patient) is not enrolled")
            }
            var start: Date?
            if let since {
                if let day = LocalDate(since) {
                    start = day.start(in: zone)
                } else if let instant = MeasurementTimePolicy.parseRFC3339(since) {
                    start = instant
                } else {
                    throw ValidationError("--since must be RFC 3339 or YYYY-MM-DD")
                }
            }
            let rows = try db.readingRows(patientID: patient, since: start, type: type, limit: limit)
            let local = Date.ISO8601FormatStyle(timeZoneSeparator: .colon, timeZone: zone)
            try emit(format, json: rows,
                     header: ["measured_at (\(zone.identifier))", "type", "value", "unit", "canonical", "device_id", "source", "flags"],
                     rows: rows.map { r in
                         [r.measuredAt.formatted(local), r.type, Observation.format(r.value), r.unit,
                          "\(Observation.format(r.canonicalValue)) \(r.canonicalUnit)", r.deviceID, r.source,
                          (r.flags + (r.timeSource == "device" ? [] : ["time:\(r.timeSource)"])).joined(separator: ",")]
                     })
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a reading read out by the patient (source manual): checked against thresholds, never a day of data for billing.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "The device the value was read from.") var device: String
        @Option(help: "Vital type, e.g. systolic_bp.") var type: String
        @Option(help: "The value as read: a plain decimal number.", transform: decimalArgument) var value: Double
        @Option(help: "Unit as read, e.g. mmHg.") var unit: String
        @Option(help: "When measured, RFC 3339 with an offset.") var at: String
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (config, db) = try options.database()
            guard let when = MeasurementTimePolicy.parseRFC3339(at) else { throw ValidationError("--at must be RFC 3339 with an offset") }
            do {
                let s = try db.recordManualReading(
                    deviceID: device, typeName: type, value: value, unit: unit, measuredAt: when, actor: actor(by),
                    pipeline: Daemon.pipeline(config))
                print(s.readingsStored == 1 ? "stored (manual)" : "already stored")
            } catch let rejection as Rejection {
                throw ValidationError("\(rejection.reason.rawValue): \(rejection.detail)")
            }
        }
    }
}
