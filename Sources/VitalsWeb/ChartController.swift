import Foundation
import HTTPTypes
import Hummingbird
import NIOPosix
import VitalsDomain
import VitalsStore

/// The patient chart: one window (1w/2w/1m/3m) driving the charts of each vital, their statistics and
/// the logbook; the devices, the timeline, and the limits and trend rules in force, which a clinician
/// or an admin changes here with a reason (audited as `vitalsd threshold set` and `threshold rule` are).
struct ChartController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    /// Logbook rows per page.
    static let logbookPageSize = 100

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("patients/:id/readings.csv", use: csv)
        group.post("patients/:id/thresholds", use: changeLimit)
        group.post("patients/:id/rules", use: changeRule)
    }

    /// May change a patient's limits and trend rules.
    static func changesLimits(_ role: UserRole) -> Bool { role == .clinician || role == .admin }

    // MARK: The chart's values

    /// The values of the chart's sections for the `patient` template, read concurrently: the charts
    /// and statistics (2 queries), a logbook page, the devices, the timeline.
    /// - Parameters:
    ///   - names: user name → display name.
    func values(
        patient: Patient, window: ChartWindow, logbookPage: Int, user: WorkspaceUser, names: [String: String]
    ) async throws -> [String: Any] {
        let db = workspace.database
        let now = workspace.clock()
        let start = now.addingTimeInterval(-Double(window.days) * 86_400)
        let end = now.addingTimeInterval(1)
        let page = WorklistPage.clamp(logbookPage)
        let size = Self.logbookPageSize
        // One row before the page (the previous page's last) bounds the page's device events.
        let offset = (page - 1) * size
        async let chartLookup = db.chartData(patientID: patient.id, from: start, to: end)
        async let logbookLookup = db.logbook(
            patientID: patient.id, from: start, to: end, limit: size + (page > 1 ? 1 : 0), offset: max(0, offset - 1))
        async let devicesLookup = db.deviceOverview(patientID: patient.id)
        async let timelineLookup = db.patientTimeline(patientID: patient.id)
        let (chart, logbook, devices, timeline) = try await (chartLookup, logbookLookup, devicesLookup, timelineLookup)
        let zone = TimeZone(identifier: patient.timezone) ?? workspace.pages.timeZone
        func who(_ username: String?) -> String {
            guard let username else { return "nobody" }
            return username == "vitalsd" ? "vitalsd" : names[username] ?? username
        }

        var values: [String: Any] = [:]
        values["window"] = window.rawValue
        values["windowLabel"] = window.label
        values["windows"] = ChartWindow.allCases.map {
            ["key": $0.rawValue, "href": "/patients/\(Self.pathID(patient.id))?window=\($0.rawValue)", "label": $0.label,
             "current": $0 == window] as [String: Any]
        }
        values["charts"] = charts(chart, patient: patient, window: window, start: start, end: end, zone: zone)
        values["csvLink"] = "/patients/\(Self.pathID(patient.id))/readings.csv?window=\(window.rawValue)"
        values.merge(logbookValues(logbook, page: page, window: window, start: start, zone: zone, patient: patient),
                     uniquingKeysWith: { a, _ in a })
        values["devices"] = devices.map { deviceValues($0, now: now, zone: zone) }
        values["timeline"] = Self.timeline(timeline, who: who, pages: workspace.pages, now: workspace.clock())
        values.merge(thresholdValues(patient: patient, overrides: chart.overrides, rules: chart.ruleOverrides, user: user),
                     uniquingKeysWith: { a, _ in a })
        return values
    }

    /// The types a chart draws together: blood pressure's two; every other type alone.
    static func chartGroups(_ types: some Collection<VitalType>) -> [[VitalType]] {
        var groups: [[VitalType]] = []
        for type in VitalType.allCases where types.contains(type) {
            if type == .diastolicBP, types.contains(.systolicBP) { continue }
            groups.append(type == .systolicBP && types.contains(.diastolicBP) ? [.systolicBP, .diastolicBP] : [type])
        }
        return groups
    }

    private func charts(
        _ data: PatientChartData, patient: Patient, window: ChartWindow, start: Date, end: Date, zone: TimeZone
    ) -> [[String: Any]] {
        Self.chartGroups(data.series.keys).map { types in
            let series = types.map { Chart.Series(type: $0, points: data.series[$0] ?? []) }
            let limits = types.enumerated().map { i, type in
                ChartLimits(type: type, limits: workspace.thresholds.effectiveLimits(
                    for: type, programs: patient.programs, overrides: data.overrides).limits, bands: i == 0)
            }
            let title = types == [.systolicBP, .diastolicBP] ? "Blood pressure" : types[0].displayName
            let unit = types[0].canonicalUnit.display
            let svg = Chart.svg(series: series, limits: limits, markers: data.taskMarkers, start: start, end: end, zone: zone,
                                label: "\(title) over \(window.label), \(unit), with the limits in force") ?? ""
            let stats: [[String: Any]] = series.compactMap { s in
                guard let st = SeriesStatistics(s.points.lazy.map(\.value)) else { return nil }
                var row: [String: Any] = [
                    "type": s.type.displayName, "count": st.count, "mean": Observation.format((st.mean * 10).rounded() / 10),
                    "min": Observation.format(st.minimum), "max": Observation.format(st.maximum), "unit": unit,
                ]
                if s.type == .glucose, let tir = SeriesStatistics.timeInRange(s.points.lazy.map(\.value), SeriesStatistics.glucoseTargetRange) {
                    row["timeInRange"] = "\(Int((tir * 100).rounded())) %"
                }
                return row
            }
            return ["id": types[0].rawValue, "title": title, "unit": unit, "svg": svg, "stats": stats]
        }
    }

    // MARK: Logbook

    private func logbookValues(
        _ logbook: (readings: [ReadingRow], total: Int, events: [StoredDeviceEvent]),
        page: Int, window: ChartWindow, start: Date, zone: TimeZone, patient: Patient
    ) -> [String: Any] {
        var readings = logbook.readings
        // The previous page's last reading, read to bound this page's device events.
        let upper: Date? = page > 1 && !readings.isEmpty ? readings.removeFirst().measuredAt : nil
        let more = (page - 1) * Self.logbookPageSize + readings.count < logbook.total
        let lower: Date? = more ? readings.last?.measuredAt : nil
        let events = logbook.events.filter { e in
            let t = e.measuredAt ?? e.receivedAt
            return upper.map { t < $0 } ?? true && lower.map { t >= $0 } ?? true
        }
        var rows: [(Date, [String: Any])] = readings.map { ($0.measuredAt, readingValues($0, zone: zone)) }
        rows += events.map { ($0.measuredAt ?? $0.receivedAt, eventValues($0, zone: zone)) }
        rows.sort { $0.0 > $1.0 }
        var values: [String: Any] = ["logbook": rows.map(\.1), "logbookTotal": logbook.total]
        let pages = max(1, (logbook.total + Self.logbookPageSize - 1) / Self.logbookPageSize)
        if pages > 1 {
            let base = "/patients/\(Self.pathID(patient.id))?window=\(window.rawValue)&log="
            var pager: [String: Any] = ["page": page, "pages": pages]
            if page > 1 { pager["previous"] = base + String(page - 1) + "#logbook" }
            if page < pages { pager["next"] = base + String(page + 1) + "#logbook" }
            values["logbookPager"] = pager
        }
        return values
    }

    /// The flags of a reading as the logbook shows them: `manual`, `late`, and the device's own.
    func flags(_ r: ReadingRow) -> [String] {
        var flags: [String] = []
        if r.source == "manual" { flags.append("manual") }
        if workspace.alerts.isLate(measuredAt: r.measuredAt, receivedAt: r.receivedAt) { flags.append("late") }
        flags += r.flags.map { $0.replacingOccurrences(of: "_", with: " ") }
        if r.timeSource != "device" { flags.append("time: " + r.timeSource.replacingOccurrences(of: "_", with: " ")) }
        return flags
    }

    /// `device error (sfloat nan)`, `above meter range (hi marker)`.
    static func eventFlag(_ e: StoredDeviceEvent) -> String {
        let kind = switch e.kind {
        case "device_error": "device error"
        case "above_range": "above meter range"
        case "below_range": "below meter range"
        default: e.kind.replacingOccurrences(of: "_", with: " ")
        }
        return "\(kind) (\(e.code.replacingOccurrences(of: "_", with: " ")))"
    }

    private func readingValues(_ r: ReadingRow, zone: TimeZone) -> [String: Any] {
        let type = VitalType(rawValue: r.type)
        return [
            "when": workspace.pages.local(r.measuredAt, in: zone), "iso": Pages.iso(r.measuredAt),
            "type": type?.displayName ?? r.type, "received": "\(Observation.format(r.value)) \(r.unit)",
            "canonical": "\(Observation.format(r.canonicalValue)) \(r.canonicalUnit)", "flags": flags(r).joined(separator: ", "),
            "device": r.deviceID,
        ]
    }

    private func eventValues(_ e: StoredDeviceEvent, zone: TimeZone) -> [String: Any] {
        let at = e.measuredAt ?? e.receivedAt
        return [
            "when": workspace.pages.local(at, in: zone), "iso": Pages.iso(at),
            "type": e.type.flatMap(VitalType.init(rawValue:))?.displayName ?? "—",
            "received": e.kind == "above_range" ? "HI" : e.kind == "below_range" ? "LO" : "error", "canonical": "—",
            "flags": Self.eventFlag(e), "device": e.deviceID, "event": true,
        ]
    }

    @Sendable func csv(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let id = context.parameters.get("id") ?? ""
        let db = workspace.database
        guard let patient = try await db.patientRecord(id: id) else { throw HTTPError(.notFound) }
        let window = ChartWindow(query: request.uri.queryParameters.get("window"))
        let now = workspace.clock()
        let start = now.addingTimeInterval(-Double(window.days) * 86_400), end = now.addingTimeInterval(1)
        async let readingsLookup = db.readingRows(patientID: id, from: start, to: end)
        async let eventsLookup = db.logbook(patientID: id, from: start, to: end, limit: 10_000)
        let (readings, events) = try await (readingsLookup, eventsLookup.events)
        let zone = TimeZone(identifier: patient.timezone) ?? .gmt
        var lines = [CSVText.line(["measured_at_local", "measured_at_utc", "type", "value", "unit", "canonical_value",
                                   "canonical_unit", "flags", "device_id", "received_at_utc"])]
        var rows: [(Date, String)] = readings.map { r in
            (r.measuredAt, CSVText.line([
                workspace.pages.local(r.measuredAt, in: zone), Pages.iso(r.measuredAt), r.type, Observation.format(r.value), r.unit,
                Observation.format(r.canonicalValue), r.canonicalUnit, flags(r).joined(separator: "; "), r.deviceID,
                Pages.iso(r.receivedAt),
            ]))
        }
        rows += events.map { e in
            let at = e.measuredAt ?? e.receivedAt
            return (at, CSVText.line([
                workspace.pages.local(at, in: zone), Pages.iso(at), e.type ?? "",
                e.kind == "above_range" ? "HI" : e.kind == "below_range" ? "LO" : "", "", "", "", Self.eventFlag(e), e.deviceID,
                Pages.iso(e.receivedAt),
            ]))
        }
        lines += rows.sorted { $0.0 < $1.0 }.map(\.1)
        try await db.recordAccess(actor: user.username, action: "chart.readings_csv", targetType: "patient", targetID: id,
                                  detail: "window=\(window.rawValue)", at: now)
        let filename = "readings-\(id.filter { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })-\(window.rawValue).csv"
        return Response(
            status: .ok,
            headers: [.contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"\(filename)\""],
            body: .init(byteBuffer: ByteBuffer(string: lines.joined(separator: "\r\n") + "\r\n")))
    }

    // MARK: Devices

    private func deviceValues(_ d: DeviceOverview, now: Date, zone: TimeZone) -> [String: Any] {
        var values: [String: Any] = [
            "id": d.device.id, "kind": d.device.kind.rawValue.replacingOccurrences(of: "_", with: " "),
            "lastReading": d.lastReadingAt.map { "\(workspace.pages.local($0, in: zone)) (\(Pages.ago($0, now: now)))" } ?? "none",
        ]
        let status = Dictionary(d.status.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        if let b = status["battery_percent"] {
            values["battery"] = "\(Observation.format(b.value)) %"
        } else if let b = status["battery_mv"] {
            values["battery"] = "\(Observation.format(b.value)) mV"
        }
        if let s = status["signal_dbm"] {
            values["signal"] = "\(Observation.format(s.value)) dBm"
        } else if let s = status["signal_bars"] {
            values["signal"] = "\(Observation.format(s.value)) bars"
        }
        values["events"] = d.events.map { e in
            "\(workspace.pages.local(e.measuredAt ?? e.receivedAt, in: zone)): \(Self.eventFlag(e))"
                + (e.type.flatMap(VitalType.init(rawValue:)).map { ", \($0.displayName)" } ?? "")
        }
        return values
    }

    // MARK: Timeline

    /// Task events, notes, dispositions, time entries and their voids, and threshold changes, newest first.
    static func timeline(_ t: PatientTimeline, who: (String?) -> String, pages: Pages, now: Date = Date()) -> [[String: Any]] {
        var items: [(Date, Int, [String: Any])] = []
        func add(_ at: Date, _ order: Int, kind: String, actor: String, what: String, task: Int64? = nil, text: String? = nil) {
            var item: [String: Any] = ["iso": Pages.iso(at), "when": pages.local(at), "who": who(actor), "what": what, "kind": kind]
            if let task { item["task"] = task }
            if let text { item["text"] = text }
            items.append((at, order, item))
        }
        for (i, e) in t.events.enumerated() {
            let condition = TaskPresentation.condition(vital: e.vital, direction: e.direction)
            add(e.event.at, -i, kind: e.event.event, actor: e.event.actor,
                what: "\(condition) · " + TaskController.eventText(e.event, who: who), task: e.taskID)
        }
        for (i, n) in t.notes.enumerated() {
            add(n.note.at, -i, kind: "note", actor: n.note.author, what: "wrote a note", task: n.taskID, text: n.note.text)
        }
        for (i, e) in t.timeEntries.enumerated() {
            if let voided = e.voidsEntryID {
                add(e.performedAt, -i, kind: "time-void", actor: e.performedBy, what: "voided time entry \(voided)", text: e.voidReason)
            } else {
                add(e.performedAt, -i, kind: "time", actor: e.performedBy,
                    what: "logged \(e.lengthText) \(e.program.rawValue.uppercased())"
                        + (e.modality.map { ", interactive (\($0.rawValue.replacingOccurrences(of: "_", with: " ")))" } ?? "")
                        + (e.voided ? " (voided)" : "") + " — entry \(e.id)",
                    task: e.taskID, text: e.activity)
            }
        }
        for (i, a) in t.thresholdChanges.enumerated() {
            let (kind, what) = switch a.action {
            case "threshold.set": ("threshold", "changed a limit")
            case "threshold.clear": ("threshold", "removed a patient limit")
            case "monitoring.pause": ("pause", "paused monitoring")
            case "monitoring.resume": ("pause", "resumed monitoring")
            default: ("threshold", "changed a trend rule")
            }
            add(a.at, -i, kind: kind, actor: a.actor, what: what, text: a.detail)
        }
        // A pause and an early resume are audited (above); a pause that ran to its last day ends without one.
        for (i, p) in t.pauses.enumerated() where p.closedBy == nil || p.closedBy == "expired" {
            if p.effectiveEnd <= now {
                add(p.effectiveEnd, -i, kind: "pause", actor: "vitalsd", what: "monitoring pause ended (its last day, \(p.endDate), passed)")
            }
        }
        return items.sorted { ($0.0, $0.1) > ($1.0, $1.1) }.map(\.2)
    }

    // MARK: Thresholds and rules in force

    private func thresholdValues(
        patient: Patient, overrides: [ThresholdSlot: Double], rules changes: [String: RuleOverride], user: WorkspaceUser
    ) -> [String: Any] {
        var limits: [[String: Any]] = []
        var slots: [[String: Any]] = []
        for type in VitalType.allCases {
            let (inForce, origins) = workspace.thresholds.effectiveLimits(for: type, programs: patient.programs, overrides: overrides)
            for level in [ThresholdLevel.critical, .warning] {
                for direction in [ThresholdDirection.high, .low] {
                    let slot = ThresholdSlot(type: type, level: level, direction: direction)
                    slots.append(["value": "\(type.rawValue)|\(level.rawValue)|\(direction.rawValue)",
                                  "label": "\(type.displayName), \(level.rawValue) \(direction.rawValue) (\(type.canonicalUnit.display))"])
                    guard let v = inForce[level, direction] else { continue }
                    let origin: String, source: String
                    switch origins[slot] {
                    case .patient:
                        origin = "patient"
                        source = "clinician's order"
                    case .program(let p):
                        origin = "program \(p.rawValue)"
                        source = workspace.thresholds.programs[p]?[type]?.source ?? ""
                    default:
                        origin = "default"
                        source = workspace.thresholds.defaults[type]?.source ?? ""
                    }
                    limits.append([
                        "type": type.displayName, "level": level.rawValue, "direction": direction.rawValue,
                        "limit": "\(direction == .high ? "≥" : "<") \(Observation.format(v)) \(type.canonicalUnit.display)",
                        "origin": origin, "source": source, "patient": origin == "patient",
                    ])
                }
            }
        }
        let rules = workspace.alerts.rules(for: patient.programs).map { r -> [String: Any] in
            var rule = r
            var origin = "configured"
            if let change = changes[r.id] {
                if change.disabled {
                    return ["id": r.id, "level": r.level.rawValue, "trend": "off", "origin": "patient", "source": r.source ?? ""]
                }
                if let b = change.bound {
                    rule.bound = b
                    origin = "patient"
                }
            }
            return ["id": rule.id, "level": rule.level.rawValue, "trend": rule.summary, "origin": origin, "source": rule.source ?? ""]
        }
        return ["limitsInForce": limits, "rulesInForce": rules, "slots": slots,
                "ruleChoices": rules.map { ["id": $0["id"] ?? ""] }, "hasRules": !rules.isEmpty, "canChangeLimits": Self.changesLimits(user.role)]
    }

    // MARK: Changing limits and rules

    /// Why a form cannot be used, shown on the chart with status 400.
    struct Refusal: Error {
        var message: String
    }

    private func change(
        _ context: Context, _ apply: (WorkspaceUser, Patient, String) async throws -> Void
    ) async throws -> Response {
        let user = try context.user()
        guard Self.changesLimits(user.role) else {
            throw HTTPError(.forbidden, message: "Only clinicians and admins change a patient's limits and trend rules.")
        }
        let id = context.parameters.get("id") ?? ""
        guard let patient = try await workspace.database.patientRecord(id: id) else { throw HTTPError(.notFound) }
        let window = ChartWindow(query: context.form["window"])
        do {
            let reason = (context.form["reason"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty else { throw Refusal(message: "Give a reason for the change.") }
            guard reason.count <= 500 else { throw Refusal(message: "The reason is too long (500 characters at most).") }
            try await apply(user, patient, reason)
        } catch let refusal as Refusal {
            return try await PatientController(workspace: workspace).render(
                id, context: context, window: window, error: refusal.message + " Nothing was changed.", status: .badRequest)
        }
        return .redirect(to: "/patients/\(Self.pathID(id))?window=\(window.rawValue)&done=limits#thresholds", type: .normal)
    }

    @Sendable func changeLimit(_ request: Request, context: Context) async throws -> Response {
        try await change(context) { user, patient, reason in
            let parts = (context.form["slot"] ?? "").split(separator: "|").map(String.init)
            guard parts.count == 3, let type = VitalType(rawValue: parts[0]), let level = ThresholdLevel(rawValue: parts[1]),
                  let direction = ThresholdDirection(rawValue: parts[2]) else { throw Refusal(message: "Choose a limit.") }
            let slot = ThresholdSlot(type: type, level: level, direction: direction)
            let db = workspace.database
            if context.form["action"] == "clear" {
                let removed = try await workspace.blocking {
                    try db.clearThreshold(patientID: patient.id, slot: slot, actor: user.username, reason: reason)
                }
                if !removed { throw Refusal(message: "The patient has no own limit there.") }
                return
            }
            guard let value = NumericValue.parseDecimalString(context.form["value"] ?? "") else {
                throw Refusal(message: "Give the limit as a number in \(type.canonicalUnit.display).")
            }
            try await workspace.blocking {
                if let problem = workspace.thresholds.problemSetting(
                    slot, to: value, programs: patient.programs, overrides: try db.thresholdOverrides(patientID: patient.id)) {
                    throw Refusal(message: problem.prefixCapitalized + ".")
                }
                try db.setThreshold(patientID: patient.id, slot: slot, value: value, actor: user.username, reason: reason)
            }
        }
    }

    @Sendable func changeRule(_ request: Request, context: Context) async throws -> Response {
        try await change(context) { user, patient, reason in
            let id = context.form["rule"] ?? ""
            guard var rule = workspace.alerts.rules(for: patient.programs).first(where: { $0.id == id }) else {
                throw Refusal(message: "Choose a trend rule in force.")
            }
            let change: RuleOverride?
            switch context.form["action"] {
            case "off": change = RuleOverride(bound: nil, disabled: true)
            case "clear": change = nil
            default:
                guard let bound = NumericValue.parseDecimalString(context.form["bound"] ?? "") else {
                    throw Refusal(message: "Give the rule's bound as a number in \(rule.type.canonicalUnit.display).")
                }
                rule.bound = bound
                if let problem = rule.problem { throw Refusal(message: problem.prefixCapitalized + ".") }
                change = RuleOverride(bound: bound, disabled: false)
            }
            let db = workspace.database
            try await workspace.blocking {
                try db.setRuleOverride(patientID: patient.id, ruleID: id, override: change, actor: user.username, reason: reason)
            }
        }
    }

    /// A patient id for a URL path.
    static func pathID(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
    }
}

extension Workspace {
    /// Runs a synchronous store call (which may wait for another process's lock) on NIO's thread pool,
    /// off the cooperative pool.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(body)
    }
}
