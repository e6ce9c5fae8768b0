import Foundation
import VitalsDomain
import VitalsStore

/// The window of a patient chart: 1 week, 2 weeks, 1 month (30 days) or 3 months (91 days) back from now.
enum ChartWindow: String, CaseIterable, Sendable {
    case oneWeek = "1w"
    case twoWeeks = "2w"
    case oneMonth = "1m"
    case threeMonths = "3m"

    /// The window of a `?window=` value; 2 weeks for none or an unknown one.
    init(query: String?) {
        self = query.flatMap(Self.init(rawValue:)) ?? .twoWeeks
    }

    var days: Int {
        switch self {
        case .oneWeek: 7
        case .twoWeeks: 14
        case .oneMonth: 30
        case .threeMonths: 91
        }
    }

    var label: String {
        switch self {
        case .oneWeek: "1 week"
        case .twoWeeks: "2 weeks"
        case .oneMonth: "1 month"
        case .threeMonths: "3 months"
        }
    }
}

/// One chart's limits: a vital type's limits in force, drawn as bands (or, for the second series of a
/// blood-pressure chart, as lines).
struct ChartLimits {
    var type: VitalType
    var limits: ThresholdLimits
    /// Bands (shaded zones beyond each limit), or lines only.
    var bands: Bool
}

/// The server-drawn SVG of one vital (or of systolic and diastolic blood pressure together) over a
/// window: a time axis in the patient's zone, the limits in force as bands, the readings downsampled by
/// ``MinMaxDownsampling`` (each bucket's lowest and highest reading, one bucket per 2 pixels), and a
/// marker, linked to its task, on each reading that opened or updated a task.
///
/// The output is made of numbers, fixed names and escaped text: safe to insert into a page unescaped.
/// The root carries the window (`data-start`, `data-end`, epoch ms), `data-min`/`data-min-y` and
/// `data-max`/`data-max-y` (the plotted extremes of the first series and their y), and each limit
/// `data-limit`/`data-y`, for tests and tools.
enum Chart {
    struct Series {
        var type: VitalType
        var points: [ChartPoint]
    }

    static let width = 720
    static let height = 220
    static let left = 44.0, right = 10.0, top = 8.0, bottom = 22.0

    /// The SVG, or nil when no series has a point.
    /// - Parameters:
    ///   - series: one, or systolic then diastolic; points oldest first.
    ///   - limits: per type, the limits in force.
    ///   - markers: reading id → task id.
    ///   - start, end: the window.
    ///   - zone: the patient's time zone, for the date labels.
    ///   - label: what a screen reader says.
    static func svg(
        series: [Series], limits: [ChartLimits], markers: [Int64: Int64], start: Date, end: Date, zone: TimeZone, label: String
    ) -> String? {
        let all = series.flatMap(\.points)
        guard let first = series.first, !first.points.isEmpty else { return nil }
        let plotWidth = Double(width) - left - right
        let plotHeight = Double(height) - top - bottom
        let buckets = Int(plotWidth / 2)

        // The value axis: the data and every limit in force, padded, on round ticks.
        var low = all.map(\.value).min()!
        var high = all.map(\.value).max()!
        for l in limits {
            for v in [l.limits.criticalLow, l.limits.warningLow, l.limits.warningHigh, l.limits.criticalHigh].compactMap({ $0 }) {
                low = min(low, v)
                high = max(high, v)
            }
        }
        let step = niceStep((high - low) / 4)
        low = (low / step).rounded(.down) * step
        high = (high / step).rounded(.up) * step
        if high - low < step { high = low + step }
        let span = end.timeIntervalSince(start)
        func x(_ t: Date) -> Double { left + plotWidth * min(1, max(0, t.timeIntervalSince(start) / span)) }
        func y(_ v: Double) -> Double { top + plotHeight * (high - v) / (high - low) }
        let plotBottom = top + plotHeight

        var svg = "<svg class=\"chart\" viewBox=\"0 0 \(width) \(height)\" width=\"\(width)\" height=\"\(height)\" role=\"img\""
            + " aria-label=\"\(escape(label))\" data-type=\"\(first.type.rawValue)\""
            + " data-start=\"\(epochMilliseconds(start))\" data-end=\"\(epochMilliseconds(end))\""
        let lowest = first.points.min { $0.value < $1.value }!
        let highest = first.points.max { $0.value < $1.value }!
        svg += " data-min=\"\(number(lowest.value))\" data-min-y=\"\(format(y(lowest.value)))\""
            + " data-max=\"\(number(highest.value))\" data-max-y=\"\(format(y(highest.value)))\">"

        // Bands and limit lines.
        for l in limits {
            // Each limit with the next one beyond it (where its band ends).
            let highLevels: [(ThresholdLevel, Double?, Double?)] = [
                (.warning, l.limits.warningHigh, l.limits.criticalHigh), (.critical, l.limits.criticalHigh, nil),
            ]
            let lowLevels: [(ThresholdLevel, Double?, Double?)] = [
                (.warning, l.limits.warningLow, l.limits.criticalLow), (.critical, l.limits.criticalLow, nil),
            ]
            for (direction, levels) in [(ThresholdDirection.high, highLevels), (.low, lowLevels)] {
                for (level, value, beyond) in levels {
                    guard let value else { continue }
                    let ly = y(value)
                    let attributes = "data-type=\"\(l.type.rawValue)\" data-level=\"\(level.rawValue)\" data-direction=\"\(direction.rawValue)\""
                        + " data-limit=\"\(number(value))\" data-y=\"\(format(ly))\""
                    if l.bands {
                        let edge = beyond.map(y) ?? (direction == .high ? top : plotBottom)
                        let (y0, y1) = direction == .high ? (edge, ly) : (ly, edge)
                        svg += "<rect class=\"band band-\(level.rawValue)\" x=\"\(format(left))\" y=\"\(format(y0))\""
                            + " width=\"\(format(plotWidth))\" height=\"\(format(max(0, y1 - y0)))\" \(attributes)/>"
                    }
                    svg += "<line class=\"limit limit-\(level.rawValue)\(l.bands ? "" : " limit-other")\" x1=\"\(format(left))\""
                        + " x2=\"\(format(left + plotWidth))\" y1=\"\(format(ly))\" y2=\"\(format(ly))\" \(attributes)/>"
                }
            }
        }

        // Axes: value ticks, and a date label at local midnights.
        var v = low
        while v <= high + step / 2 {
            let ty = format(y(v))
            svg += "<line class=\"grid\" x1=\"\(format(left))\" x2=\"\(format(left + plotWidth))\" y1=\"\(ty)\" y2=\"\(ty)\"/>"
                + "<text class=\"tick\" x=\"\(format(left - 4))\" y=\"\(ty)\" text-anchor=\"end\" dominant-baseline=\"middle\">\(number(v))</text>"
            v += step
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let startDay = calendar.startOfDay(for: start)
        let firstTick = calendar.date(byAdding: .day, value: 1, to: startDay) ?? startDay
        let tickDays = max(1, Int((span / 86_400 / 7).rounded()))
        var day = 0
        while let t = calendar.date(byAdding: .day, value: day, to: firstTick), t < end {
            let c = calendar.dateComponents([.month, .day], from: t)
            let tx = format(x(t))
            svg += "<line class=\"grid day\" x1=\"\(tx)\" x2=\"\(tx)\" y1=\"\(format(top))\" y2=\"\(format(plotBottom))\"/>"
                + "<text class=\"tick\" x=\"\(tx)\" y=\"\(format(plotBottom + 15))\" text-anchor=\"middle\">"
                + String(format: "%02d-%02d", c.month!, c.day!) + "</text>"
            day += tickDays
        }

        // The readings, broken where the data stops for long.
        for s in series {
            let plotted = MinMaxDownsampling.downsample(s.points, start: start, end: end, buckets: buckets,
                                                        time: \.measuredAt, value: \.value)
            let gap = max(3 * span / Double(buckets), 3 * medianInterval(s.points))
            var segments: [[ChartPoint]] = []
            var previous: Date?
            for p in plotted {
                if previous.map({ p.measuredAt.timeIntervalSince($0) > gap }) ?? true { segments.append([]) }
                segments[segments.count - 1].append(p)
                previous = p.measuredAt
            }
            for segment in segments {
                if segment.count == 1 {
                    svg += "<circle class=\"dot dot-\(s.type.rawValue)\" cx=\"\(format(x(segment[0].measuredAt)))\""
                        + " cy=\"\(format(y(segment[0].value)))\" r=\"2\"/>"
                } else {
                    svg += "<polyline class=\"trace trace-\(s.type.rawValue)\" points=\""
                        + segment.map { "\(format(x($0.measuredAt))),\(format(y($0.value)))" }.joined(separator: " ") + "\"/>"
                }
            }
        }

        // Task markers: one per task and pixel column.
        var drawn = Set<String>()
        for s in series {
            for p in s.points {
                guard let task = markers[p.readingID] else { continue }
                let cx = format(x(p.measuredAt)), cy = format(y(p.value))
                guard drawn.insert("\(task) \(cx)").inserted else { continue }
                svg += "<a href=\"/tasks/\(task)\"><circle class=\"marker\" cx=\"\(cx)\" cy=\"\(cy)\" r=\"4\" data-task=\"\(task)\">"
                    + "<title>Task \(task)</title></circle></a>"
            }
        }
        svg += "<circle class=\"extreme min\" cx=\"\(format(x(lowest.measuredAt)))\" cy=\"\(format(y(lowest.value)))\" r=\"3\"/>"
        svg += "<rect class=\"frame\" x=\"\(format(left))\" y=\"\(format(top))\" width=\"\(format(plotWidth))\" height=\"\(format(plotHeight))\"/>"
        return svg + "</svg>"
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        for m in [1.0, 2, 5, 10] where m * magnitude >= raw { return m * magnitude }
        return 10 * magnitude
    }

    /// The median time between consecutive points, in seconds (0 for fewer than two), from at most
    /// 1,001 evenly spread pairs.
    static func medianInterval(_ points: [ChartPoint]) -> Double {
        guard points.count > 1 else { return 0 }
        let stride = max(1, (points.count - 1) / 1_000)
        let gaps = Swift.stride(from: 1, to: points.count, by: stride)
            .map { points[$0].measuredAt.timeIntervalSince(points[$0 - 1].measuredAt) }.sorted()
        return gaps[gaps.count / 2]
    }

    /// A coordinate with one decimal at most.
    static func format(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    /// A value as vitalsd prints it (``Observation/format(_:)``).
    static func number(_ v: Double) -> String { Observation.format(v) }

    /// Text for an SVG attribute or element: & < > " ' escaped.
    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
