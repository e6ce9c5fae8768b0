import Foundation
import MQTTClient

/// Publishes readings as a device would, for demos, tests and re-feeding stored files.
public enum Replay {
    /// What a replay published.
    public struct Result: Sendable {
        public var published: Int
        /// Wall-clock seconds from the first publish to the broker's last acknowledgement.
        public var seconds: Double
    }

    /// Publishes every reading as a canonical v1 message on `topicTemplate` (with `{device_id}` replaced).
    ///
    /// - Parameters:
    ///   - readings: in file order; sent in measurement-time order.
    ///   - speed: nil for as fast as the broker accepts; otherwise the factor by which the gaps between
    ///     measurement times are shortened (60 plays an hour in a minute).
    ///   - rebase: shift every time by the same amount so that the last reading is measured now.
    /// - Throws: ``MQTTError`` when publishing fails or the broker does not acknowledge in time.
    public static func run(
        _ readings: [ReplayReading], publisher: MQTTPublisher, topicTemplate: String = "devices/{device_id}/readings",
        speed: Double? = nil, rebase: Bool = false, now: Date = Date()
    ) async throws -> Result {
        var sorted = readings.enumerated().sorted { ($0.element.measuredAt, $0.offset) < ($1.element.measuredAt, $1.offset) }
            .map(\.element)
        if rebase, let last = sorted.last?.measuredAt {
            let shift = now.timeIntervalSince(last)
            sorted = sorted.map { var r = $0; r.measuredAt += shift; return r }
        }
        let start = Date()
        var previous: Date?
        for reading in sorted {
            if let speed, speed > 0, let previous {
                let gap = reading.measuredAt.timeIntervalSince(previous) / speed
                if gap > 0.001 { try await Task.sleep(for: .seconds(gap)) }
            }
            previous = reading.measuredAt
            let topic = topicTemplate.replacingOccurrences(of: "{device_id}", with: reading.deviceID)
            try publisher.publish(topic: topic, payload: reading.canonicalPayload())
        }
        try await publisher.waitUntilDelivered(timeout: max(60, Double(sorted.count) / 500))
        return Result(published: sorted.count, seconds: Date().timeIntervalSince(start))
    }
}
