import Foundation
import Testing
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// The real CGM data of `Samples/cgm`, billed month by month.
@Suite("billing on the real CGM data")
struct CGMBillingTests {
    @Test("days of data per period equal an independent count of distinct local dates")
    func cgmDataDays() async throws {
        let dir = NSTemporaryDirectory() + "vitalsd-cgm-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try AppDatabase.open(path: dir + "/cgm.sqlite")
        let zoneName = "America/New_York"
        let zone = try #require(TimeZone(identifier: zoneName))
        for row in try EnrollmentCSV.read(path: repositoryRoot.appendingPathComponent("Samples/cgm/enrollment.csv").path) {
            try db.upsertPatient(row.patient, actor: "test")
            if let d = row.device { try db.upsertDevice(d, actor: "test") }
        }
        let readings = try ReplayCSV.read(
            path: repositoryRoot.appendingPathComponent("Samples/cgm/readings.csv").path,
            timeZone: LocalDateTime.fixedOffsetZone("-05:00"))
        #expect(readings.count == 13_866)
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        var stored = 0
        for start in stride(from: 0, to: readings.count, by: 500) {
            let batch = readings[start..<min(start + 500, readings.count)].map {
                IncomingMessage(topic: "devices/\($0.deviceID)/readings", deviceID: $0.deviceID,
                                payload: $0.canonicalPayload(), receivedAt: Date())
            }
            stored += try await db.ingest(batch, pipeline: pipeline).readingsStored
        }
        #expect(stored == 13_866)

        // Independent count: format each instant as a date string in the patient's zone.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = zone
        formatter.dateFormat = "yyyy-MM-dd"
        let byPatient = Dictionary(grouping: readings) { "subject-" + $0.deviceID.split(separator: "-").last! }
        var months = Set<String>()
        for (patient, rs) in byPatient {
            let first = try #require(rs.map(\.measuredAt).min())
            let startDate = try #require(LocalDate(formatter.string(from: first)))
            try db.startEpisode(patientID: patient, startDate: startDate, practitioner: "Dr. Demo", actor: "test")
            // The months they cover: from the first reading to 30 days after the last, so every period
            // holding data ends in one of them.
            var day = startDate
            let end = try #require(LocalDate(formatter.string(from: rs.map(\.measuredAt).max()!))).adding(days: 30)
            while day <= end {
                months.insert(YearMonth(day).description)
                day = day.adding(days: 1)
            }
        }
        let rules = BillingRules()
        var counted: [String: Int] = [:]
        for month in months.sorted() {
            for p in try db.billingReport(month: try #require(YearMonth(month)), rules: rules) {
                for period in p.periods {
                    let dates = Set(byPatient[p.patientID, default: []].map { formatter.string(from: $0.measuredAt) }
                        .filter { $0 >= period.period.start.description && $0 <= period.period.end.description })
                    #expect(period.dataDays == dates.count, "\(p.patientID) period \(period.period.number)")
                    let expectedCode: String? = dates.count >= 16 ? "99454" : dates.count >= 2 ? "99445" : nil
                    #expect(period.deviceCode == expectedCode)
                    counted[p.patientID, default: 0] += period.dataDays
                }
            }
        }
        // Every day of data of every patient is counted in exactly one reported period.
        for (patient, rs) in byPatient {
            #expect(counted[patient] == Set(rs.map { formatter.string(from: $0.measuredAt) }).count, "\(patient)")
        }
        #expect(counted.count == 5)
    }
}
