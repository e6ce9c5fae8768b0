import Foundation
import VitalsDomain
import VitalsStore

/// A small inline SVG of one vital over the sparkline window, with a limit drawn across it.
///
/// Each bucket is drawn from its lowest to its highest value, so that a single low (or high) reading
/// shows however dense the data; buckets without readings leave a gap, so that silence shows too.
/// The output holds numbers and fixed names only: it is safe to insert into a page unescaped.
enum Sparkline {
    /// The SVG, or nil when there is nothing to draw.
    /// - Parameters:
    ///   - buckets: the type's buckets, by index (``SparklineBucket``), oldest first.
    ///   - count: buckets across the window.
    ///   - limit: the limit to draw, in the type's canonical unit.
    ///   - label: what a screen reader says (type, window, limit).
    ///   - gap: buckets without readings after which the line breaks (a day's worth: silence shows,
    ///     twice-daily readings still make a line).
    ///   - mark: mark the latest bucket's minimum (`.low`) or maximum (`.high`), or nothing.
    ///   - width, height: CSS pixels; the drawing scales to them.
    static func svg(
        _ buckets: [SparklineBucket], count: Int, limit: Double?, label: String, gap: Int, mark: ThresholdDirection?,
        width: Int = 112, height: Int = 28
    ) -> String? {
        guard !buckets.isEmpty, count > 0 else { return nil }
        var low = buckets.map(\.minimum).min()!
        var high = buckets.map(\.maximum).max()!
        if let limit {
            low = min(low, limit)
            high = max(high, limit)
        }
        let pad = max((high - low) * 0.08, 0.5)
        low -= pad
        high += pad
        let step = Double(width) / Double(count)
        func y(_ v: Double) -> String { format(Double(height) * (high - v) / (high - low)) }
        func x(_ i: Int) -> String { format((Double(i) + 0.5) * step) }

        var traces: [[String]] = []
        var previous: Int?
        for b in buckets.sorted(by: { $0.index < $1.index }) {
            if previous.map({ b.index - $0 > gap }) ?? true { traces.append([]) }
            traces[traces.count - 1].append("\(x(b.index)),\(y(b.maximum))")
            if b.minimum != b.maximum { traces[traces.count - 1].append("\(x(b.index)),\(y(b.minimum))") }
            previous = b.index
        }
        var svg = "<svg class=\"sparkline\" viewBox=\"0 0 \(width) \(height)\" width=\"\(width)\" height=\"\(height)\" "
            + "role=\"img\" aria-label=\"\(label)\">"
        if let limit {
            svg += "<line class=\"limit\" x1=\"0\" x2=\"\(width)\" y1=\"\(y(limit))\" y2=\"\(y(limit))\"/>"
        }
        for trace in traces {
            if trace.count == 1 {
                let p = trace[0].split(separator: ",")
                svg += "<circle class=\"dot\" cx=\"\(p[0])\" cy=\"\(p[1])\" r=\"1.5\"/>"
            } else {
                svg += "<polyline class=\"trace\" points=\"\(trace.joined(separator: " "))\"/>"
            }
        }
        if let mark, let last = buckets.max(by: { $0.index < $1.index }) {
            svg += "<circle class=\"last\" cx=\"\(x(last.index))\" cy=\"\(y(mark == .low ? last.minimum : last.maximum))\" r=\"2\"/>"
        }
        return svg + "</svg>"
    }

    /// One decimal at most: coordinates stay short.
    private static func format(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}
