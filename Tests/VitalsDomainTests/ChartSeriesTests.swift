import Foundation
import Testing
import VitalsDomain

@Suite("chart downsampling, statistics and a patient's limit change")
struct ChartSeriesTests {
    struct Point: Equatable {
        var t: Double
        var v: Double
    }

    func downsample(_ points: [Point], buckets: Int, span: Double) -> [Point] {
        MinMaxDownsampling.downsample(
            points, start: Date(timeIntervalSince1970: 0), end: Date(timeIntervalSince1970: span), buckets: buckets,
            time: { Date(timeIntervalSince1970: $0.t) }, value: \.v)
    }

    @Test("each bucket keeps its lowest and highest point, in time order")
    func handComputed() {
        // Two buckets of 4 points: [5, 1, 9, 3] keeps 1 then 9; [4, 4, 8, 2] keeps 8 then 2.
        let values: [Double] = [5, 1, 9, 3, 4, 4, 8, 2]
        let points = values.enumerated().map { Point(t: Double($0.offset), v: $0.element) }
        #expect(downsample(points, buckets: 2, span: 8).map(\.v) == [1, 9, 8, 2])
        #expect(downsample(points, buckets: 2, span: 8).map(\.t) == [1, 2, 6, 7])
        // A bucket whose values are all equal keeps its first point once.
        let flat = (0..<8).map { Point(t: Double($0), v: 7) }
        #expect(downsample(flat, buckets: 2, span: 8) == [Point(t: 0, v: 7), Point(t: 4, v: 7)])
        // Few points: all of them.
        #expect(downsample(Array(points.prefix(4)), buckets: 2, span: 8).count == 4)
    }

    @Test("on 3 months of CGM data (26,208 readings) the single lowest and highest readings are plotted")
    func denseLowSurvives() {
        // Every 5 minutes for 91 days: 91 × 288 = 26,208 readings between 100 and 160 mg/dL, one of 41
        // and one of 388.
        var points = (0..<26_208).map { i in Point(t: Double(i) * 300, v: 130 + 30 * sin(Double(i) / 20)) }
        points[12_345].v = 41
        points[20_001].v = 388
        let plotted = downsample(points, buckets: 333, span: 91 * 86_400)
        #expect(plotted.count <= 666)
        #expect(plotted.map(\.v).min() == 41)
        #expect(plotted.map(\.v).max() == 388)
        #expect(plotted.contains(Point(t: 12_345 * 300, v: 41)))
        #expect(plotted == plotted.sorted { $0.t < $1.t })
    }

    @Test("count, mean, minimum, maximum and glucose time in range 70–180 inclusive")
    func statistics() throws {
        let values: [Double] = [70, 180, 69, 181, 100]
        let s = try #require(SeriesStatistics(values))
        #expect(s.count == 5)
        #expect(s.mean == 120)  // 600 / 5
        #expect(s.minimum == 69)
        #expect(s.maximum == 181)
        #expect(SeriesStatistics.timeInRange(values, SeriesStatistics.glucoseTargetRange) == 0.6)  // 70, 180, 100
        #expect(SeriesStatistics([Double]()) == nil)
        #expect(SeriesStatistics.timeInRange([Double](), 70...180) == nil)
    }

    @Test("a patient's limit is refused outside the plausible range or out of order with the limits in force")
    func limitChange() {
        let policy = ThresholdPolicy.clinicalDefaults
        let slot = ThresholdSlot(type: .glucose, level: .critical, direction: .low)
        #expect(policy.problemSetting(slot, to: 60, programs: [.diabetes], overrides: [:]) == nil)
        #expect(policy.problemSetting(slot, to: 5_000, programs: [.diabetes], overrides: [:])?.contains("plausible range") == true)
        // A critical low above the warning high cannot work.
        let problem = policy.problemSetting(slot, to: 300, programs: [.diabetes], overrides: [:])
        #expect(problem?.hasPrefix("refused: with this limit, glucose") == true)
    }
}
