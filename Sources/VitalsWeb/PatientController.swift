import Foundation
import HTTPTypes
import Hummingbird
import VitalsDomain
import VitalsStore

/// Patients and caseloads: the list (mine, without a care manager, all), a patient's chart (its
/// sections from ``ChartController``), and the form that changes their name, date of birth, phone and
/// care manager (care managers and admins).
struct PatientController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("patients", use: list)
        group.get("patients/:id", use: show)
        group.post("patients/:id", use: update)
        ChartController(workspace: workspace).addRoutes(to: group)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let show = request.uri.queryParameters.get("show") ?? (user.role == .careManager ? "mine" : "all")
        let entries = try await workspace.database.caseload(
            careManager: show == "mine" ? user.username : nil, unassignedOnly: show == "unassigned")
        var values = workspace.pageValues(context, title: "Patients", nav: "patients")
        values["filters"] = [("mine", "My caseload"), ("unassigned", "Without a care manager"), ("all", "All patients")].map {
            ["id": $0.0, "label": $0.1, "current": $0.0 == show] as [String: Any]
        }
        // The list shows names, dates of birth and phone numbers: an access, with its filter and size.
        try await workspace.database.recordAccess(
            actor: user.username, action: "patients.listed", targetType: "patients", detail: "show=\(Self.filterName(show)) rows=\(entries.count)",
            at: workspace.clock())
        values["rows"] = entries.map { e -> [String: Any] in
            [
                "id": e.patient.id, "name": e.patient.name ?? e.patient.id, "birth": e.patient.birthDate ?? "", "phone": e.patient.phone ?? "",
                "careManager": e.careManagerName ?? e.patient.careManager ?? "—",
                "programs": e.patient.programs.map(\.rawValue).joined(separator: ", "), "openTasks": e.unresolvedTasks,
            ]
        }
        return workspace.pages.render("patients", values)
    }

    /// The list's filter as logged: one of the three names, never text from the request.
    static func filterName(_ show: String) -> String {
        ["mine", "unassigned"].contains(show) ? show : "all"
    }

    /// Messages after a successful change, by the `done` query value (never text from the request).
    static let done = ["saved": "Saved.", "limits": "Changed; the change is in the audit trail and on the timeline."]

    /// The patient chart; the view is recorded in the access log (`chart.viewed`).
    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        let query = request.uri.queryParameters
        let window = ChartWindow(query: query.get("window"))
        let response = try await render(
            id, context: context, window: window, logbookPage: WorklistPage.clamp(query.get("log").flatMap { Int($0) } ?? 1),
            flash: query.get("done").flatMap { Self.done[$0] })
        return response
    }

    func render(
        _ id: String, context: Context, window: ChartWindow = .twoWeeks, logbookPage: Int = 1, flash: String? = nil,
        error: String? = nil, status: HTTPResponse.Status = .ok
    ) async throws -> Response {
        let user = try context.user()
        let db = workspace.database
        guard let patient = try await db.patientRecord(id: id) else { throw HTTPError(.notFound) }
        async let usersLookup = db.activeUsers()
        async let tasksLookup = db.caseloadTasks(patientID: id)
        let (users, tasks) = try await (usersLookup, tasksLookup)
        let names = Dictionary(users.map { ($0.username, $0.displayName) }, uniquingKeysWith: { a, _ in a })
        var values = try await ChartController(workspace: workspace).values(
            patient: patient, window: window, logbookPage: logbookPage, user: user, names: names)
        values.merge(workspace.pageValues(context, title: patient.name ?? patient.id, nav: "patients"), uniquingKeysWith: { _, page in page })
        values["id"] = patient.id
        values["name"] = patient.name ?? patient.id
        if let birth = patient.birthDate { values["birth"] = TaskController.birthText(birth, now: workspace.clock(), zone: workspace.pages.timeZone) }
        if let phone = patient.phone { values["phone"] = phone }
        values["careManager"] = patient.careManager.map { names[$0] ?? $0 } ?? "—"
        values["programs"] = patient.programs.map(\.rawValue).joined(separator: ", ")
        values["timezone"] = patient.timezone
        let episodes = try await workspace.blocking { try db.episodes(patientID: id) }
        values["episodes"] = episodes.sorted { $0.startDate > $1.startDate }.prefix(2).map { e in
            (e.endDate.map { "ended \($0)" } ?? "active") + " · consent \(e.startDate) · billed by \(e.billingPractitioner)"
        }
        values["tasks"] = tasks.map { t -> [String: Any] in
            [
                "id": t.id, "priority": t.priority.rawValue, "priorityLabel": TaskPresentation.priorityLabel(t.priority),
                "condition": TaskPresentation.condition(vital: t.vital, direction: t.direction),
                "statusLabel": TaskPresentation.statusLabel(t.status), "owner": t.owner.map { names[$0] ?? $0 } ?? "Unassigned",
            ]
        }
        values["canEdit"] = user.role.managesCaseloads
        values["nameValue"] = patient.name ?? ""
        values["birthValue"] = patient.birthDate ?? ""
        values["phoneValue"] = patient.phone ?? ""
        values["managers"] = [["username": "", "name": "None", "selected": patient.careManager == nil] as [String: Any]]
            + users.filter(\.role.managesCaseloads).map {
                ["username": $0.username, "name": $0.displayName, "selected": $0.username == patient.careManager] as [String: Any]
            }
        if let flash { values["flash"] = flash }
        if let error { values["error"] = error }
        try await PatientBillingPanel.fill(&values, patientID: patient.id, workspace: workspace)
        // Every rendering of the chart is an access, also the one that shows a refused change again.
        try await db.recordAccess(
            actor: user.username, action: "chart.viewed", targetType: "patient", targetID: patient.id,
            detail: "window=\(window.rawValue)" + (error == nil ? "" : " after a refused change"), at: workspace.clock())
        return workspace.pages.render("patient", values, status: status)
    }

    @Sendable func update(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        guard user.role.managesCaseloads else { throw HTTPError(.forbidden, message: "Only care managers and admins change patient details.") }
        let id = context.parameters.get("id") ?? ""
        func field(_ name: String) -> String? {
            context.form[name].flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        }
        // The form always sends all four fields (an empty one clears its value); a request without
        // one of them is not the form, and would clear data nobody meant to change.
        let fields = ["name", "birth_date", "phone", "care_manager"]
        if let missing = fields.first(where: { context.form[$0] == nil }) {
            return try await render(id, context: context, error: "The form is incomplete (no \(missing) field). Nothing was changed.",
                                    status: .badRequest)
        }
        do {
            try await workspace.database.updatePatientDetails(
                patientID: id, name: field("name"), birthDate: field("birth_date"), phone: field("phone"),
                careManager: field("care_manager"), actor: user.username, at: workspace.clock())
        } catch let error as EnrollmentError {
            if try await workspace.database.patientRecord(id: id) == nil { throw HTTPError(.notFound) }
            return try await render(id, context: context, error: error.description.prefixCapitalized + ". Nothing was changed.",
                                    status: .badRequest)
        }
        return .redirect(to: "/patients/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)?done=saved", type: .normal)
    }
}
