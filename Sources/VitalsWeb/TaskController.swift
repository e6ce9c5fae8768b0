import Foundation
import HTTPTypes
import Hummingbird
import VitalsDomain
import VitalsStore

/// The task page and its actions: claim, assign, acknowledge, resolve, reopen, add a note. Each is a
/// plain form post (CSRF-checked by the session middleware) recorded under the signed-in user; on
/// success it redirects back to the task page, on a conflict it shows the page with what happened.
struct TaskController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("tasks/:id", use: show)
        group.post("tasks/:id/claim", use: claim)
        group.post("tasks/:id/assign", use: assign)
        group.post("tasks/:id/acknowledge", use: acknowledge)
        group.post("tasks/:id/resolve", use: resolve)
        group.post("tasks/:id/reopen", use: reopen)
        group.post("tasks/:id/notes", use: note)
    }

    /// Messages after a successful action, by the `done` query value (never text from the request).
    static let done: [String: String] = [
        "claim": "You claimed this task.", "assign": "The task was assigned.", "acknowledge": "Acknowledged.",
        "resolve": "Resolved.", "reopen": "Reopened: the task is back on the worklist.", "note": "Note added.",
    ]

    private func taskID(_ context: Context) throws -> Int64 {
        guard let id = context.parameters.get("id", as: Int64.self) else { throw HTTPError(.notFound) }
        return id
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = try taskID(context)
        return try await render(id, context: context, flash: request.uri.queryParameters.get("done").flatMap { Self.done[$0] })
    }

    /// The task page, with a message after an action or an error that refused one.
    func render(
        _ id: Int64, context: Context, flash: String? = nil, error: String? = nil, status: HTTPResponse.Status = .ok
    ) async throws -> Response {
        let user = try context.user()
        let db = workspace.database
        let now = workspace.clock()
        let window = SparklineWindow()
        guard let entry = try await db.worklistEntry(taskID: id, window: window, now: now) else { throw HTTPError(.notFound) }
        let task = entry.task
        async let patientLookup = db.patientRecord(id: task.patientID)
        async let usersLookup = db.activeUsers()
        async let notesLookup = db.taskNotes(taskID: id)
        async let eventsLookup = db.taskHistory(taskID: id)
        async let timeLookup = db.timeEntries(taskID: id)
        let (patient, users, notes, events, time) = try await (patientLookup, usersLookup, notesLookup, eventsLookup, timeLookup)
        let names = Dictionary(users.map { ($0.username, $0.displayName) }, uniquingKeysWith: { a, _ in a })
        func who(_ username: String?) -> String { username.map { names[$0] ?? $0 } ?? "Unassigned" }

        let presentation = TaskPresentation(entry: entry, thresholds: workspace.thresholds, window: window, now: now)
        let title = TaskPresentation.condition(vital: task.vital, direction: task.direction) + " · " + (entry.patientName ?? task.patientID)
        var values = presentation.row(pages: workspace.pages).merging(
            workspace.pageValues(context, title: title, nav: "worklist"), uniquingKeysWith: { _, page in page })
        values["live"] = "task"
        values["status"] = task.status.rawValue
        values["reason"] = task.reason
        values["sparkline"] = presentation.sparkline(width: 336, height: 72) ?? ""
        values["owner"] = who(task.owner)
        values["careManager"] = patient?.careManager.map(who) ?? "none"
        values["programs"] = (patient?.programs ?? []).map(\.rawValue).joined(separator: ", ")
        if let birth = patient?.birthDate { values["birth"] = Self.birthText(birth, now: now, zone: workspace.pages.timeZone) }
        if let phone = patient?.phone {
            values["phone"] = phone
            values["phoneLink"] = phone.filter { $0.isNumber || $0 == "+" }
        }
        if let at = task.acknowledgedAt {
            values["acknowledged"] = "\(workspace.pages.local(at)) by \(who(task.acknowledgedBy))"
        }
        if let at = task.resolvedAt { values["resolved"] = "\(workspace.pages.local(at)) by \(who(task.resolvedBy))" }
        if let d = task.disposition { values["disposition"] = d.label }
        values.removeValue(forKey: "confirmation")
        if let text = TaskPresentation.remeasurement(task.confirmation) { values["confirmation"] = text }
        if let flash { values["flash"] = flash }
        if let error { values["error"] = error }

        let resolved = task.status == .resolved
        values["canClaim"] = !resolved && task.owner != user.username
        values["canAssign"] = !resolved
        values["canAcknowledge"] = task.status == .open
        values["canResolve"] = !resolved
        values["canReopen"] = resolved
        values["assignees"] = [["username": "", "name": "Unassigned", "selected": task.owner == nil] as [String: Any]]
            + users.map { ["username": $0.username, "name": "\($0.displayName) (\($0.role.rawValue.replacingOccurrences(of: "_", with: " ")))",
                           "selected": $0.username == task.owner] as [String: Any] }
        values["dispositions"] = TaskDisposition.allCases.map { ["value": $0.rawValue, "label": $0.label] }
        values["history"] = Self.history(events: events, notes: notes, who: who, pages: workspace.pages)
        values["timeEntries"] = time.filter(\.isValid).map { e in
            "\(workspace.pages.local(e.performedAt)): \(e.minutes) min \(e.program.rawValue.uppercased()) by \(who(e.performedBy))"
                + (e.modality.map { ", interactive (\($0.rawValue.replacingOccurrences(of: "_", with: " ")))" } ?? "") + " — \(e.activity)"
        }
        // Every rendering of the task page is an access, also the one that shows a refused action again.
        try await db.recordTaskView(actor: user.username, taskID: id, at: now)
        return workspace.pages.render("task", values, status: status)
    }

    /// `1948-03-02 (age 78)`.
    static func birthText(_ birth: String, now: Date, zone: TimeZone) -> String {
        guard let date = LocalDate(birth) else { return birth }
        let today = LocalDate(now, in: zone)
        let age = today.year - date.year - ((today.month, today.day) < (date.month, date.day) ? 1 : 0)
        return "\(birth) (age \(age))"
    }

    /// Task events (the rules' and people's, ownership included) and notes, newest first.
    static func history(
        events: [TaskEvent], notes: [TaskNote], who: (String?) -> String, pages: Pages
    ) -> [[String: Any]] {
        var items: [(Date, Int, [String: Any])] = []
        func add(_ at: Date, _ order: Int, kind: String, actor: String, what: String, text: String? = nil) {
            var item: [String: Any] = ["iso": Pages.iso(at), "when": pages.local(at), "who": actor == "vitalsd" ? "vitalsd" : who(actor),
                                       "what": what, "kind": kind]
            if let text { item["text"] = text }
            items.append((at, order, item))
        }
        for (i, e) in events.enumerated() {
            add(e.at, i, kind: e.event, actor: e.actor, what: eventText(e, who: who))
        }
        for n in notes { add(n.at, 100_000 + Int(n.id ?? 0), kind: "note", actor: n.author, what: "wrote a note", text: n.text) }
        return items.sorted { ($0.0, $0.1) > ($1.0, $1.1) }.map(\.2)
    }

    /// What a task event says in a history: `acknowledged`, `assigned the task to Bo Chen, RN`, ….
    static func eventText(_ e: TaskEvent, who: (String?) -> String) -> String {
        switch e.event {
        case "opened": return "opened the task (\(e.detail ?? ""))"
        case "updated": return "added an occurrence"
        case "priority_raised": return "raised the priority to critical"
        case "acknowledged": return "acknowledged"
        case "resolved":
            return e.detail.flatMap(TaskDisposition.init(rawValue:)).map { "resolved: \($0.label)" } ?? "resolved"
        case "assigned":
            return e.detail == e.actor ? "claimed the task"
                : e.detail == "none" ? "put the task back in Unassigned" : "assigned the task to \(who(e.detail))"
        case "reopened": return "reopened the task"
        case "escalated": return "escalated: not acknowledged in time (\(e.detail ?? ""))"
        case "recovered": return "readings back within limits"
        case "confirmation": return "re-measurement: \(TaskPresentation.confirmation(e.detail.flatMap(Confirmation.init(rawValue:))) ?? "")"
        case "data_stale": return "marked the data stale: the devices went silent"
        default: return e.event
        }
    }

    // MARK: Actions

    private func version(_ context: Context) throws -> Int {
        guard let v = context.form["version"].flatMap({ Int($0) }) else {
            throw HTTPError(.badRequest, message: "The form is missing the task's version. Reload the page and try again.")
        }
        return v
    }

    /// Runs an action; on success redirects to the task page with its message, on a refusal shows the
    /// page with the reason (409 for a conflict, 400 for bad input).
    private func act(_ context: Context, done: String, _ action: (WorkspaceUser, Int64, Date) async throws -> Void) async throws -> Response {
        let user = try context.user()
        let id = try taskID(context)
        do {
            try await action(user, id, workspace.clock())
        } catch let error as TaskOwnershipError {
            if error.code == .notFound { throw HTTPError(.notFound) }
            let status: HTTPResponse.Status = error.code == .invalidInput || error.code == .unknownUser ? .badRequest : .conflict
            let message = error.code == .versionConflict && error.ownerName != nil
                ? "Already claimed by \(error.ownerName!). Nothing was changed." : error.description.prefixCapitalized + "."
            return try await render(id, context: context, error: message, status: status)
        } catch let error as TaskError {
            return try await render(id, context: context, error: error.description.prefixCapitalized + ".", status: .conflict)
        } catch let error as BillingError {
            return try await render(id, context: context, error: "Time not logged: \(error.description). Nothing was changed.",
                                    status: .badRequest)
        } catch let error as FormError {
            return try await render(id, context: context, error: error.message, status: .badRequest)
        }
        return .redirect(to: "/tasks/\(id)?done=\(done)", type: .normal)
    }

    @Sendable func claim(_ request: Request, context: Context) async throws -> Response {
        let expected = try version(context)
        return try await act(context, done: "claim") { user, id, now in
            try await workspace.database.claimTask(id: id, expectedVersion: expected, by: user.username, at: now)
        }
    }

    @Sendable func assign(_ request: Request, context: Context) async throws -> Response {
        let expected = try version(context)
        let owner = context.form["owner"].flatMap { $0.isEmpty ? nil : $0 }
        return try await act(context, done: "assign") { user, id, now in
            try await workspace.database.assignTask(id: id, to: owner, expectedVersion: expected, by: user.username, at: now)
        }
    }

    @Sendable func acknowledge(_ request: Request, context: Context) async throws -> Response {
        try await act(context, done: "acknowledge") { user, id, now in
            let time = try TimeForm(context.form).entry(taskID: id, user: user.username, at: now, action: "acknowledged")
            try await workspace.database.acknowledge(taskID: id, by: user.username, note: context.form["note"], time: time, at: now)
        }
    }

    @Sendable func resolve(_ request: Request, context: Context) async throws -> Response {
        try await act(context, done: "resolve") { user, id, now in
            guard let disposition = context.form["disposition"].flatMap(TaskDisposition.init(rawValue:)) else {
                throw FormError("Choose a disposition: why the task is resolved. Nothing was changed.")
            }
            let time = try TimeForm(context.form).entry(taskID: id, user: user.username, at: now, action: "resolved")
            try await workspace.database.resolve(
                taskID: id, by: user.username, disposition: disposition, note: context.form["note"] ?? "", time: time, at: now)
        }
    }

    @Sendable func reopen(_ request: Request, context: Context) async throws -> Response {
        let expected = try version(context)
        return try await act(context, done: "reopen") { user, id, now in
            try await workspace.database.reopenTask(id: id, expectedVersion: expected, by: user.username, note: context.form["note"] ?? "", at: now)
        }
    }

    @Sendable func note(_ request: Request, context: Context) async throws -> Response {
        try await act(context, done: "note") { user, id, now in
            try await workspace.database.addTaskNote(taskID: id, author: user.username, text: context.form["note"] ?? "", at: now)
        }
    }
}

/// A form value a person must correct; the message says how.
struct FormError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The "time spent" fields of the acknowledge and resolve forms.
struct TimeForm {
    var minutes: String
    var program: String
    var activity: String
    var interactive: Bool
    var modality: String

    init(_ form: [String: String]) {
        minutes = form["minutes"]?.trimmingCharacters(in: .whitespaces) ?? ""
        program = form["program"] ?? "rpm"
        activity = form["activity"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        interactive = form["interactive"] != nil
        modality = form["modality"] ?? ""
    }

    /// The time entry to log with the action, or nil when no minutes were entered. Choosing how the
    /// communication took place marks it interactive.
    /// - Throws: ``FormError`` for minutes that are not 1–600, an unknown program, or "interactive"
    ///   ticked without saying how.
    func entry(taskID: Int64, user: String, at: Date, action: String) throws -> NewTimeEntry? {
        guard !minutes.isEmpty else {
            if interactive || !modality.isEmpty { throw FormError("Enter the minutes spent, or leave the time fields empty. Nothing was changed.") }
            return nil
        }
        guard let m = Int(minutes), (1...600).contains(m) else {
            throw FormError("Minutes must be a whole number from 1 to 600. Nothing was changed.")
        }
        guard let program = CareProgram(rawValue: program) else { throw FormError("Choose RPM or CCM. Nothing was changed.") }
        let modality = InteractionModality(rawValue: modality)
        if interactive && modality == nil {
            throw FormError("Say how the interactive communication took place (audio, video or messaging). Nothing was changed.")
        }
        return NewTimeEntry(
            patientID: "", program: program, minutes: m, performedAt: at, performedBy: user,
            activity: activity.isEmpty ? "Task \(taskID) \(action)" : String(activity.prefix(200)), modality: modality, taskID: taskID)
    }
}

extension String {
    /// The text with its first letter upper-cased.
    var prefixCapitalized: String { prefix(1).uppercased() + dropFirst() }
}
