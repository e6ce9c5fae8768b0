import ArgumentParser
import Foundation
#if os(Linux)
import CGlibcMalloc
#endif
import Logging
import MQTTClient
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsPostgres
import VitalsStore
import VitalsWeb

@main
struct VitalsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitalsd",
        abstract: "Remote patient monitoring ingestion daemon: device readings from MQTT into the care manager's task queue.",
        discussion: """
            Every command reads the configuration named by --config, else by the environment variable \
            VITALSD_CONFIG, else /etc/vitalsd/vitalsd.yaml; VITALSD_* variables override its keys \
            (e.g. VITALSD_DATABASE_PATH). In production run the commands as the service's user: \
            sudo -u vitalsd vitalsd …
            """,
        version: BuildInfo.description(postgresMigrations: PostgresSchema.migrations.map(\.name)),
        subcommands: [
            Run.self, PatientCommand.self, DeviceCommand.self, ThresholdCommand.self, Import.self, TaskCommand.self,
            EpisodeCommand.self, TimeCommand.self, ReportCommand.self, ReadingCommand.self, AuditCommand.self, ClientCommand.self, DatabaseCommand.self,
            Stats.self, DeadLetterCommand.self, ReplayCommand.self, ConfigCommand.self, UserCommand.self,
        ])

    static func main() async {
        // libmosquitto's global init is not thread-safe: do it first, on the main thread.
        MosquittoLibrary.initialize()
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            // --help and --version print and exit 0; a wrong argument says what is wrong and where
            // the options are, without the whole usage block.
            if exitCode(for: error) == .success { exit(withError: error) }
            fail("\(message(for: error))\nRun the command with --help for its options.", code: exitCode(for: error).rawValue)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ConfigurationErrors {
            fail("configuration refused:\n\(error.description)", code: 2)
        } catch let code as ExitCode {
            // The command printed what it had to say.
            Foundation.exit(code.rawValue)
        } catch {
            // A command that ran and failed: its reason only (a ValidationError thrown by run() would
            // otherwise print the usage block as if the arguments were wrong).
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            // A ValidationError from run() is a refusal (unknown patient, rule broken), not a usage
            // error: exit 1, as other failures.
            fail(message(for: error), code: error is ValidationError ? 1 : code.rawValue)
        }
    }

    /// Writes `vitalsd: MESSAGE` to standard error and exits with `code`.
    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("vitalsd: \(message)\n".utf8))
        Foundation.exit(code == 0 ? 1 : code)
    }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Configuration file (YAML); default: $VITALSD_CONFIG if set, else /etc/vitalsd/vitalsd.yaml.", valueName: "FILE"))
    var config: String = ProcessInfo.processInfo.environment["VITALSD_CONFIG"] ?? "/etc/vitalsd/vitalsd.yaml"

    /// The configuration with `VITALSD_*` environment overrides applied.
    func load() throws -> VitalsConfiguration {
        try VitalsConfiguration.load(path: config, environment: ProcessInfo.processInfo.environment)
    }

    /// The database the configuration names, for admin commands; refused while a daemon of an older
    /// build runs on it and this build would upgrade its schema (``Daemon/openDatabaseForCommand(_:)``).
    func database() throws -> (VitalsConfiguration, AppDatabase) {
        let c = try load()
        return (c, try Daemon.openDatabaseForCommand(c))
    }
}

/// A clinical number given on the command line (a limit, a bound, a value read out): a plain decimal
/// number, by the rule of readings from devices (``NumericValue/parseDecimalString(_:)``); `0xAF`,
/// `1e2`, `nan` and `inf` are refused, where Swift's `Double` would read them.
/// - Throws: `ValidationError` naming the rule.
func decimalArgument(_ text: String) throws -> Double {
    guard let value = NumericValue.parseDecimalString(text) else {
        throw ValidationError("'\(text)' is not a plain decimal number (digits with an optional sign and decimal point)")
    }
    return value
}

/// Who is making a change, for the audit trail: `--by`, else the invoking user.
func actor(_ by: String?) -> String {
    if let by, !by.trimmingCharacters(in: .whitespaces).isEmpty { return by }
    let env = ProcessInfo.processInfo.environment
    return env["SUDO_USER"] ?? env["USER"] ?? env["LOGNAME"] ?? "uid:\(getuid())"
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon: subscribe, store, evaluate, raise tasks. Stops cleanly on SIGTERM or SIGINT; SIGHUP reloads thresholds and topics.")

    @OptionGroup var options: GlobalOptions

    func run() async throws {
        limitMallocArenas()
        let config = try options.load()
        let level = Logger.Level(rawValue: config.log.level) ?? .info
        let json = config.log.format == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "vitalsd")
        try await Daemon.run(config, configPath: options.config, logger: logger)
    }
}

/// glibc gives each thread that meets contention in malloc an arena of its own (up to 8 per core), and
/// memory freed into one arena is not reused by another thread's. Draining 100,000 readings from
/// 100,000 patients, the daemon's peak RSS was 76.6 / 77.3 MiB with the default, 65.6 / 67.0 with two
/// arenas and 60.5 / 60.5 with one; one arena drained 100,000 readings of 1,000 patients as fast as two
/// (6.72 / 7.12 s against 6.66 / 6.84 s): glibc's per-thread caches serve most small allocations without
/// the arena's lock (BENCHMARKS.md). `MALLOC_ARENA_MAX` in the environment still decides when it is set.
///
/// Blocks of 512 KiB and more (a batch's arrays of 5,000 messages, decoded results and rows) get
/// mappings of their own, returned when freed. glibc starts at 128 KiB, but raises the threshold to
/// the size of each large block freed, after which the next batch's arrays come from the heap and
/// leave it fragmented. Draining 100,000 readings from 100,000 enrolled patients, peak RSS was
/// 67.2 MiB with glibc's default and 63.4 MiB with 512 KiB, at no cost in CPU (2.7-3.1 s against
/// 2.8-3.2 s of daemon CPU for 50,000 readings); 128 KiB saved as much memory but cost 15 % more CPU,
/// every batch faulting in its fresh mappings (BENCHMARKS.md). `MALLOC_MMAP_THRESHOLD_` in the
/// environment still decides when it is set.
private func limitMallocArenas() {
    #if os(Linux)
    let environment = ProcessInfo.processInfo.environment
    if environment["MALLOC_ARENA_MAX"] == nil { _ = vitalsd_set_malloc_arena_max(1) }
    if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = vitalsd_set_malloc_mmap_threshold(512 * 1024) }
    #endif
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Configuration tools.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration and exit 0, or print each problem with its key and exit 2.")

        @OptionGroup var options: GlobalOptions

        func run() async throws {
            let config = try options.load()
            var problems: [String] = []
            var warnings = config.warnings.map(\.description)
            var database = ""
            if config.database.url != nil {
                do {
                    if let settings = try Daemon.postgresSettings(config) {
                        let (p, w, summary) = await PostgresCommands.check(settings)
                        problems += p
                        warnings += w
                        database = summary
                    }
                } catch let error as ConfigurationErrors {
                    problems += error.errors.map(\.description)
                }
            } else if let problem = Daemon.databaseDirectoryProblem(config) {
                problems.append(problem.description)
            } else {
                // As the user running the check (run it as the service's user: sudo -u vitalsd).
                let parent = (config.database.path as NSString).deletingLastPathComponent
                let directory = parent.isEmpty ? "." : parent
                if access(directory, W_OK | X_OK) != 0 {
                    problems.append("database.path: directory \(directory) is not writable by this user (uid \(getuid())): the database, its WAL and its lock file are created there")
                }
            }
            do { _ = try config.mqttPassword() } catch { problems.append("\(error)") }
            problems += config.webTLSFileProblems.map(\.description)
            problems += Workspace.tlsProblems(config).map(\.description)
            // Users live in the database: checked when it exists already. A database that this build
            // would migrate is left as it is (an older daemon may still be running on it): the
            // daemon's next start migrates it.
            var pending: [String] = []
            if problems.isEmpty, config.database.url == nil, FileManager.default.fileExists(atPath: config.database.path) {
                do {
                    pending = try AppDatabase.pendingMigrations(path: config.database.path)
                    if pending.isEmpty {
                        let database = try AppDatabase.openReadOnly(path: config.database.path)
                        defer { try? database.close() }
                        if let problem = try Daemon.escalationBackupProblem(config, database: database) {
                            problems.append(problem.description)
                        }
                    }
                } catch { problems.append("database.path: \(error)") }
            }
            if !problems.isEmpty {
                FileHandle.standardError.write(Data(("vitalsd: configuration refused:\n" + problems.joined(separator: "\n") + "\n").utf8))
                throw ExitCode(2)
            }
            if config.alerts.escalationBackup == nil {
                warnings.append("alerts.escalation_backup_user: not set (nor escalation_backup_role): an unacknowledged critical task of a patient without an active care manager escalates to nobody, and later escalations reach nobody beyond the owner")
            }
            if !pending.isEmpty {
                warnings.append("""
                    database.path: the next start of the daemon upgrades the schema (\(pending.count) migration\(pending.count == 1 ? "" : "s"): \
                    \(pending.joined(separator: ", "))); take a backup first (vitalsd db backup); the users of \
                    alerts.escalation_backup_* are checked after the upgrade
                    """)
            }
            for w in warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            if !database.isEmpty {
                print("database: \(database)")
                let sessions = config.cluster.sessions.isEmpty ? [config.mqtt.clientID] : config.cluster.sessions.map(\.clientID)
                print("node: \(Daemon.nodeName(config)), lease \(String(format: "%g", config.cluster.leaseTTLSeconds)) s; MQTT sessions: \(sessions.joined(separator: ", "))")
            }
            print("configuration ok: \(options.config)\(warnings.isEmpty ? "" : " (\(warnings.count) warning\(warnings.count == 1 ? "" : "s"))")")
        }
    }
}
