import Foundation

/// Downsampling of a time series for a chart that keeps, in each time bucket, the lowest and the
/// highest reading: however dense the data (a CGM sends 288 readings a day), a low or a high never
/// disappears from the picture, and the plotted minimum and maximum are the data's.
public enum MinMaxDownsampling {
    /// The points to plot, in time order: for each of `buckets` equal spans of [`start`, `end`), the
    /// bucket's lowest and highest point (the earlier of the two first; once when it is the same point,
    /// the first of equal values). Points before `start` count in the first bucket, after `end` in the
    /// last. At most 2 × `buckets` points.
    ///
    /// - Parameters:
    ///   - points: oldest first.
    ///   - time, value: read a point's instant and value.
    public static func downsample<Point>(
        _ points: [Point], start: Date, end: Date, buckets: Int, time: (Point) -> Date, value: (Point) -> Double
    ) -> [Point] {
        guard buckets > 0, end > start, points.count > 2 * buckets else { return points }
        let span = end.timeIntervalSince(start)
        var result: [Point] = []
        result.reserveCapacity(2 * buckets)
        var bucket = -1
        var low = 0, high = 0
        func flush() {
            guard bucket >= 0 else { return }
            if low == high {
                result.append(points[low])
            } else {
                result.append(points[min(low, high)])
                result.append(points[max(low, high)])
            }
        }
        for i in points.indices {
            let b = min(buckets - 1, max(0, Int(time(points[i]).timeIntervalSince(start) / span * Double(buckets))))
            if b != bucket {
                flush()
                bucket = b
                low = i
                high = i
                continue
            }
            let v = value(points[i])
            if v < value(points[low]) { low = i }
            if v > value(points[high]) { high = i }
        }
        flush()
        return result
    }
}

/// Count, mean, minimum and maximum of a vital's readings over a window (canonical unit).
public struct SeriesStatistics: Sendable, Hashable {
    public var count: Int
    public var mean: Double
    public var minimum: Double
    public var maximum: Double

    /// Nil for no values.
    public init?(_ values: some Collection<Double>) {
        guard let first = values.first else { return nil }
        var sum = 0.0, low = first, high = first
        for v in values {
            sum += v
            low = min(low, v)
            high = max(high, v)
        }
        count = values.count
        mean = sum / Double(values.count)
        minimum = low
        maximum = high
    }

    /// The CGM target range of glucose, 70–180 mg/dL inclusive (international consensus on time in
    /// range, Battelino et al., Diabetes Care 42(8):1593, 2019; outcome definitions in Diabetes Care
    /// 40(12):1622, 2017 — `reference/clinical-and-billing.md`, glucose).
    public static let glucoseTargetRange: ClosedRange<Double> = 70...180

    /// The share of `values` within `range`, 0…1 (readings counted; a CGM reads at a fixed interval,
    /// so this is the share of time); nil for no values.
    public static func timeInRange(_ values: some Collection<Double>, _ range: ClosedRange<Double>) -> Double? {
        guard !values.isEmpty else { return nil }
        return Double(values.reduce(0) { $0 + (range.contains($1) ? 1 : 0) }) / Double(values.count)
    }
}
