import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain
import VitalsPostgres
import VitalsStore

/// Stores the same glucose readings, batch by batch, through the SQLite ingest and through the
/// PostgreSQL batch store (each with the clinical rules and the task writer in the batch's
/// transaction), and reports both rates: the storage half of a backlog drain, without the broker.
///
/// The readings: `--readings` canonical glucose messages of one reading each, for `--patients`
/// patients (diabetes, one meter each), one a minute per patient going back from now; every 20th
/// is 300 mg/dL (a warning high), the rest 120. Both stores get the same messages in the same
/// batches; the SQLite one decodes them inside its ingest, the PostgreSQL side decodes them in this
/// process before each batch (timed with the batch).
@main
struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitalsd-store-bench",
        abstract: "Stores the same readings through the SQLite ingest and the PostgreSQL batch store; prints both rates.")

    @Option(help: "Readings to store.") var readings = 50_000
    @Option(help: "Readings per batch (the daemon's mqtt.max_batch).") var batch = 500
    @Option(help: "Patients, one meter each.") var patients = 1_000
    @Option(help: "A directory for the SQLite database (synchronous = FULL).") var sqliteDirectory: String
    @Option(help: "postgres:// URL of an empty database (synchronous_commit as the server has it).") var postgresURL: String

    func run() async throws {
        let logger: Logger = {
            var logger = Logger(label: "vitalsd-store-bench")
            logger.logLevel = .error
            return logger
        }()
        let now = Date()
        let messages = (0..<readings).map { n -> IncomingMessage in
            let patient = n % patients
            let at = now.addingTimeInterval(-Double(n / patients + 1) * 60)
            let value = n % 20 == 19 ? 300 : 120
            let payload = #"{"measured_at":\#(Int64(at.timeIntervalSince1970 * 1000)),"readings":[{"type":"glucose","value":\#(value),"unit":"mg/dL"}]}"#
            return IncomingMessage(topic: "devices/m\(patient)/readings", deviceID: "m\(patient)", payload: Array(payload.utf8), receivedAt: now)
        }
        let batches = stride(from: 0, to: messages.count, by: batch).map { Array(messages[$0..<min($0 + batch, messages.count)]) }

        // SQLite, through the daemon's ingest.
        let database = try AppDatabase.open(path: sqliteDirectory + "/store-bench.sqlite")
        for p in 0..<patients {
            try database.upsertPatient(Patient(id: "p\(p)", timezone: "UTC", programs: [.diabetes]), actor: "bench")
            try database.upsertDevice(Device(id: "m\(p)", kind: .glucometer, patientID: "p\(p)"), actor: "bench")
        }
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        let clock = ContinuousClock()
        var sqliteStored = 0, sqliteTasks = 0
        let sqliteTime = try await clock.measure {
            for b in batches {
                let summary = try await database.ingest(b, pipeline: pipeline, now: now)
                sqliteStored += summary.readingsStored
                sqliteTasks += summary.tasksOpened.values.reduce(0, +)
            }
        }
        try database.close()

        // PostgreSQL, through the fenced batch store.
        let settings = try PostgresSettings(url: postgresURL)
        _ = try await PostgresAdmin.migrate(settings, actor: "bench", now: now, logger: logger)
        let policy = AlertingPolicy(thresholds: .clinicalDefaults)
        let (postgresStored, postgresTasks, postgresTime) = try await PostgresAdmin.withClient(settings, logger: logger) { client in
            let ids = (0..<patients).map { "p\($0)" }, devices = (0..<patients).map { "m\($0)" }
            try await client.query("INSERT INTO patients (id, timezone, created_at) SELECT unnest(\(ids)::text[]), 'UTC', 0", logger: logger)
            try await client.query(
                "INSERT INTO patient_programs (patient_id, program) SELECT unnest(\(ids)::text[]), 'diabetes'", logger: logger)
            try await client.query("""
                INSERT INTO devices (id, kind, patient_id, created_at)
                SELECT d, 'glucometer', p, 0 FROM unnest(\(devices)::text[], \(ids)::text[]) AS t(d, p)
                """, logger: logger)
            guard let lease = try await SessionLeases(client: client, logger: logger)
                .acquire(session: "bench", node: "bench", ttl: .seconds(3_600)) else { throw ValidationError("no lease") }
            let ingest = PostgresIngest(client: client, logger: logger)
            let decoder = CanonicalMessageDecoder()
            var stored = 0, tasks = 0
            let time = try await clock.measure {
                for b in batches {
                    var rows: [StoredReading] = []
                    for (index, m) in b.enumerated() {
                        let device = m.deviceID ?? ""
                        let decoded = try decoder.decode(payload: m.payload, deviceID: device, receivedAt: m.receivedAt)
                        let patient = "p" + device.dropFirst()
                        for case .success(let o) in decoded.readings {
                            rows.append(StoredReading(observation: o, patientID: patient, receivedAt: m.receivedAt, message: index))
                        }
                    }
                    let outcome = try await ingest.store(
                        batch: IngestBatch(readings: rows), lease: lease,
                        alerting: BatchAlerting(policy: policy, now: now, incarnation: "bench"))
                    stored += outcome.newReadings
                    tasks += outcome.alerting.opened.values.reduce(0, +)
                }
            }
            return (stored, tasks, time)
        }
        func rate(_ n: Int, _ d: Duration) -> Int {
            Int((Double(n) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)).rounded())
        }
        let s = rate(sqliteStored, sqliteTime), p = rate(postgresStored, postgresTime)
        print("sqlite_stored=\(sqliteStored) sqlite_tasks=\(sqliteTasks) sqlite_rate=\(s) postgres_stored=\(postgresStored) "
              + "postgres_tasks=\(postgresTasks) postgres_rate=\(p) ratio=\(String(format: "%.2f", Double(p) / Double(max(s, 1))))")
    }
}
