import Foundation
import Testing
import VitalsDomain
import VitalsStore
@testable import VitalsWeb

@Suite("how the workspace names a task's condition")
struct ConditionNameTests {
    @Test("device conditions read as words, not as their keys")
    func deviceConditions() {
        #expect(TaskPresentation.condition(vital: "device:g1", direction: .high) == "Device g1")
        #expect(TaskPresentation.condition(vital: "battery:g1", direction: .low) == "Battery low, g1")
        #expect(TaskPresentation.condition(vital: "clock:g1", direction: .high) == "Device clock wrong, g1")
        #expect(TaskPresentation.condition(vital: "value:g1", direction: .high) == "Implausible value, g1")
        #expect(TaskPresentation.condition(vital: "glucose", direction: .low) == "Glucose low")
    }
}

@Suite("the patient chart's SVG: axis, limit bands, task markers, the plotted minimum")
struct ChartTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func point(_ id: Int64, minutes: Double, _ value: Double) -> ChartPoint {
        ChartPoint(readingID: id, measuredAt: t0 + minutes * 60, value: value)
    }

    /// The `y` of every plotted point (polyline vertices and dots).
    func plottedYs(_ svg: String) -> [Double] {
        var ys: [Double] = []
        for part in svg.components(separatedBy: "points=\"").dropFirst() {
            let list = part.prefix { $0 != "\"" }
            ys += list.split(separator: " ").compactMap { Double($0.split(separator: ",")[1]) }
        }
        for part in svg.components(separatedBy: "class=\"dot ").dropFirst() {
            if let cy = part.components(separatedBy: "cy=\"").dropFirst().first?.prefix(while: { $0 != "\"" }) { ys.append(Double(cy)!) }
        }
        return ys
    }

    func attribute(_ name: String, _ svg: String) -> String? {
        svg.components(separatedBy: " \(name)=\"").dropFirst().first.map { String($0.prefix { $0 != "\"" }) }
    }

    @Test("values map onto round ticks: 100 and 200 mg/dL without limits span the plot's 190 px")
    func axis() throws {
        let svg = try #require(Chart.svg(
            series: [.init(type: .glucose, points: [point(1, minutes: 0, 100), point(2, minutes: 60, 200), point(3, minutes: 120, 150)])],
            limits: [], markers: [:], start: t0, end: t0 + 3 * 86_400, zone: .gmt, label: "Glucose"))
        // Step: (200 − 100) / 4 = 25 → 50; the axis is 100…200; the plot is 220 − 8 − 22 = 190 px high from y = 8.
        #expect(attribute("data-min", svg) == "100")
        #expect(attribute("data-min-y", svg) == "198")
        #expect(attribute("data-max", svg) == "200")
        #expect(attribute("data-max-y", svg) == "8")
        // 150 mg/dL at y = 8 + 190 × 50 / 100 = 103.
        #expect(plottedYs(svg).contains(103))
    }

    @Test("the limits in force are bands with their value and y; a reading that opened a task links to it")
    func bandsAndMarkers() throws {
        let limits = ThresholdPolicy.clinicalDefaults.effectiveLimits(for: .glucose, programs: [.diabetes], overrides: [:]).limits
        let svg = try #require(Chart.svg(
            series: [.init(type: .glucose, points: [point(1, minutes: 0, 100), point(2, minutes: 60, 45), point(3, minutes: 120, 180)])],
            limits: [ChartLimits(type: .glucose, limits: limits, bands: true)], markers: [2: 17],
            start: t0, end: t0 + 86_400, zone: .gmt, label: "Glucose <script>"))
        // The limits 54…400 widen the axis: step (400 − 45) / 4 = 88.75 → 100, axis 0…400, y(v) = 8 + 190 × (400 − v) / 400.
        #expect(svg.contains("data-level=\"critical\" data-direction=\"high\" data-limit=\"400\" data-y=\"8\""))
        #expect(svg.contains("data-level=\"critical\" data-direction=\"low\" data-limit=\"54\""))
        #expect(svg.contains("class=\"band band-critical\""))
        // 100 mg/dL: 8 + 190 × 300 / 400 = 150.5.
        #expect(plottedYs(svg).contains(150.5))
        #expect(svg.contains("<a href=\"/tasks/17\"><circle class=\"marker\""))
        #expect(svg.components(separatedBy: "class=\"marker\"").count == 2)
        #expect(svg.contains("aria-label=\"Glucose &lt;script&gt;\""))
        #expect(!svg.contains("<script>"))
    }

    @Test("3 months of 5-minute CGM data: the single low is plotted, at the y the root announces")
    func denseMinimum() throws {
        var points = (0..<26_208).map { i in point(Int64(i + 1), minutes: Double(i) * 5, 120 + 40 * sin(Double(i) / 30)) }
        points[7_777].value = 39
        let svg = try #require(Chart.svg(
            series: [.init(type: .glucose, points: points)], limits: [], markers: [:],
            start: t0, end: t0 + 91 * 86_400, zone: .gmt, label: "Glucose"))
        #expect(attribute("data-min", svg) == "39")
        let minY = try #require(attribute("data-min-y", svg).flatMap(Double.init))
        let ys = plottedYs(svg)
        // The lowest value is the largest y; it is the announced one, and is drawn.
        #expect(ys.max() == minY)
        #expect(ys.count <= 2 * 333)
        #expect(svg.utf8.count < 40_000)
    }

    @Test("blood pressure: systolic and diastolic in one chart")
    func bloodPressureGroup() {
        #expect(ChartController.chartGroups([.diastolicBP, .glucose, .systolicBP]) == [[.systolicBP, .diastolicBP], [.glucose]])
        #expect(ChartController.chartGroups([.diastolicBP]) == [[.diastolicBP]])
    }
}

@Suite("the patient chart over HTTP: blood pressure chart, limit form by role, reason required, CSV", .serialized)
struct ChartPageTests {
    @Test("a clinician's limit change needs a reason and the CSRF token; a care manager's is refused; views are logged")
    func limitForm() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        try server.database.addUser(username: "ng", displayName: "Dr. Ng", role: .clinician,
                                    passwordHash: try Passwords.hash("clinician pass 3"), actor: "test")
        let ms = Int64((Date().timeIntervalSince1970 - 3_600) * 1000)
        _ = try await server.database.ingest([IncomingMessage(
            topic: "devices/c1/readings", deviceID: "c1",
            payload: Array(#"{"measured_at":\#(ms),"readings":[{"type":"systolic_bp","value":150,"unit":"mmHg"},{"type":"diastolic_bp","value":95,"unit":"mmHg"}]}"#.utf8),
            receivedAt: Date())], pipeline: IngestPipeline(thresholds: .clinicalDefaults))

        let ana = try await server.session("ana")
        let page = try await server.get("/patients/p2?window=1w", cookie: ana)
        #expect(page.status == 200)
        // One chart for both pressures, systolic limits as bands, diastolic as lines; no limit form for a care manager.
        #expect(page.body.contains("id=\"chart-systolic_bp\""))
        #expect(!page.body.contains("id=\"chart-diastolic_bp\""))
        #expect(page.body.contains("class=\"trace trace-diastolic_bp\"") || page.body.contains("class=\"dot dot-diastolic_bp\""))
        #expect(page.body.contains("data-type=\"diastolic_bp\" data-level=\"critical\" data-direction=\"high\" data-limit=\"120\""))
        #expect(!page.body.contains("id=\"change-limit\""))
        let csrf = try #require(page.field("csrf"))
        let form = ["csrf": csrf, "slot": "systolic_bp|warning|high", "value": "150", "reason": "Dr. Ng's order", "action": "set"]
        #expect(try await server.post("/patients/p2/thresholds", cookie: ana, form: form).status == 403)

        let ng = try await server.session("ng", password: "clinician pass 3")
        let ngPage = try await server.get("/patients/p2", cookie: ng)
        #expect(ngPage.body.contains("id=\"change-limit\""))
        let token = try #require(ngPage.field("csrf"))
        #expect(try await server.post("/patients/p2/thresholds", cookie: ng, form: form.merging(["csrf": ""]) { $1 }).status == 403)
        let noReason = try await server.post("/patients/p2/thresholds", cookie: ng, form: form.merging(["csrf": token, "reason": " "]) { $1 })
        #expect(noReason.status == 400)
        #expect(noReason.body.contains("Give a reason for the change. Nothing was changed."))
        // A warning high of 150 (instead of 160) stays under the critical high of 180: in order.
        let ok = try await server.post("/patients/p2/thresholds", cookie: ng, form: form.merging(["csrf": token]) { $1 })
        #expect(ok.status == 303)
        #expect(try server.database.thresholdOverrides(patientID: "p2")
            == [ThresholdSlot(type: .systolicBP, level: .warning, direction: .high): 150])
        let audit = try server.database.auditEntries().filter { $0.action == "threshold.set" }
        #expect(audit.map(\.actor) == ["ng"])
        #expect(audit.first?.detail == "systolic_bp warning_high: default -> 150 mm[Hg]; reason: Dr. Ng's order")
        let after = try await server.get("/patients/p2?window=1w", cookie: ng)
        #expect(after.body.contains("data-level=\"warning\" data-direction=\"high\" data-limit=\"150\""))
        // Out of order with the limits in force: refused, nothing changed.
        let bad = try await server.post("/patients/p2/thresholds", cookie: ng,
                                        form: form.merging(["csrf": token, "slot": "systolic_bp|critical|high", "value": "140"]) { $1 })
        #expect(bad.status == 400)
        #expect(try server.database.thresholdOverrides(patientID: "p2").count == 1)

        // The CSV of the window: header and one line per reading.
        let csv = try await server.get("/patients/p2/readings.csv?window=1w", cookie: ana)
        #expect(csv.status == 200)
        let lines = csv.body.split(separator: "\r\n")
        #expect(lines.count == 3)
        #expect(lines.dropFirst().allSatisfy { $0.contains(",mmHg,") && $0.contains(",c1,") })
        // Every rendering of the chart is recorded, also the two that showed a refused change again.
        let views = try server.database.accessEntries(patientID: "p2").map {
            "\($0.actor) \($0.action)" + (($0.detail ?? "").hasSuffix("after a refused change") ? " (refused)" : "")
        }
        #expect(views == ["ana chart.viewed", "ng chart.viewed", "ng chart.viewed (refused)", "ng chart.viewed",
                          "ng chart.viewed (refused)", "ana chart.readings_csv"])

        // A limit is a plain decimal number, as a device's value: hex (0xB4 = 180), an exponent, NaN refused.
        for value in ["0xB4", "1.8e2", "NaN", "inf", "180 mmHg"] {
            let notDecimal = try await server.post("/patients/p2/thresholds", cookie: ng,
                                                   form: form.merging(["csrf": token, "slot": "systolic_bp|critical|high", "value": value]) { $1 })
            #expect(notDecimal.status == 400, "\(value)")
        }
        #expect(try server.database.thresholdOverrides(patientID: "p2").count == 1)
    }
}
