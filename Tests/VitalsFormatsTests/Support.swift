import Foundation
import VitalsDomain
import VitalsFormats

/// 2026-11-28T13:10:00Z: every fixture lies before it.
let received = Date(timeIntervalSince1970: 1_795_871_400)

/// The bytes of a fixture under `Tests/VitalsFormatsTests/Fixtures`.
func fixture(_ name: String) throws -> [UInt8] {
    let path = fixturesDirectory() + "/" + name
    guard let data = FileManager.default.contents(atPath: path) else { throw FixtureMissing(name: name) }
    return Array(data)
}

func fixturesDirectory() -> String {
    (Bundle.module.resourcePath ?? ".") + "/Fixtures"
}

struct FixtureMissing: Error { var name: String }

/// Decodes bytes in a format, as the ingest path does.
func decode(
    _ payload: [UInt8], _ format: MessageFormat, topicDevice: String? = nil, deviceField: String? = nil,
    zone: TimeZone? = nil, receivedAt: Date = received
) throws(Rejection) -> DecodedMessage {
    let context = DecodeContext(
        topicDeviceID: topicDevice, deviceField: deviceField, receivedAt: receivedAt, localTimeZone: { _ in zone })
    return try FormatDecoding().decode(payload: payload, format: format, context: context)
}

func decode(
    _ json: String, _ format: MessageFormat, topicDevice: String? = nil, zone: TimeZone? = nil, receivedAt: Date = received
) throws(Rejection) -> DecodedMessage {
    try decode(Array(json.utf8), format, topicDevice: topicDevice, zone: zone, receivedAt: receivedAt)
}

extension DecodedMessage {
    /// The accepted readings.
    var accepted: [Observation] { readings.compactMap { try? $0.get() } }
    /// Each reading's outcome: `ok` or the rejection reason.
    var outcomes: [String] {
        readings.map { r in
            switch r {
            case .success: "ok"
            case .failure(let e): e.reason.rawValue
            }
        }
    }
}

/// Equal to 6 decimals (canonical values are rounded to 6 decimals).
func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-5 }

func at(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }
