import ArgumentParser
import Foundation
import MQTTClient
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsPostgres
import VitalsStore

struct TaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task", abstract: "The care manager's task queue.",
        subcommands: [List.self, Show.self, Ack.self, Resolve.self, Note.self])

    /// Which tasks `task list` shows.
    enum StatusFilter: String, ExpressibleByArgument, CaseIterable {
        case unresolved, open, acknowledged, resolved, all

        func admits(_ status: TaskStatus) -> Bool {
            switch self {
            case .unresolved: status != .resolved
            case .all: true
            default: status.rawValue == rawValue
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tasks: unresolved by default, critical before warning, oldest first.",
            discussion: "The table fits 120 columns: long patient ids and reasons are cut with …; task show ID or --format json|csv give them whole.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "unresolved (open and acknowledged; the default), open, acknowledged, resolved or all.")
        var status: StatusFilter = .unresolved
        @Option var patient: String?
        @Option(help: "Only tasks opened or changed at or after this time (RFC 3339, or YYYY-MM-DD in UTC).") var since: String?
        @Option(help: "At most this many tasks.") var limit: Int = 100
        @Option var format: OutputFormat = .table

        func validate() throws {
            if let since, parseSince(since) == nil { throw ValidationError("--since must be RFC 3339 or YYYY-MM-DD") }
            if limit < 1 { throw ValidationError("--limit must be at least 1") }
        }

        func run() async throws {
            let config = try options.load()
            let patient = self.patient
            let all: [CareTask]
            if let settings = try Daemon.postgresSettings(config) {
                all = try await PostgresCommands.withTasks(settings) { try await $0.tasks(patientID: patient) }
            } else {
                all = try options.database().1.tasks(patientID: patient)
            }
            let start = since.flatMap(parseSince)
            let tasks = Array(all.filter { t in
                status.admits(t.status) && (start.map { t.updatedAt >= $0 } ?? true)
            }.prefix(limit))
            switch format {
            case .json: try printJSON(tasks.map(TaskRow.init))
            case .csv:
                printCSV(["id", "priority", "status", "patient_id", "kind", "condition", "direction", "occurrences", "opened_at",
                          "latest", "latest_measured_at", "worst", "worst_measured_at", "owner", "reason"],
                         tasks.map { t in
                             [String(t.id), t.priority.rawValue, t.status.rawValue, t.patientID, t.kind.rawValue, t.vital,
                              t.shownDirection ?? "", String(t.occurrences), iso(t.openedAt), t.latest?.summary ?? "",
                              iso(t.latest?.measuredAt), t.worst?.summary ?? "", iso(t.worst?.measuredAt), t.owner ?? "", t.reason]
                         })
            case .table: print(Self.table(tasks).joined(separator: "\n"))
            }
        }

        /// The task table, every line at most `width` columns: id, priority, status, patient,
        /// condition (with its direction only where it has one), occurrences, opened (UTC) and reason,
        /// the patient id cut at 14 and the reason at what the line leaves.
        static func table(_ tasks: [CareTask], width: Int = 120) -> [String] {
            func cut(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(max(0, n - 1))) + "…" }
            let header = ["id", "priority", "status", "patient_id", "condition", "n", "opened (UTC)", "reason"]
            let rows = tasks.map { t -> [String] in
                [String(t.id), t.priority.rawValue, t.status.rawValue, cut(t.patientID, 14),
                 cut(t.vital + (t.shownDirection.map { " " + $0 } ?? ""), 22), String(t.occurrences),
                 shortUTC(t.openedAt), t.reason]
            }
            var widths = header.map(\.count)
            for row in rows { for i in 0..<(row.count - 1) { widths[i] = max(widths[i], row[i].count) } }
            let fixed = widths.dropLast().reduce(0, +) + 2 * (widths.count - 1)
            func line(_ cells: [String]) -> String {
                var text = ""
                for (i, c) in cells.enumerated() {
                    if i == cells.count - 1 {
                        text += cut(c, max(8, width - fixed))
                    } else {
                        text += c.padding(toLength: widths[i], withPad: " ", startingAt: 0) + "  "
                    }
                }
                return text
            }
            return [line(header)] + rows.map(line)
        }

        /// `2026-11-28 13:10`, in UTC.
        static func shortUTC(_ date: Date) -> String {
            var style = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!)
            style = style.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false)
            return String(date.formatted(style).prefix(16)).replacingOccurrences(of: "T", with: " ")
        }
    }

    /// A task as `task list --format json` prints it: the task's own fields, its direction only where
    /// it has one (`null` for late-data, days-of-data, no-data and device tasks).
    struct TaskRow: Encodable {
        let task: CareTask
        init(_ task: CareTask) { self.task = task }

        func encode(to encoder: any Encoder) throws {
            try task.encode(to: encoder)
            if task.shownDirection == nil {
                var c = encoder.container(keyedBy: DirectionKey.self)
                try c.encodeNil(forKey: .direction)
            }
        }

        enum DirectionKey: String, CodingKey { case direction }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a task and its history.")
        @OptionGroup var options: GlobalOptions
        @Argument var id: Int64
        @Option var format: OutputFormat = .table

        func run() async throws {
            let config = try options.load()
            let id = self.id
            let found: (task: CareTask, events: [TaskEvent], notes: [TaskNote])?
            if let settings = try Daemon.postgresSettings(config) {
                found = try await PostgresCommands.withTasks(settings) { try await $0.task(id: id) }
            } else {
                let db = try options.database().1
                found = try db.task(id: id).map { ($0.task, $0.events, try db.taskNotes(id: id)) }
            }
            guard let (t, events, notes) = found else { throw ValidationError("task \(id) does not exist") }
            if format == .json {
                struct Shown: Encodable { var task: TaskRow; var events: [TaskEvent]; var notes: [TaskNote] }
                try printJSON(Shown(task: TaskRow(t), events: events, notes: notes))
                return
            }
            print("task #\(t.id)  \(t.priority.rawValue)  \(t.status.rawValue)")
            print("patient:      \(t.patientID)")
            print("condition:    \(t.vital)\(t.shownDirection.map { " " + $0 } ?? "") (\(t.kind.rawValue))")
            print("reason:       \(t.reason)")
            print("occurrences:  \(t.occurrences)")
            if let latest = t.latest { print("latest:       \(latest.summary), measured \(iso(latest.measuredAt))") }
            if let worst = t.worst { print("worst:        \(worst.summary), measured \(iso(worst.measuredAt))") }
            if let first = t.firstReadingID, let last = t.lastReadingID { print("readings:     first #\(first), last #\(last)") }
            if t.suppressedBreaches > 0 {
                print("after resolve: \(t.suppressedBreaches) breaches suppressed, last measured \(iso(t.lastSuppressedAt))")
            }
            print("kind:         \(t.kind.rawValue)")
            print("opened:       \(iso(t.openedAt))")
            if let c = t.confirmation { print("confirmation: \(c.rawValue)") }
            if t.escalationLevel > 0 { print("escalated:    level \(t.escalationLevel), last \(iso(t.escalatedAt))") }
            if t.dataStale { print("data:         stale (no device data since the task's readings)") }
            if let by = t.acknowledgedBy { print("acknowledged: \(iso(t.acknowledgedAt)) by \(by)") }
            print("owner:        \(t.owner ?? "unassigned")")
            if let by = t.resolvedBy { print("resolved:     \(iso(t.resolvedAt)) by \(by)") }
            if let d = t.disposition { print("disposition:  \(d.rawValue)") }
            if !notes.isEmpty {
                print("notes:")
                for n in notes { print("  \(iso(n.at))  \(n.author): \(n.text)") }
            }
            print("history:")
            for e in events { print("  \(iso(e.at))  \(e.event)  \(e.actor)\(e.detail.map { "  \($0)" } ?? "")") }
        }
    }

    /// The arguments of a task state change.
    struct Transition: ParsableArguments {
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Task id.") var id: Int64
        @Option(help: "Care manager's name.") var by: String
        @Option(help: "Free text kept with the task.") var note: String?
        @Option(help: "Minutes spent, logged as RPM time against the task.") var minutes: Int?
        @Option(help: "What was done (with --minutes).") var activity: String?
        @Option(help: "audio, video or sync_message if the time included a real-time interactive communication.")
        var modality: InteractionModality?

        func validate() throws {
            if minutes == nil && (activity != nil || modality != nil) { throw ValidationError("--activity and --modality go with --minutes") }
        }

        /// The time entry the options describe, if any, with the configuration's per-entry limit.
        /// The task on PostgreSQL, changed by `act`; time entries are on SQLite only so far.
        func onPostgres(_ act: @escaping @Sendable (PostgresCareTasks) async throws -> CareTask) async throws -> CareTask? {
            let config = try options.load()
            guard let settings = try Daemon.postgresSettings(config) else { return nil }
            if minutes != nil {
                throw ValidationError("--minutes: time entries are kept on SQLite only so far; log the time where the workspace runs")
            }
            return try await PostgresCommands.withTasks(settings, act)
        }

        func time(_ config: VitalsConfiguration) -> NewTimeEntry? {
            minutes.map {
                NewTimeEntry(patientID: "", minutes: $0, performedBy: by, activity: activity ?? note ?? "task \(id)",
                             modality: modality, taskID: id, maxMinutes: config.billing.maxEntryMinutes)
            }
        }
    }

    struct Ack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Acknowledge an open task: someone is on it.")
        @OptionGroup var transition: Transition

        func run() async throws {
            let (id, by, note) = (transition.id, transition.by, transition.note)
            if try await transition.onPostgres({ try await $0.acknowledge(id: id, by: by, note: note, at: Date()) }) == nil {
                let (config, db) = try transition.options.database()
                _ = try db.acknowledgeTask(id: id, by: by, note: note, time: transition.time(config))
            }
            print("task #\(id) acknowledged by \(by)")
        }
    }

    struct Resolve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Resolve a task. A later breach opens a new one.")
        @OptionGroup var transition: Transition

        func run() async throws {
            let (id, by, note) = (transition.id, transition.by, transition.note)
            if try await transition.onPostgres({ try await $0.resolve(id: id, by: by, note: note, at: Date()) }) == nil {
                let (config, db) = try transition.options.database()
                _ = try db.resolveTask(id: id, by: by, note: note, time: transition.time(config))
            }
            print("task #\(id) resolved by \(by)")
        }
    }
}

extension TaskCommand {
    struct Note: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a note to a task without changing its status. Notes are kept in order and never changed.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Task id.") var id: Int64
        @Option(help: "Care manager's name.") var by: String
        @Option(help: "The note.") var text: String

        func run() async throws {
            let (id, by, text) = (self.id, self.by, self.text)
            if let settings = try Daemon.postgresSettings(try options.load()) {
                _ = try await PostgresCommands.withTasks(settings) { try await $0.note(id: id, by: by, text: text, at: Date()) }
            } else {
                _ = try options.database().1.noteTask(id: id, by: by, text: text)
            }
            print("task #\(id): note added by \(by)")
        }
    }
}

extension CareTask {
    /// The direction as the CLI shows it: a threshold or trend task's `high`/`low`; nil for late-data,
    /// days-of-data, no-data and device tasks, whose stored direction means nothing.
    var shownDirection: String? { kind == .threshold || kind == .trend ? direction.rawValue : nil }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts of readings, duplicates, dead letters, tasks, patients and devices.")
    @OptionGroup var options: GlobalOptions
    @Option var format: OutputFormat = .table

    func run() throws {
        let (_, db) = try options.database()
        let s = try db.statistics()
        if format == .json { return try printJSON(s) }
        var rows = [["readings", String(s.readings)], ["duplicates", String(s.duplicates)],
                    ["dead_letters", String(s.deadLetters)]]
        rows += s.deadLettersByReason.sorted { $0.key < $1.key }.map { ["  \($0.key)", String($0.value)] }
        rows += [["tasks_open", String(s.tasksOpen)], ["tasks_acknowledged", String(s.tasksAcknowledged)],
                 ["tasks_resolved", String(s.tasksResolved)], ["patients", String(s.patients)], ["devices", String(s.devices)]]
        printTable(["counter", "value"], rows)
    }
}

struct DeadLetterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters", abstract: "Messages that could not become readings, with their reasons.",
        subcommands: [List.self, Show.self, Replay.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, newest first.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this reason, e.g. unknown_device.") var reason: String?
        @Option var limit: Int = 50
        @Option var format: OutputFormat = .table

        func validate() throws {
            if let reason, DeadLetterReason(rawValue: reason) == nil {
                throw ValidationError("--reason must be one of \(DeadLetterReason.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() throws {
            let (_, db) = try options.database()
            let letters = try db.deadLetters(reason: reason, limit: limit)
            try emit(format, json: letters, header: ["id", "received_at", "reason", "device_id", "topic", "bytes", "replayed_at", "detail"],
                     rows: letters.map { d in
                         [String(d.id), iso(d.receivedAt), d.reason, d.deviceID ?? "", d.topic, String(d.payloadBytes),
                          iso(d.replayedAt), d.detail + (d.readingIndex.map { " (reading \($0))" } ?? "")]
                     })
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a dead letter's raw payload to standard output (of a too_large payload, its first 4096 bytes).")
        @OptionGroup var options: GlobalOptions
        @Argument var id: Int64

        func run() throws {
            let (_, db) = try options.database()
            guard let payload = try db.storedDeadLetterPayload(id: id) else { throw ValidationError("dead letter \(id) does not exist") }
            FileHandle.standardOutput.write(payload.bytes)
            if payload.isTruncated {
                let hash = payload.sha256.map { " sha256 " + $0.map { String(format: "%02x", $0) }.joined() } ?? ""
                FileHandle.standardError.write(Data(
                    "dead letter \(id): only the first \(payload.bytes.count) of \(payload.size) bytes are kept;\(hash)\n".utf8))
            }
        }
    }
}

extension DeadLetterCommand {
    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ingest dead letters again through the normal path, e.g. after their device was enrolled; idempotent.",
            discussion: """
                Each message is stored as if it arrived again with its original receive time (readings \
                already stored are duplicates). A dead letter whose reason does not come back is marked \
                replayed and never replayed again; one that fails again for the same reason waits for a \
                later replay. Readings measured more than alerts.late_after_hours before the replay go to \
                the late-data review task.
                """)
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only this reason, e.g. unknown_device.") var reason: String?
        @Option(help: "Only dead letters received at or after this time (RFC 3339 or YYYY-MM-DD, UTC).") var since: String?
        @Option(help: "Who replays, for the audit trail (default: the invoking user).") var by: String?

        func validate() throws {
            if let reason, DeadLetterReason(rawValue: reason) == nil {
                throw ValidationError("--reason must be one of \(DeadLetterReason.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if let since, parseSince(since) == nil { throw ValidationError("--since must be RFC 3339 or YYYY-MM-DD") }
        }

        func run() async throws {
            let (config, db) = try options.database()
            let s = try await db.replayDeadLetters(
                reason: reason.flatMap(DeadLetterReason.init(rawValue:)), since: since.flatMap(parseSince),
                routes: try config.mqtt.routes(), pipeline: Daemon.pipeline(config), actor: actor(by))
            func counts(_ d: [String: Int]) -> String {
                d.isEmpty ? "none" : d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
            print("replayed \(s.messages) messages (\(s.deadLetters) dead letters): \(s.readingsStored) readings stored, \(s.duplicates) already stored, \(s.tasksOpened) tasks opened")
            print("resolved: \(s.resolved); still failing: \(counts(s.stillFailing)); new dead letters: \(counts(s.newDeadLetters))")
            if s.payloadPurged + s.payloadTruncated > 0 {
                print("not replayable: \(s.payloadPurged) with their payload purged, \(s.payloadTruncated) too_large (only a prefix kept)")
            }
        }
    }
}

/// An instant from `--since`: RFC 3339, or a date (its start in UTC).
func parseSince(_ text: String) -> Date? {
    if let day = LocalDate(text) { return day.start(in: TimeZone(identifier: "UTC")!) }
    return MeasurementTimePolicy.parseRFC3339(text)
}

struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Publish a CSV of readings (device_id,measured_at,type,value,unit) to the broker as canonical messages.")
    @OptionGroup var options: GlobalOptions
    @Argument(help: "CSV file.") var file: String
    @Option(help: "Time zone for measured_at values without a UTC offset: an IANA name (America/New_York) or a fixed offset (-05:00).")
    var timezone: String?
    @Option(help: "Speed factor (60 = an hour per minute); default: as fast as the broker accepts.") var speed: Double?
    @Flag(help: "Shift all times so that the last reading is measured now.") var rebase = false
    @Option(help: "Topic, with {device_id}.") var topic = "devices/{device_id}/readings"

    func run() async throws {
        let config = try options.load()
        var zone: TimeZone?
        if let timezone {
            guard let z = LocalDateTime.fixedOffsetZone(timezone) ?? TimeZone(identifier: timezone) else {
                throw ValidationError("unknown time zone \(timezone): give an IANA name or an offset such as -05:00")
            }
            zone = z
        }
        let readings = try ReplayCSV.read(path: file, timeZone: zone)
        let publisher = try await MQTTPublisherFactory.make(config)
        defer { publisher.close() }
        let result = try await Replay.run(readings, publisher: publisher, topicTemplate: topic, speed: speed, rebase: rebase)
        let rate = result.seconds > 0 ? Double(result.published) / result.seconds : 0
        print("published \(result.published) readings in \(String(format: "%.2f", result.seconds)) s (\(Int(rate)) msg/s), all acknowledged by the broker")
    }
}
