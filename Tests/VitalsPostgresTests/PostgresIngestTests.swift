import PostgresTestSupport
import Foundation
import PostgresNIO
import Testing
import VitalsDomain
import VitalsPostgres

@Suite("Ingest batches on PostgreSQL: one transaction, redelivery absorbed")
struct PostgresIngestTests {
    @Test func aRedeliveredBatchIsStoredOnce() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let leases = SessionLeases(client: client, logger: testLogger)
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let lease = try #require(try await leases.acquire(session: "s", node: "n", ttl: .seconds(60)))
            let first = IngestBatch(readings: [glucose("d1", at: 1_000), glucose("d1", at: 2_000), glucose("d2", at: 1_000)])
            #expect(try await ingest.store(batch: first, lease: lease).newReadings == 3)
            // The broker redelivers it (not acknowledged before a crash): nothing new.
            #expect(try await ingest.store(batch: first, lease: lease).newReadings == 0)
            // A batch overlapping the first, with one reading twice in itself: one new reading.
            let overlap = IngestBatch(readings: [glucose("d1", at: 2_000), glucose("d1", at: 3_000), glucose("d1", at: 3_000, 120)])
            #expect(try await ingest.store(batch: overlap, lease: lease).newReadings == 1)
            #expect(try await rowCount(client, "readings") == 4)
            // The same device and time under another LOINC code is another reading.
            var pulse = glucose("d1", at: 1_000)
            pulse.type = "heart_rate"
            pulse.loinc = "8867-4"
            #expect(try await ingest.store(batch: IngestBatch(readings: [pulse]), lease: lease).newReadings == 1)
            #expect(try await ingest.store(batch: IngestBatch(), lease: lease) == IngestOutcome(newReadings: 0, newDeadLetters: 0))
            #expect(try await rowCount(client, "readings") == 5)
            // The first of the two readings at 3 000 ms was kept.
            #expect(try await rowCount(client, "readings WHERE device_id = 'd1' AND measured_at = 3000 AND value = 110") == 1)
        }
    }

    @Test func aBatchOfTenThousandReadingsIsStoredWholeAndOnce() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
                .acquire(session: "s", node: "n", ttl: .seconds(60)))
            // 100 devices × 100 readings a minute apart: 10,000 distinct keys.
            let readings = (0..<100).flatMap { d in (0..<100).map { i in glucose("dev-\(d)", at: Int64(i) * 60_000) } }
            let ingest = PostgresIngest(client: client, logger: testLogger)
            #expect(try await ingest.store(batch: IngestBatch(readings: readings), lease: lease).newReadings == 10_000)
            #expect(try await ingest.store(batch: IngestBatch(readings: readings), lease: lease).newReadings == 0)
            #expect(try await rowCount(client, "readings") == 10_000)
        }
    }

    @Test func storesEveryColumnAsGivenWithNulls() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
                .acquire(session: "s", node: "n", ttl: .seconds(60)))
            // Measured 2026-12-01T10:00:00Z = 1 796 119 200 000 ms; received 5.25 s later.
            let observation = Observation(
                deviceID: "gm-7", type: .glucose, value: 7.2, unit: "mmol/L", canonicalValue: 129.7,
                measuredAt: Date(timeIntervalSince1970: 1_796_119_200), flags: [.fromDeviceMemory],
                timeSource: .deviceLocal, localOffsetMinutes: -300, vendorReadingID: "r-42")
            let full = StoredReading(
                observation: observation, patientID: "p-7", receivedAt: Date(timeIntervalSince1970: 1_796_119_205.25),
                messageID: "m-1", format: "senml")
            let bare = glucose("d3", at: 5)
            let outcome = try await PostgresIngest(client: client, logger: testLogger)
                .store(batch: IngestBatch(readings: [full, bare]), lease: lease)
            #expect(outcome.newReadings == 2)
            let rows = try await client.query("""
                SELECT device_id, patient_id, type, loinc, value, unit, canonical_value, canonical_unit, measured_at,
                       received_at, source, message_id, flags, time_source, local_offset_minutes, vendor_reading_id, format
                FROM readings ORDER BY device_id DESC
                """, logger: testLogger)
            var seen: [String] = []
            for try await (device, patient, type, loinc, value, unit, canonical, canonicalUnit, measured, received, source,
                           message, flags, timeSource, offset, vendor, format)
                in rows.decode((String, String, String, String, Double, String, Double, String, Int64, Int64, String,
                                String?, String?, String, Int32?, String?, String?).self) {
                seen.append(device)
                if device == "gm-7" {
                    #expect([patient, type, loinc, unit, canonicalUnit] == ["p-7", "glucose", "41653-7", "mmol/L", "mg/dL"])
                    #expect(value == 7.2 && canonical == 129.7)
                    #expect(measured == 1_796_119_200_000 && received == 1_796_119_205_250)
                    #expect(source == "device" && timeSource == "device_local" && offset == -300)
                    #expect(message == "m-1" && flags == "from_device_memory" && vendor == "r-42" && format == "senml")
                } else {
                    #expect(message == nil && flags == nil && offset == nil && vendor == nil && format == nil)
                    #expect(timeSource == "device" && measured == 5 && received == 1505)
                }
            }
            #expect(seen == ["gm-7", "d3"])
        }
    }

    @Test func deadLettersKeepTheirBytesAndAreRecordedOncePerMessage() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
                .acquire(session: "s", node: "n", ttl: .seconds(60)))
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let bytes: [UInt8] = [0x00, 0xFF, 0x7B, 0x22, 0x0A, 0x00]
            let whole = StoredDeadLetter(receivedAt: 10, topic: "devices/x/readings", deviceID: nil, reason: "malformed_json", detail: "not JSON", payload: bytes)
            var second = whole
            second.reason = "unknown_type"
            second.readingIndex = 1
            second.deviceID = "x"
            #expect(try await ingest.store(batch: IngestBatch(deadLetters: [whole, second]), lease: lease).newDeadLetters == 2)
            // Redelivered later: the same message, topic, reason and reading are not recorded again.
            var again = whole
            again.receivedAt = 99
            #expect(try await ingest.store(batch: IngestBatch(deadLetters: [again, second]), lease: lease).newDeadLetters == 0)
            #expect(try await rowCount(client, "dead_letters") == 2)
            let rows = try await client.query(
                "SELECT payload, payload_bytes, device_id, reading_index FROM dead_letters ORDER BY id", logger: testLogger)
            var stored: [([UInt8], Int32, String?, Int32?)] = []
            for try await (payload, size, device, index) in rows.decode((ByteBuffer, Int32, String?, Int32?).self) {
                stored.append((Array(payload.readableBytesView), size, device, index))
            }
            #expect(stored.count == 2)
            #expect(stored.map(\.0) == [bytes, bytes])
            #expect(stored.map(\.1) == [6, 6])
            #expect(stored.map(\.2) == [nil, "x"])
            #expect(stored.map(\.3) == [nil, 1])
        }
    }
}

@Suite("PostgreSQL schema migrations")
struct PostgresSchemaTests {
    @Test func migrationsApplyOnceEvenFromSeveralNodesAtOnce() async throws {
        try await ThrowawayPostgres.shared().withDatabase(migrated: false) { client, database in
            let names = PostgresSchema.migrations.map(\.name)
            #expect(names == ["1 mqtt session leases", "2 readings and dead letters", "3 the clinical schema", "4 cluster nodes", "5 timer runs", "6 dead-letter digests"])
            #expect(try await PostgresSchema.appliedMigrations(client, logger: testLogger) == [])
            // Four nodes start together, each with its own client.
            let cluster = try await ThrowawayPostgres.shared()
            let applied = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await cluster.withClient(database: database, maximumConnections: 2) { node in
                            try await PostgresSchema.migrate(node, logger: testLogger)
                        }
                    }
                }
                var all: [String] = []
                for try await names in group { all += names }
                return all
            }
            #expect(applied.sorted() == names)
            #expect(try await PostgresSchema.appliedMigrations(client, logger: testLogger) == names)
            #expect(try await PostgresSchema.migrate(client, logger: testLogger) == [])
            #expect(try await rowCount(client, "schema_migrations") == 6)
            #expect(try await rowCount(client, "readings") == 0)
        }
    }

    @Test func aFailingMigrationLeavesNoTrace() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            let broken = PostgresSchema.migrations + [
                PostgresMigration("4 broken", ["CREATE TABLE half_done (id INTEGER)", "ALTER TABLE no_such_table ADD COLUMN x TEXT"]),
            ]
            var failure: (any Error)?
            do {
                try await PostgresSchema.migrate(client, migrations: broken, logger: testLogger)
            } catch {
                failure = error
            }
            #expect(failure is PSQLError)
            let applied = try await PostgresSchema.appliedMigrations(client, logger: testLogger)
            #expect(applied == PostgresSchema.migrations.map(\.name))
            let halfDone = try await rowCount(client, "pg_tables WHERE tablename = 'half_done'")
            #expect(halfDone == 0)
        }
    }
}
