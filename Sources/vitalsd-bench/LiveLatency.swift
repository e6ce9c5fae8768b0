import ArgumentParser
import Dispatch
import Foundation
import GRDB
import Glibc
import MQTTClient
import Synchronization

/// Measures live latency: publishes canonical glucose readings at a fixed rate and times each one
/// from its publish to the moment its row is visible in the daemon's database.
///
/// A reading, its threshold evaluation and any task it opens or updates commit in one transaction
/// (README, "What happens to a message"), so the moment the row is visible is also the moment its
/// task is committed. Each message carries `message_id` `live-<n>`; a reader thread polls
/// `readings` every millisecond (WAL mode: reads never block the daemon's writes), so latencies are
/// accurate to about 1 ms. Times come from one monotonic clock in this process.
@main
struct LiveLatency: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitalsd-bench",
        abstract: "Publishes readings at a fixed rate and reports publish-to-commit latency percentiles (milliseconds).")

    @Option(help: "Broker host.") var host = "127.0.0.1"
    @Option(help: "Broker port.") var port: Int
    @Option(help: "The daemon's SQLite database (read only).") var database: String
    @Option(help: "Messages per second.") var rate = 5000.0
    @Option(help: "Seconds of traffic.") var seconds = 20.0
    @Option(help: "Devices bench-d1...bench-dN (enrolled beforehand).") var devices = 1000
    @Option(help: "Device id prefix.") var devicePrefix = "bench-d"
    @Option(help: "Seconds to wait for the last readings after publishing ends.") var drainTimeout = 30.0
    @Option(help: ArgumentHelp("Writes each message's publish time and latency (ms since the first publish, ms) to this file.", valueName: "FILE"))
    var latencies: String?

    func run() throws {
        MosquittoLibrary.initialize()
        let total = Int(rate * seconds)
        let probe = CommitProbe(count: total)
        let reader = try DatabaseQueue(path: database, configuration: {
            var c = Configuration()
            c.readonly = true
            c.busyMode = .timeout(5)
            return c
        }())
        let firstID = try reader.read { db in try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), 0) FROM readings") } ?? 0
        let polling = Thread { probe.poll(reader, after: firstID) }
        polling.start()

        // This tool paces its publishing on the main thread, outside Swift's cooperative pool: wait for
        // the connection here.
        let connected = Mutex<Result<MQTTPublisher, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let (host, port) = (self.host, self.port)
        Task {
            let result: Result<MQTTPublisher, any Error>
            do {
                result = .success(try await MQTTPublisher.connect(host: host, port: port, clientID: "vitalsd-bench-\(getpid())"))
            } catch {
                result = .failure(error)
            }
            connected.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        let publisher = try connected.withLock { $0! }.get()
        // measured_at: one second apart, ending two days ago, so that no two readings share a key.
        let base = Int64(Date().timeIntervalSince1970) - 2 * 86_400 - Int64(total)
        var random = SystemRandomNumberGenerator()
        let interval = 1e9 / rate
        let start = DispatchTime.now().uptimeNanoseconds
        for n in 0..<total {
            let due = start + UInt64(Double(n) * interval)
            let now = DispatchTime.now().uptimeNanoseconds
            if due > now { usleep(UInt32((due - now) / 1000)) }
            // About 5 % breach the diabetes thresholds (< 70 or >= 250 mg/dL).
            let breach = Int.random(in: 0..<20, using: &random) == 0
            let value = breach ? (Bool.random(using: &random) ? Int.random(in: 50..<65, using: &random) : Int.random(in: 260..<360, using: &random))
                : Int.random(in: 80..<170, using: &random)
            let measuredAt = (base + Int64(n)) * 1000
            let payload = #"{"measured_at":\#(measuredAt),"message_id":"live-\#(n)","type":"glucose","value":\#(value),"unit":"mg/dL"}"#
            probe.published(n)
            try publisher.publish(topic: "devices/\(devicePrefix)\(n % devices + 1)/readings", payload: Array(payload.utf8))
        }
        let sent = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let deadline = Date().addingTimeInterval(drainTimeout)
        while probe.seenCount < total && Date() < deadline { usleep(10_000) }
        probe.stop()
        publisher.close()

        if let path = latencies {
            let lines = probe.timeline().map { String(format: "%.3f %.3f", $0.publishedMS, $0.latencyMS) }
            try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        let latencies = probe.latenciesMilliseconds().sorted()
        func percentile(_ p: Double) -> Double {
            guard !latencies.isEmpty else { return .nan }
            return latencies[min(latencies.count - 1, Int((p * Double(latencies.count)).rounded(.up)) - 1)]
        }
        // One line of key=value pairs, for scripts.
        print(String(
            format: "published=%d stored=%d rate=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f",
            total, latencies.count, Double(total) / sent, percentile(0.5), percentile(0.9), percentile(0.99),
            latencies.last ?? .nan))
    }
}

/// Publish instants and first-seen instants, indexed by message number (uptime nanoseconds).
final class CommitProbe: Sendable {
    private let state: Mutex<(publishedAt: [UInt64], seenAt: [UInt64], seen: Int)>
    private let stopping = Atomic<Bool>(false)

    init(count: Int) {
        state = Mutex((Array(repeating: 0, count: count), Array(repeating: 0, count: count), 0))
    }

    func published(_ n: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        state.withLock { $0.publishedAt[n] = now }
    }

    var seenCount: Int { state.withLock { $0.seen } }

    func stop() { stopping.store(true, ordering: .relaxed) }

    /// Reads new `live-` rows every millisecond until stopped.
    func poll(_ reader: DatabaseQueue, after firstID: Int64) {
        var last = firstID
        while !stopping.load(ordering: .relaxed) {
            let rows = (try? reader.read { db in
                try Row.fetchAll(db, sql: "SELECT id, message_id FROM readings WHERE id > ? ORDER BY id", arguments: [last])
            }) ?? []
            let now = DispatchTime.now().uptimeNanoseconds
            var numbers: [Int] = []
            for row in rows {
                last = row["id"]
                if let id: String = row["message_id"], id.hasPrefix("live-"), let n = Int(id.dropFirst(5)) {
                    numbers.append(n)
                }
            }
            if !numbers.isEmpty {
                state.withLock { s in
                    for n in numbers where n < s.seenAt.count && s.seenAt[n] == 0 {
                        s.seenAt[n] = now
                        s.seen += 1
                    }
                }
            }
            usleep(1000)
        }
    }

    /// Each stored message's publish time (ms after the first publish) and latency (ms), in publish order.
    func timeline() -> [(publishedMS: Double, latencyMS: Double)] {
        state.withLock { s in
            let first = s.publishedAt.first ?? 0
            return zip(s.publishedAt, s.seenAt).compactMap { p, c in
                c > p && p > 0 ? (Double(p - first) / 1e6, Double(c - p) / 1e6) : nil
            }
        }
    }

    func latenciesMilliseconds() -> [Double] { timeline().map(\.latencyMS) }
}
