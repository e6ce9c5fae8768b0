import Crypto
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

    /// The token that ties a timer to the page that served it: HMAC-SHA256, keyed with the session's
    /// CSRF token (a secret the server keeps), of the patient id and the serving time (epoch ms),
    /// base64url. The browser cannot move the serving time back without it, and a time entry is
    /// stored once per token (`time_entries.timer_page` is unique), so one page logs one entry.
    static func pageToken(csrf: String, patientID: String, servedAt: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("timer|\(patientID)|\(servedAt)".utf8), using: SymmetricKey(data: Data(csrf.utf8)))
        return SessionToken.base64URL(Data(mac))
    }

    /// What the timer's form sent, checked.
    struct TimerForm {
        var seconds: Int
        var program: CareProgram
        var activity: String
        var modality: InteractionModality?
        /// ``TimerController/pageToken(csrf:patientID:servedAt:)`` of the page that served the timer.
        var page: String

        /// - Parameters:
        ///   - form: the posted fields; `served_at` and `served_token` echo what the page was served with.
        ///   - csrf: the session's CSRF token, the key of the page token.
        ///   - maxMinutes: `billing.max_entry_minutes`.
        /// - Throws: ``FormError`` for a page token that does not match the serving time (a changed
        ///   form, or a page from another session), a length that is not a whole number of seconds from
        ///   1 to `maxMinutes` × 60, longer than the page has been open, or an unknown program or modality.
        init(_ form: [String: String], patientID: String, csrf: String, now: Date, maxMinutes: Int) throws {
            guard let servedMs = form["served_at"].flatMap({ Int64($0) }), let sent = form["served_token"],
                  SessionToken.equal(sent, TimerController.pageToken(csrf: csrf, patientID: patientID, servedAt: servedMs)) else {
                throw FormError("This timer could not be checked against the page that started it. Reload the page to start a new timer. Nothing was logged.")
            }
            guard let seconds = form["seconds"].flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }), seconds >= 1 else {
                throw FormError("The timer has not counted any time (it needs JavaScript and a visible page). Nothing was logged.")
            }
            guard seconds <= maxMinutes * 60 else {
                throw FormError("The timer says \(seconds / 60) minutes, more than one entry may hold (\(maxMinutes)). Log each piece of work as its own entry. Nothing was logged.")
            }
            // The page cannot have counted longer than it has been open.
            guard Double(seconds) <= now.timeIntervalSince(dateFromEpochMilliseconds(servedMs)) + TimerController.slackSeconds else {
                throw FormError("The timer says more time than the page has been open. Nothing was logged.")
            }
            page = sent
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
            let form = try TimerForm(context.form, patientID: id, csrf: context.session?.csrfToken ?? "", now: now,
                                     maxMinutes: workspace.billing.maxEntryMinutes)
            var entry = NewTimeEntry(
                patientID: id, program: form.program, seconds: form.seconds, end: now, performedBy: user.username,
                activity: form.activity, modality: form.modality, maxMinutes: workspace.billing.maxEntryMinutes)
            entry.timerPage = form.page
            try await workspace.database.recordTime(entry)
        } catch let error as FormError {
            return try await patients.render(id, context: context, error: error.message, status: .badRequest)
        } catch let error as BillingError {
            return try await patients.render(id, context: context, error: error.description.prefixCapitalized + ". Nothing was logged.",
                                             status: .badRequest)
        }
        return .redirect(to: "/patients/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)?done=saved", type: .normal)
    }
}
