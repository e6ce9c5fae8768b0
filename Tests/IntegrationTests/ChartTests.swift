import Foundation
import Testing
import VitalsDomain
import VitalsStore
@testable import VitalsWeb

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
