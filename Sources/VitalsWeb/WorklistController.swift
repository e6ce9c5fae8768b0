import Foundation
import Hummingbird
import VitalsConfig
import VitalsDomain
import ServiceLifecycle
import VitalsStore

/// The worklist: tabs Mine, Unassigned, Team, Routine (and Resolved), kept live by server-sent events.
struct WorklistController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("worklist", use: page)
        group.get("worklist/rows", use: rows)
        group.get("events", use: events)
    }

    /// Tab labels and their keyboard keys.
    static let tabs: [(WorklistTab, String)] = [
        (.mine, "Mine"), (.unassigned, "Unassigned"), (.team, "Team"), (.routine, "Routine"), (.resolved, "Resolved"),
    ]

    /// The values of the worklist (tabs, rows, pager) for the request's tab and page.
    private func values(_ request: Request, context: Context) async throws -> [String: Any] {
        let user = try context.user()
        let q = request.uri.queryParameters
        let tab = q.get("tab").flatMap(WorklistTab.init(rawValue:)) ?? .mine
        let pageNumber = WorklistPage.clamp(q.get("page").flatMap { Int($0) } ?? 1)
        let now = workspace.clock()
        let cursor = try await workspace.database.worklistCursor()
        let window = SparklineWindow()
        var values = workspace.pageValues(context, title: "Worklist", nav: "worklist")
        let billable = q.get("sort") == "billable"
        let page = try await workspace.database.worklist(
            tab: tab, username: user.username, page: pageNumber, pageSize: workspace.settings.pageSize, window: window, now: now,
            billable: billable ? workspace.billing : nil, role: user.role.rawValue)
        let progress = try await workspace.database.billingProgress(
            patientIDs: Set(page.entries.map(\.task.patientID)), rules: workspace.billing, now: now)
        let sortQuery = billable ? "&sort=billable" : ""
        values["sortQuery"] = sortQuery
        values["sorts"] = [("", "Priority"), ("billable", "Needs a reading or a call to stay billable")].map {
            ["query": "/worklist?tab=\(tab.rawValue)" + ($0.0.isEmpty ? "" : "&sort=\($0.0)"), "label": $0.1, "current": billable == !$0.0.isEmpty] as [String: Any]
        }
        values["live"] = "worklist"
        values["cursor"] = "\(cursor.taskEvent).\(cursor.audit)"
        values["openCritical"] = page.openCritical
        values["criticalText"] = page.openCritical == 0
            ? "No critical task waits for you" : "\(page.openCritical) critical waiting for acknowledgement"
        values["tabs"] = Self.tabs.enumerated().map { index, tabAndLabel -> [String: Any] in
            let (t, label) = tabAndLabel
            var item: [String: Any] = ["id": t.rawValue, "label": label, "key": index + 1, "current": t == tab]
            if let count = page.counts[t] {
                item["count"] = count
                item["hasCount"] = true
            }
            return item
        }
        values["rows"] = page.entries.map { entry -> [String: Any] in
            var row = TaskPresentation(entry: entry, thresholds: workspace.thresholds, window: window, now: now).row(pages: workspace.pages)
            if let p = progress[entry.task.patientID] { row["billing"] = BillingProgressView(progress: p, rules: workspace.billing).row }
            if entry.task.status == .open, let to = entry.task.escalatedTo, to == user.username || to == "role:" + user.role.rawValue {
                let badge = ["kind": "escalated", "label": "escalated to you",
                             "help": "Nobody acknowledged this critical task in time: the escalation names \(to == user.username ? "you" : "your role")."]
                row["badges"] = [badge] + (row["badges"] as? [[String: String]] ?? [])
            }
            return row
        }
        values["emptyText"] = switch tab {
        case .mine: "Nothing is yours right now. New tasks of your patients land here; see Unassigned for tasks nobody has."
        case .unassigned: "Every clinical task has an owner."
        case .team: "The team has no unresolved clinical task."
        case .routine: "No routine task (no data, days of data, device) is waiting."
        case .resolved: "No task has been resolved yet."
        }
        let pages = max(1, (page.total + page.pageSize - 1) / page.pageSize)
        if pages > 1 {
            var pager: [String: Any] = ["page": pageNumber, "pages": pages, "total": page.total]
            if pageNumber > 1 { pager["previous"] = "/worklist?tab=\(tab.rawValue)\(sortQuery)&page=\(pageNumber - 1)" }
            if pageNumber < pages { pager["next"] = "/worklist?tab=\(tab.rawValue)\(sortQuery)&page=\(pageNumber + 1)" }
            values["pager"] = pager
        }
        return values
    }

    @Sendable func page(_ request: Request, context: Context) async throws -> Response {
        workspace.pages.render("worklist", try await values(request, context: context))
    }

    /// The worklist section alone, fetched by the page's script when the events say something changed.
    @Sendable func rows(_ request: Request, context: Context) async throws -> Response {
        var values = try await values(request, context: context)
        values.removeValue(forKey: "user")
        return workspace.pages.render("worklist-fragment", values)
    }

    /// Server-sent events: `tasks` whenever a task event or an audit entry was written (by this daemon,
    /// the CLI or another process: the database is polled by id every 300 ms), `signed-out` when the
    /// session ends. The stream does not extend the session: an open worklist signs out when idle.
    @Sendable func events(_ request: Request, context: Context) async throws -> Response {
        guard let hash = context.sessionTokenHash else { throw HTTPError(.unauthorized) }
        let database = workspace.database
        let streams = workspace.streams
        let lifetime = workspace.lifetime
        let clock = workspace.clock
        let since = request.uri.queryParameters.get("since")
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store"],
            body: ResponseBody { writer in
                // Claimed and given back here, where the stream runs, so that no path leaves a claim behind.
                guard await streams.open(session: hash) else {
                    // More open streams than a person has tabs: this one ends, and the browser waits a minute.
                    try await writer.write(ByteBuffer(string: "retry: 60000\n\nevent: too-many\ndata: {}\n\n"))
                    try await writer.finish(nil)
                    return
                }
                do {
                    var last = since ?? ""
                    var ticks = 0
                    try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        let text = try await streams.cursor()
                        if text != last {
                            if !last.isEmpty {
                                try await writer.write(ByteBuffer(string: "event: tasks\ndata: \(text)\n\n"))
                            }
                            last = text
                        }
                        if ticks % 16 == 15 {
                            // Every ~5 s: is the session still alive? Then a comment keeps proxies from closing the stream.
                            if case .failure = try await database.session(tokenHash: hash, lifetime: lifetime, now: clock(), touch: false) {
                                try await writer.write(ByteBuffer(string: "event: signed-out\ndata: {}\n\n"))
                                break
                            }
                            try await writer.write(ByteBuffer(string: ": alive\n\n"))
                        }
                        ticks += 1
                        try? await Task.sleep(for: .milliseconds(300))
                    }
                    try await writer.finish(nil)
                } catch {
                    await streams.close(session: hash)
                    throw error
                }
                await streams.close(session: hash)
            })
    }
}
