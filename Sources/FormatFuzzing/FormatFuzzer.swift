import Foundation
import VitalsDomain
import VitalsFormats

/// A small, fast, reproducible generator (SplitMix64, Steele, Lea & Flood 2014): the same seed gives
/// the same payloads on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What a fuzz run did and found.
public struct FuzzReport: Sendable {
    /// Payloads generated.
    public var inputs = 0
    /// Decoder runs (each payload goes through every format and `auto`).
    public var decodes = 0
    /// Accepted readings, over all decoder runs.
    public var readings = 0
    /// Rejections by reason (message and reading level), over all decoder runs.
    public var rejections: [DeadLetterReason: Int] = [:]
    /// The slowest single payload (all decoders), seconds.
    public var slowestSeconds = 0.0
    /// Broken invariants, with the seed index of the payload; empty when nothing was found.
    public var failures: [String] = []
    public init() {}
}

/// Feeds generated and mutated payloads, seeded from real-shaped fixtures, through every decoder and
/// checks that each ends as readings or rejections with a reason (README "Robustness").
///
/// Invariants per payload and format: decoding returns (no crash, no hang; the slowest payload is
/// reported); a whole-message rejection has a reason and a detail; an accepted message has at least
/// one reading, status value or marker, or is a gateway heartbeat; an accepted reading has a finite canonical value inside its type's
/// plausible range, a time from 2000-01-02 on and not past the allowed skew, and a valid device id.
public struct FormatFuzzer: Sendable {
    public let corpus: [[UInt8]]
    let roots: [JSONValue]
    let decoding = FormatDecoding()
    let receivedAt = Date(timeIntervalSince1970: 1_795_871_400)  // 2026-11-28T13:10:00Z

    /// - Parameter corpus: fixture payloads (valid JSON).
    public init(corpus: [[UInt8]]) {
        self.corpus = corpus
        self.roots = corpus.compactMap { try? CanonicalMessageDecoder.parse($0) }
    }

    /// Reads every `.json` file of a directory as the corpus, in name order.
    public static func corpus(directory: String) throws -> [[UInt8]] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        return names.compactMap { FileManager.default.contents(atPath: directory + "/" + $0).map { Array($0) } }
    }

    /// Runs `count` payloads from `seed`.
    public func run(count: Int, seed: UInt64, progress: ((Int) -> Void)? = nil) -> FuzzReport {
        var report = FuzzReport()
        var rng = SplitMix64(seed: seed)
        let clock = ContinuousClock()
        for i in 0..<count {
            let payload = generate(&rng)
            let started = clock.now
            check(payload, index: i, rng: &rng, report: &report)
            let elapsed = clock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            report.slowestSeconds = max(report.slowestSeconds, seconds)
            report.inputs += 1
            if let progress, (i + 1) % 100_000 == 0 { progress(i + 1) }
        }
        return report
    }

    /// One payload through every format.
    func check(_ payload: [UInt8], index: Int, rng: inout SplitMix64, report: inout FuzzReport) {
        let root: JSONValue
        do throws(Rejection) {
            guard payload.count <= decoding.canonical.maxPayloadBytes else {
                throw Rejection(.tooLarge, "payload exceeds the limit")
            }
            root = try CanonicalMessageDecoder.parse(payload)
        } catch {
            report.decodes += 1
            report.rejections[error.reason, default: 0] += 1
            if error.detail.isEmpty { report.failures.append("input \(index): rejection without detail") }
            return
        }
        let topicDevice: String? = rng.next() % 2 == 0 ? "dev-1" : nil
        let zone: TimeZone? = rng.next() % 2 == 0 ? TimeZone(identifier: "America/Chicago") : nil
        let context = DecodeContext(topicDeviceID: topicDevice, receivedAt: receivedAt, localTimeZone: { _ in zone })
        for format in MessageFormat.allCases {
            report.decodes += 1
            do {
                let message = try decoding.decode(root: root, format: format, context: context)
                if message.readings.isEmpty && message.status.isEmpty && message.markers.isEmpty && !message.isHeartbeat {
                    report.failures.append("input \(index) \(format.rawValue): accepted without reading, status or marker")
                }
                if let topicDevice, message.deviceID != topicDevice {
                    report.failures.append("input \(index) \(format.rawValue): device differs from the topic's")
                }
                for r in message.readings {
                    switch r {
                    case .success(let o):
                        report.readings += 1
                        if let problem = Self.problem(o, receivedAt: receivedAt) {
                            report.failures.append("input \(index) \(format.rawValue): \(problem)")
                        }
                    case .failure(let e):
                        report.rejections[e.reason, default: 0] += 1
                        if e.detail.isEmpty { report.failures.append("input \(index) \(format.rawValue): rejection without detail") }
                    }
                }
            } catch {
                report.rejections[error.reason, default: 0] += 1
                if error.detail.isEmpty { report.failures.append("input \(index) \(format.rawValue): rejection without detail") }
            }
        }
    }

    static func problem(_ o: Observation, receivedAt: Date) -> String? {
        if !o.canonicalValue.isFinite || !o.type.plausibleRange.contains(o.canonicalValue) { return "canonical value out of range" }
        if !o.value.isFinite { return "value not finite" }
        // Every format refuses 2000-01-01, the reset day of unset device clocks.
        if o.measuredAt < Date(timeIntervalSince1970: 946_771_200) { return "time before 2000-01-02" }
        if o.measuredAt.timeIntervalSince(receivedAt) > 600 { return "time in the future" }
        if !DeviceIdentifier.isValid(o.deviceID) { return "invalid device id" }
        return nil
    }

    // MARK: generation

    /// One payload: a structural mutation of a fixture (60 %), a byte mutation (30 %), or random JSON (10 %).
    public func generate(_ rng: inout SplitMix64) -> [UInt8] {
        let roll = rng.next() % 10
        if roll < 6, !roots.isEmpty {
            var root = roots[Int(rng.next() % UInt64(roots.count))]
            for _ in 0...(rng.next() % 4) { root = mutate(root, &rng, depth: 0) }
            return JSONWriter.bytes(root)
        }
        if roll < 9, !corpus.isEmpty {
            var bytes = corpus[Int(rng.next() % UInt64(corpus.count))]
            for _ in 0...(rng.next() % 8) { mutateBytes(&bytes, &rng) }
            return bytes
        }
        return JSONWriter.bytes(randomValue(&rng, depth: 0))
    }

    func mutate(_ value: JSONValue, _ rng: inout SplitMix64, depth: Int) -> JSONValue {
        switch value {
        case .object(var o) where !o.isEmpty && depth < 12:
            let keys = o.keys.sorted()
            let key = keys[Int(rng.next() % UInt64(keys.count))]
            switch rng.next() % 8 {
            case 0: o[key] = nil
            case 1: o[key] = randomValue(&rng, depth: depth + 4)
            case 2:
                let v = o[key]
                o[key] = nil
                o[key + (rng.next() % 2 == 0 ? " " : "_")] = v
            case 3: o[key.uppercased()] = o[key]
            default: o[key] = mutate(o[key]!, &rng, depth: depth + 1)
            }
            return .object(o)
        case .array(var a) where !a.isEmpty && depth < 12:
            let i = Int(rng.next() % UInt64(a.count))
            switch rng.next() % 6 {
            case 0: a.remove(at: i)
            case 1: a.append(contentsOf: Array(repeating: a[i], count: Int(rng.next() % (rng.next() % 20 == 0 ? 600 : 20))))
            case 2: a.insert(randomValue(&rng, depth: depth + 4), at: i)
            default: a[i] = mutate(a[i], &rng, depth: depth + 1)
            }
            return .array(a)
        case .number(let d):
            return rng.next() % 3 == 0 ? Self.edgeNumbers.randomElement(using: &rng)!.map(JSONValue.number) ?? .null
                : rng.next() % 2 == 0 ? .string(JSONWriter.number(d)) : .number(d * Double(Int(rng.next() % 2001) - 1000) / 100)
        case .string(let s):
            return rng.next() % 2 == 0 ? .string(Self.edgeStrings.randomElement(using: &rng)!) : .string(mutateText(s, &rng))
        default:
            return randomValue(&rng, depth: depth + 4)
        }
    }

    static let edgeNumbers: [Double?] = [
        0, -1, 1, 39, 401, 255, 2046, 2047, 2048, 2049, 2050, 0.5, 97, 0.97, 1e308, -1e308, 1e-300, 9.007199254740993e15,
        268_435_455, 268_435_456, 946_684_800, 946_684_800_000, 1_721_382_524, 1_721_382_524_000, 1_721_382_524_000_000,
        1_795_871_400, 1_795_871_400_000, 2_000_000_000_000, -617_292_592, 1e14, 99_999_999_999, nil,
    ]
    static let edgeStrings: [String] = [
        "", "HI", "LO", "Err", "E1", ">600", "<20", "128.00", " 98.6 ", "1e5", "NaN", "inf", "-0", "0x1F", "pwr", "1",
        "2024-02-30T10:00:00Z", "2024-09-10T14:19:32", "2012-09-17", "2024-09-10T14:19:32+0100", "2024-09-10 14:19:32.5",
        "1970-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-03-08T02:30:00", "1721382524000",
        "mmHg", "mm[Hg]", "%", "/", "/100", "Pa", "kg/m3", "mmol/L", "mg/dL", "lb", "F", "C", "unknown", "beat/min",
        "urn:dev:imei:860000000000001:", "rpm/gw01/bpcuff-7/", "a/b/../c", "Device/x", "urn:uuid:", "\u{0}", "é€😀",
        String(repeating: "9", count: 400), "egv", "Observation", "Bundle", "transaction", "entered-in-error",
        "reportAttribute", "HB_Msg", "WBP_JUMPER", "Oximeter_JUMPER",
    ]

    func mutateText(_ s: String, _ rng: inout SplitMix64) -> String {
        var scalars = Array(s.unicodeScalars)
        guard !scalars.isEmpty else { return "x" }
        let i = Int(rng.next() % UInt64(scalars.count))
        switch rng.next() % 4 {
        case 0: scalars.remove(at: i)
        case 1: scalars.insert(Unicode.Scalar(UInt8(rng.next() % 95 + 32)), at: i)
        case 2: scalars = Array(scalars.prefix(i))
        default: scalars[i] = Unicode.Scalar(UInt8(rng.next() % 95 + 32))
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out)
    }

    func mutateBytes(_ bytes: inout [UInt8], _ rng: inout SplitMix64) {
        guard !bytes.isEmpty else {
            bytes = [UInt8(rng.next() & 0xFF)]
            return
        }
        let i = Int(rng.next() % UInt64(bytes.count))
        switch rng.next() % 6 {
        case 0: bytes[i] ^= UInt8(1 << (rng.next() % 8))
        case 1: bytes.insert(UInt8(rng.next() & 0xFF), at: i)
        case 2: bytes.remove(at: i)
        case 3: bytes = Array(bytes.prefix(i))
        case 4:
            let token = Array(["\"", "{", "}", "[", "]", ",", ":", "-", "0", "e", "\\u0000", "null", "\"HI\""]
                .randomElement(using: &rng)!.utf8)
            bytes.insert(contentsOf: token, at: i)
        default:
            let j = Int(rng.next() % UInt64(bytes.count))
            bytes.swapAt(i, j)
        }
    }

    func randomValue(_ rng: inout SplitMix64, depth: Int) -> JSONValue {
        let pick = depth > 8 ? rng.next() % 4 : rng.next() % 7
        switch pick {
        case 0: return .null
        case 1: return .bool(rng.next() % 2 == 0)
        case 2: return Self.edgeNumbers.randomElement(using: &rng)!.map(JSONValue.number) ?? .number(Double(Int64(bitPattern: rng.next()) % 100_000))
        case 3: return .string(Self.edgeStrings.randomElement(using: &rng)!)
        case 4: return .array((0..<(rng.next() % 4)).map { _ in randomValue(&rng, depth: depth + 1) })
        case 5:
            let keys = ["bn", "n", "v", "u", "t", "bt", "metric", "value_1", "timestamp", "resourceType", "code", "records",
                        "measures", "deviceId", "ts", "data", "readingType", "BPDataList", "readings", "type", "value", "unit",
                        "attribute", "ble_mac", "time"]
            var o: [String: JSONValue] = [:]
            for _ in 0..<(rng.next() % 5) { o[keys.randomElement(using: &rng)!] = randomValue(&rng, depth: depth + 1) }
            return .object(o)
        default:
            // Deep nesting: parsers and decoders must not recurse without bound.
            var v = JSONValue.number(1)
            for _ in 0..<(rng.next() % 300) { v = rng.next() % 2 == 0 ? .array([v]) : .object(["v": v]) }
            return v
        }
    }
}

/// Writes a ``JSONValue`` as JSON text (members in key order, numbers in shortest round-trip form).
public enum JSONWriter {
    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        write(value, into: &out)
        return out
    }

    static func number(_ d: Double) -> String {
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        return "\(d)"
    }

    static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .number(let d): out += Array((d.isFinite ? number(d) : "0").utf8)
        case .string(let s): string(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(v, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                string(k, into: &out)
                out.append(UInt8(ascii: ":"))
                write(o[k]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += Array("\\\"".utf8)
            case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
