import Foundation
import VitalsDomain

/// Decodes a raw payload in a subscription's format: the checks every format shares (size, UTF-8,
/// JSON, repeated members), then the format's decoder, or detection for `auto`.
public struct FormatDecoding: Sendable {
    /// The canonical decoder; its ``CanonicalMessageDecoder/maxPayloadBytes`` and time policy apply to
    /// every format.
    public var canonical: CanonicalMessageDecoder

    public init(canonical: CanonicalMessageDecoder = .init()) {
        self.canonical = canonical
    }

    /// The decoder of a format (`auto` has none: use ``FormatDetector``).
    public func decoder(for format: MessageFormat) -> (any PayloadDecoder)? {
        switch format {
        case .canonical: CanonicalDecoder(decoder: canonical)
        case .senml: SenMLDecoder()
        case .fhir: FHIRDecoder()
        case .tenovi: TenoviDecoder()
        case .bodytrace: BodyTraceDecoder()
        case .withings: WithingsDecoder()
        case .dexcom: DexcomDecoder()
        case .telli: TelliDecoder()
        case .ihealth: IHealthDecoder()
        case .qube: QubeVitalDecoder()
        case .smartmeter: SmartMeterDecoder()
        case .librelinkup: LibreLinkUpDecoder()
        case .impilo: ImpiloDecoder()
        case .auto: nil
        }
    }

    /// Decodes one payload.
    ///
    /// - Parameters:
    ///   - payload: the raw bytes.
    ///   - format: the subscription's format.
    ///   - context: device, receive time and time rules.
    /// - Returns: the readings, each accepted or rejected, and any device status and events.
    /// - Throws: ``Rejection`` for the message as a whole: `too_large`, `invalid_utf8`,
    ///   `malformed_json`, `unknown_format`, `missing_field`, `device_mismatch`, `bad_topic`.
    public func decode(payload: [UInt8], format: MessageFormat, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard payload.count <= canonical.maxPayloadBytes else {
            throw Rejection(.tooLarge, "payload of \(payload.count) bytes exceeds limit of \(canonical.maxPayloadBytes)")
        }
        let root = try CanonicalMessageDecoder.parse(payload)
        return try decode(root: root, format: format, context: context)
    }

    /// Decodes a parsed payload (see ``decode(payload:format:context:)``).
    public func decode(root: JSONValue, format: MessageFormat, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        var context = context
        context.timePolicy = canonical.timePolicy
        let chosen = format == .auto ? FormatDetector.detect(root) : format
        guard let chosen, let decoder = decoder(for: chosen) else {
            throw Rejection(.unknownFormat, "format auto: the payload matches none of the detection rules")
        }
        var message = try decoder.decode(root, context: context)
        message.format = chosen.rawValue
        return message
    }
}

/// The rules of `format: auto`, tried in this order; the first that matches decides.
///
/// 1. `resourceType` member → `fhir`.
/// 2. An array whose first element has `metric` and `hwi_device_id`, or such an object → `tenovi`.
/// 3. An array whose first element has `FactoryTimestamp`, such an object, a `data` array whose first
///    element has it (the logbook response), or `glucoseMeasurement` or `graphData` at the top, in
///    `data` or in `data.connection` → `librelinkup`.
/// 4. `readingTimestamp` (object, or first array element) → `impilo`.
/// 5. An array whose first element is an object with a SenML label (`bn`, `bt`, `bu`, `bv`, `bver`,
///    `n`, `v`, `vs`, `vb`, `u`, `t`, `s`) → `senml`.
/// 6. `recordType` = `egv`, or `records`/`egvs` arrays of objects with `systemTime` → `dexcom`.
/// 7. `BPDataList`, `WeightDataList` or `BODataList` → `ihealth`.
/// 8. `measuregrps` (at the top or in `body`), `measures`, or an array whose first object has
///    `measures` → `withings`.
/// 9. `type` = `reportAttribute` or `HB_Msg` → `qube`.
/// 10. `readingType`, or `deviceId` with `data`, or `genVer` → `telli`.
/// 11. `deviceId` with `ts` → `bodytrace`.
/// 12. `readings` whose first element has `reading_type`, or `reading_type` with `device_id` →
///     `smartmeter` (canonical readings have `type`).
/// 13. `readings`, or `type` with `value` → `canonical`.
///
/// Nothing matched: `unknown_format`. A subscription that knows its format should name it: detection
/// costs nothing in accuracy for these shapes, but a new vendor shape is refused rather than guessed.
public enum FormatDetector {
    static let senmlLabels: Set<String> = ["bn", "bt", "bu", "bv", "bver", "bs", "n", "v", "vs", "vb", "vd", "u", "t", "s", "ut"]

    /// The detected format, or nil.
    public static func detect(_ root: JSONValue) -> MessageFormat? {
        if let array = root.arrayValue {
            guard let first = array.first?.objectValue else { return nil }
            if first["metric"] != nil && first["hwi_device_id"] != nil { return .tenovi }
            if first["FactoryTimestamp"] != nil { return .librelinkup }
            if first["readingTimestamp"] != nil { return .impilo }
            if !first.isEmpty && first.keys.contains(where: senmlLabels.contains) && first["metric"] == nil { return .senml }
            if first["measures"] != nil { return .withings }
            return nil
        }
        guard let o = root.objectValue else { return nil }
        if o["resourceType"] != nil { return .fhir }
        if o["metric"] != nil && o["hwi_device_id"] != nil { return .tenovi }
        if o["FactoryTimestamp"] != nil || o["data"]?.arrayValue?.first?["FactoryTimestamp"] != nil { return .librelinkup }
        if o["readingTimestamp"] != nil { return .impilo }
        for holder in [root, o["data"], o["data"]?["connection"]] where holder?["glucoseMeasurement"] != nil || holder?["graphData"] != nil {
            return .librelinkup
        }
        if o["recordType"]?.stringValue == "egv" { return .dexcom }
        for key in ["records", "egvs"] {
            if let first = o[key]?.arrayValue?.first?.objectValue, first["systemTime"] != nil { return .dexcom }
        }
        if o["BPDataList"] != nil || o["WeightDataList"] != nil || o["BODataList"] != nil { return .ihealth }
        if o["measuregrps"] != nil || o["body"]?["measuregrps"] != nil || o["measures"] != nil { return .withings }
        if let type = o["type"]?.stringValue, type == "reportAttribute" || type == "HB_Msg" { return .qube }
        if o["readingType"] != nil || o["genVer"] != nil || (o["deviceId"] != nil && o["data"] != nil) { return .telli }
        if o["deviceId"] != nil && o["ts"] != nil { return .bodytrace }
        if o["readings"]?.arrayValue?.first?["reading_type"] != nil || (o["reading_type"] != nil && o["device_id"] != nil) {
            return .smartmeter
        }
        if o["readings"] != nil || (o["type"] != nil && o["value"] != nil) { return .canonical }
        return nil
    }
}

/// vitalsd's canonical format (README "Canonical message format"), as a ``PayloadDecoder``.
///
/// The device comes from the topic; on a subscription without a device in the topic, from the
/// payload's `device_id` (or the configured device field).
public struct CanonicalDecoder: PayloadDecoder {
    public var decoder: CanonicalMessageDecoder
    public var format: MessageFormat { .canonical }

    public init(decoder: CanonicalMessageDecoder = .init()) { self.decoder = decoder }

    public func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage {
        guard case .object = root else { throw Rejection(.malformedJSON, "payload is JSON but not an object") }
        let device = try resolveDevice(root, payloadDevice: context.topicDeviceID == nil ? root["device_id"]?.identifier : nil,
                                       context: context)
        var d = decoder
        d.timePolicy = context.timePolicy
        return try d.decode(root: root, deviceID: device, receivedAt: context.receivedAt)
    }
}
