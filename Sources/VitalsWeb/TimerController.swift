import Foundation
import Hummingbird
import VitalsDomain
import VitalsStore

/// The timer of the patient page: it runs in the browser while the page is open and visible
/// (app.js), and Stop posts the measured seconds here, which become a time entry through
/// ``AppDatabase/logTime(_:)`` (append-only; a wrong entry is voided, as in the CLI).
struct TimerController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.post("patients/:id/time", use: stop)
    }

    /// Seconds the browser may add to the time since the page was served (a slow network, a clock
    /// read a moment after the page arrived).
    static let slackSeconds = 5.0

    /// What the timer's form sent, checked.
    struct TimerForm {
        var seconds: Int
        var program: CareProgram
        var activity: String
        var modality: InteractionModality?

        /// - Parameters:
        ///   - servedAt: when the page holding the timer was served, as the form echoes it.
        ///   - maxMinutes: `billing.max_entry_minutes`.
        /// - Throws: ``FormError`` for a length that is not a whole number of seconds from 1 to
        ///   `maxMinutes` × 60, longer than the page has been open, or an unknown program or modality.
        init(_ form: [String: String], now: Date, maxMinutes: Int) throws {
            guard let seconds = form["seconds"].flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }), seconds >= 1 else {
                throw FormError("The timer has not counted any time (it needs JavaScript and a visible page). Nothing was logged.")
            }
            guard seconds <= maxMinutes * 60 else {
                throw FormError("The timer says \(seconds / 60) minutes, more than one entry may hold (\(maxMinutes)). Log each piece of work as its own entry. Nothing was logged.")
            }
            // The page cannot have counted longer than it has been open.
            if let served = form["served_at"].flatMap({ Int64($0) }).map(dateFromEpochMilliseconds),
               Double(seconds) > now.timeIntervalSince(served) + TimerController.slackSeconds {
                throw FormError("The timer says more time than the page has been open. Nothing was logged.")
            }
            guard let program = CareProgram(rawValue: form["program"] ?? "") else { throw FormError("Choose RPM or CCM. Nothing was logged.") }
            let modalityText = form["modality"] ?? ""
            let modality = InteractionModality(rawValue: modalityText)
            guard modalityText.isEmpty || modality != nil else { throw FormError("Choose how the communication took place. Nothing was logged.") }
            let activity = (form["activity"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            self.seconds = seconds
            self.program = program
            self.activity = activity.isEmpty ? "patient chart review" : String(activity.prefix(200))
            self.modality = modality
        }
    }

    @Sendable func stop(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let id = context.parameters.get("id") ?? ""
        guard try await workspace.database.patientRecord(id: id) != nil else { throw HTTPError(.notFound) }
        let now = workspace.clock()
        let patients = PatientController(workspace: workspace)
        do {
            let form = try TimerForm(context.form, now: now, maxMinutes: workspace.billing.maxEntryMinutes)
            let entry = NewTimeEntry(
                patientID: id, program: form.program, seconds: form.seconds, end: now, performedBy: user.username,
                activity: form.activity, modality: form.modality, maxMinutes: workspace.billing.maxEntryMinutes)
            try await workspace.database.recordTime(entry)
        } catch let error as FormError {
            return try await patients.render(id, context: context, error: error.message, status: .badRequest)
        } catch let error as BillingError {
            return try await patients.render(id, context: context, error: error.description.prefixCapitalized + ". Nothing was logged.",
                                             status: .badRequest)
        }
        return .redirect(to: "/patients/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)?done=saved", type: .normal)
    }

    /// `1 min 5 s`, `45 s`, `12 min`.
    static func duration(seconds: Int) -> String {
        if seconds < 60 { return "\(seconds) s" }
        return seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds / 60) min \(seconds % 60) s"
    }
}
