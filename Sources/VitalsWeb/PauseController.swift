import Foundation
import Hummingbird
import VitalsDomain
import VitalsStore

/// Pausing and resuming a patient's monitoring from the patient page (any signed-in user: care
/// managers and clinicians both learn of hospital stays). Recorded in the audit trail under the user.
struct PauseController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.post("patients/:id/pause", use: pause)
        group.post("patients/:id/resume", use: resume)
    }

    @Sendable func pause(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let id = context.parameters.get("id") ?? ""
        guard try await workspace.database.patientRecord(id: id) != nil else { throw HTTPError(.notFound) }
        do {
            guard let until = LocalDate(context.form["until"] ?? "") else {
                throw MonitoringPauseError("choose the last day of the pause")
            }
            try await workspace.database.pauseMonitoringAsync(
                patientID: id, through: until, reason: context.form["reason"] ?? "", actor: user.username, now: workspace.clock())
        } catch let error as MonitoringPauseError {
            return try await PatientController(workspace: workspace).render(
                id, context: context, error: error.description.prefixCapitalized + ". Nothing was changed.", status: .badRequest)
        }
        return Self.backToPatient(id)
    }

    @Sendable func resume(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let id = context.parameters.get("id") ?? ""
        guard try await workspace.database.patientRecord(id: id) != nil else { throw HTTPError(.notFound) }
        do {
            try await workspace.database.resumeMonitoringAsync(patientID: id, actor: user.username, now: workspace.clock())
        } catch let error as MonitoringPauseError {
            return try await PatientController(workspace: workspace).render(
                id, context: context, error: error.description.prefixCapitalized + ". Nothing was changed.", status: .badRequest)
        }
        return Self.backToPatient(id)
    }

    static func backToPatient(_ id: String) -> Response {
        .redirect(to: "/patients/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)?done=saved", type: .normal)
    }

    /// The values of the pause part of the `patient-billing` partial: the running pause, the form,
    /// and the history (each pause with its start and end).
    static func values(_ pauses: [MonitoringPause], now: Date, pages: Pages) -> [String: Any] {
        var values: [String: Any] = [:]
        if let running = pauses.first(where: { $0.isActive(at: now) }) {
            values["paused"] = ["until": running.endDate.description, "reason": running.reason, "by": running.createdBy] as [String: Any]
        }
        values["pauses"] = pauses.map { p -> [String: Any] in
            var item: [String: Any] = [
                "from": pages.local(p.startsAt), "until": p.endDate.description, "reason": p.reason, "by": p.createdBy,
            ]
            if let closed = p.closedAt, let by = p.closedBy, by != "expired" {
                item["ended"] = "resumed \(pages.local(closed)) by \(by)"
            } else if p.effectiveEnd <= now {
                item["ended"] = "ended \(pages.local(p.effectiveEnd))"
            }
            return item
        }
        return values
    }
}
