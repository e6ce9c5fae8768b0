import Foundation
import VitalsDomain
import VitalsStore

/// How billing progress reads on the patient page (the `patient-billing` partial) and as the compact
/// indicator of a worklist row. Pure: a ``BillingProgress`` in, words and numbers out.
struct BillingProgressView {
    let progress: BillingProgress
    let rules: BillingRules

    /// `ok` (16 days reached or on track), `risk` (a reading is needed within 3 days), `lost` (16 out
    /// of reach this period), or `none` (no device period today).
    var dayState: String {
        guard let d = progress.deviceDays else { return "none" }
        if d.dataDays >= rules.fullSupplyMinimumDays { return "ok" }
        if !d.reachable16 { return "lost" }
        if let by = d.sixteenNeedsDataBy, by.days(since: progress.today) <= 3 { return "risk" }
        return "ok"
    }

    /// `ok` (20 RPM minutes and the interactive communication done), otherwise `open`.
    var minuteState: String { progress.time.rpmMinutes >= 20 && progress.time.interactive ? "ok" : "open" }

    /// The sentence under the days of data.
    var daysText: String {
        guard let d = progress.deviceDays else { return "No device period runs today." }
        let full = rules.fullSupplyMinimumDays
        var text = "Period \(d.period.number): \(d.period.start) to \(d.period.end), \(d.daysLeft) days left after today"
            + (d.todayHasData ? "; today has data" : "; no data yet today") + ". "
        if d.dataDays >= full {
            text += "\(full) days reached (99454)."
        } else if let by = d.sixteenNeedsDataBy {
            text += "\(full) days stay within reach if a reading arrives by \(by); after that day without one, they are out of reach."
        } else if d.reachable2 {
            text += "\(full) days are out of reach this period; \(d.dataDays >= 2 ? "99445 reached (2 days)" : "2 days (99445) still reachable")."
        } else {
            text += "Neither \(full) nor 2 days can be reached this period."
        }
        return text
    }

    /// The codes the month holds so far, e.g. `99457 + 99458 ×1`, or `none yet`.
    static func codes(_ codes: CPTCodes) -> String {
        codes.isEmpty ? "none yet" : codes.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key) ×\($0.value)" : $0.key }
            .joined(separator: " + ")
    }

    /// The values of the `patient-billing` partial's progress.
    var panel: [String: Any] {
        var values: [String: Any] = [
            "dayState": dayState, "daysText": daysText, "rpmMinutes": progress.time.rpmMinutes,
            "nextTarget": progress.nextMinuteTarget, "minuteState": minuteState,
            "interactive": progress.time.interactive, "rpmCodes": Self.codes(progress.managementCodes),
            "ccmMinutes": progress.time.ccmMinutes, "ccmCodes": Self.codes(progress.ccmCodes),
            "month": YearMonth(progress.today).description, "monthDaysLeft": progress.monthDaysLeft,
            "minuteMax": max(progress.nextMinuteTarget, progress.time.rpmMinutes),
        ]
        if let d = progress.deviceDays {
            values["device"] = [
                "dataDays": d.dataDays, "full": rules.fullSupplyMinimumDays, "code": d.codeSoFar ?? "none yet",
                "needBy": d.sixteenNeedsDataBy?.description ?? "",
            ] as [String: Any]
        }
        return values
    }

    /// The compact indicator of a worklist row: `12/16 d · 14/20 min` and whether the interactive
    /// communication is done, with a title that says it in words.
    var row: [String: Any] {
        var parts: [String] = []
        var help: [String] = []
        if let d = progress.deviceDays {
            parts.append("\(d.dataDays)/\(rules.fullSupplyMinimumDays) d")
            help.append("Days of data in period \(d.period.number): \(d.dataDays) of \(rules.fullSupplyMinimumDays)"
                + (d.sixteenNeedsDataBy.map { ", a reading needed by \($0)" } ?? (d.reachable16 ? "" : ", 16 out of reach")))
        }
        parts.append("\(progress.time.rpmMinutes)/\(progress.nextMinuteTarget) min")
        help.append("RPM minutes in \(YearMonth(progress.today)): \(progress.time.rpmMinutes), next threshold \(progress.nextMinuteTarget); "
            + (progress.time.interactive ? "interactive communication done" : "no interactive communication yet"))
        return [
            "text": parts.joined(separator: " · "), "call": progress.time.interactive ? "✆" : "", "dayState": dayState,
            "minuteState": minuteState, "help": help.joined(separator: ". "),
        ]
    }
}

/// The patient page's billing panel (`patient-billing`): progress, the timer and monitoring pauses.
enum PatientBillingPanel {
    /// Adds the values of the `patient-billing` partial to a patient page's values.
    static func fill(_ values: inout [String: Any], patientID: String, workspace: Workspace) async throws {
        let now = workspace.clock()
        let db = workspace.database
        if let progress = try await db.billingProgress(patientID: patientID, rules: workspace.billing, now: now) {
            values["billing"] = BillingProgressView(progress: progress, rules: workspace.billing).panel
        }
        let pauses = try await db.monitoringPauses(patientID: patientID)
        for (key, value) in PauseController.values(pauses, now: now, pages: workspace.pages) { values[key] = value }
        if let running = pauses.first(where: { $0.isActive(at: now) }) {
            // Readings still arrive and are stored: show them, so that nobody thinks the devices stopped.
            let (count, latest) = try await db.readingsSince(patientID: patientID, start: running.startsAt)
            values["pausedReadings"] = [
                "count": count,
                "latest": latest.map { r -> [String: String] in
                    let name = VitalType(rawValue: r.type)?.displayName ?? r.type
                    return ["text": "\(name) \(Observation.format(r.value)) \(r.unit)", "when": workspace.pages.local(r.measuredAt)]
                },
            ] as [String: Any]
        }
        // The timer: the page's serving time bounds the length it may report.
        values["servedAt"] = epochMilliseconds(now)
        values["servedToken"] = TimerController.pageToken(
            csrf: values["csrf"] as? String ?? "", patientID: patientID, servedAt: epochMilliseconds(now))
        values["maxEntryMinutes"] = workspace.billing.maxEntryMinutes
        // This calendar month's entries, in the patient's zone, newest first.
        let zone = try await db.patientRecord(id: patientID).flatMap { TimeZone(identifier: $0.timezone) } ?? .gmt
        let month = YearMonth(LocalDate(now, in: zone))
        let entries = try await db.timeEntriesAsync(
            patientID: patientID, from: month.first.start(in: zone), to: month.last.adding(days: 1).start(in: zone))
        values["timeEntries"] = entries.reversed().map { e -> [String: Any] in
            var entry: [String: Any] = [
                "id": e.id, "when": workspace.pages.local(e.performedAt), "seconds": e.durationSeconds,
                "length": TimeEntry.lengthText(seconds: e.durationSeconds), "program": e.program.rawValue.uppercased(),
                "who": e.performedBy, "activity": e.activity, "timed": e.seconds != nil,
            ]
            if let voids = e.voidsEntryID { entry["state"] = "voids entry \(voids)" } else if e.voided { entry["state"] = "voided" }
            if let m = e.modality { entry["interactive"] = "interactive (\(m.rawValue.replacingOccurrences(of: "_", with: " ")))" }
            return entry
        }
    }
}
