import Foundation
import Testing
import VitalsDomain
import VitalsStore

@Suite("the patient chart's queries: readings by vital with task markers, logbook pages, timeline, access log")
struct ChartStoreTests {
    @Test("a window's readings by type, oldest first, with the reading that opened a task marked")
    func chartData() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(120, minutesAgo: 60), glucose(45, minutesAgo: 30), glucose(110, minutesAgo: 10),
                                 glucose(300, minutesAgo: 3 * 24 * 60)], pipeline: pipeline)
        let now = Date()
        let data = try await db.chartData(patientID: "p1", from: now - 86_400, to: now + 1)
        let points = try #require(data.series[.glucose])
        // The reading of 3 days ago is outside the 1-day window.
        #expect(points.map(\.value) == [120, 45, 110])
        // 45 mg/dL < 54: a critical low task, opened by that reading; the others opened nothing.
        let task = try #require(try db.tasks(patientID: "p1").first { $0.vital == "glucose" && $0.direction == .low })
        #expect(data.taskMarkers == [points[1].readingID: task.id])
        #expect(try await db.chartData(patientID: "p2", from: now - 86_400, to: now + 1).series.isEmpty)

        // The logbook: newest first, paged, with the window's total.
        let page1 = try await db.logbook(patientID: "p1", from: now - 86_400, to: now + 1, limit: 2)
        #expect(page1.total == 3)
        #expect(page1.readings.map(\.canonicalValue) == [110, 45])
        let page2 = try await db.logbook(patientID: "p1", from: now - 86_400, to: now + 1, limit: 2, offset: 2)
        #expect(page2.readings.map(\.canonicalValue) == [120])
        #expect(try await db.readingRows(patientID: "p1", from: now - 86_400, to: now + 1).map(\.canonicalValue) == [120, 45, 110])
    }

    @Test("the timeline holds task events, notes, time entries and threshold changes with a reason; devices their last reading")
    func timelineAndDevices() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let before = Date()
        let message = glucose(45, minutesAgo: 30)
        let after = Date()
        _ = try await db.ingest([message], pipeline: pipeline)
        let task = try #require(try db.tasks(patientID: "p1").first)
        _ = try db.noteTask(id: task.id, by: "ana", text: "Called her.")
        try db.setThreshold(patientID: "p1", slot: ThresholdSlot(type: .glucose, level: .critical, direction: .low), value: 60,
                            actor: "dr.ng", reason: "order of today")
        let timeline = try await db.patientTimeline(patientID: "p1")
        #expect(timeline.events.map(\.event.event).last == "opened")
        #expect(timeline.events.first?.taskID == task.id)
        #expect(timeline.notes.map(\.note.text) == ["Called her."])
        #expect(timeline.thresholdChanges.map(\.actor) == ["dr.ng"])
        #expect(timeline.thresholdChanges.first?.detail == "glucose critical_low: default -> 60 mg/dL; reason: order of today")
        #expect(try await db.patientTimeline(patientID: "p2").events.isEmpty)
        // A pause of monitoring and its early end are on the timeline, newest first, with who.
        _ = try db.pauseMonitoring(patientID: "p1", through: LocalDate(Date(), in: .gmt).adding(days: 30), reason: "in hospital", actor: "ana")
        _ = try db.resumeMonitoring(patientID: "p1", actor: "ben")
        let changes = try await db.patientTimeline(patientID: "p1").thresholdChanges
        #expect(changes.map(\.action) == ["monitoring.resume", "monitoring.pause", "threshold.set"])
        #expect(changes.map(\.actor) == ["ben", "ana", "dr.ng"])

        let devices = try await db.deviceOverview(patientID: "p1")
        #expect(devices.map(\.device.id) == ["g1"])
        let last = try #require(devices.first?.lastReadingAt)
        // Measured 30 minutes before the message was made, whatever the time the test took since.
        #expect(last >= before.addingTimeInterval(-30 * 60 - 0.001) && last <= after.addingTimeInterval(-30 * 60 + 0.001))
    }

    @Test("chart and task views are in the access log, found by patient")
    func accessByPatient() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(45, minutesAgo: 30)], pipeline: pipeline)
        let task = try #require(try db.tasks(patientID: "p1").first)
        try await db.recordAccess(actor: "ana", action: "chart.viewed", targetType: "patient", targetID: "p1", detail: "window=2w")
        try await db.recordTaskView(actor: "ana", taskID: task.id)
        try await db.recordAccess(actor: "bo", action: "chart.viewed", targetType: "patient", targetID: "p2")
        let p1 = try db.accessEntries(patientID: "p1")
        #expect(p1.map(\.action) == ["chart.viewed", "task.viewed"])
        #expect(p1.last?.targetID == String(task.id))
        #expect(p1.last?.detail == "patient p1")
        #expect(try db.accessEntries(actor: "bo").map(\.targetID) == ["p2"])
    }
}
