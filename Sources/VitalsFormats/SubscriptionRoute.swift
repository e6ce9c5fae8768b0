import Foundation
import VitalsDomain

/// One subscribed topic filter and how its messages are read: the format, where the device id is,
/// and the time zone for naive local times (`mqtt.subscriptions` in the configuration).
///
/// The device id comes from the topic when the filter has a `+` level (`tenovi/+/measurements`), and
/// then a device the payload names must be the same (`device_mismatch` otherwise); from the payload
/// when the filter has none (`gateways/qube/tx`): the format's own device field (``PayloadDecoder``
/// docs), or `device_field` when configured.
public struct SubscriptionRoute: Sendable, Hashable {
    public let filter: DeviceTopicFilter
    public let format: MessageFormat
    /// A dotted path of a payload member naming the device (`data.ble_mac`), or nil.
    public let deviceField: String?
    /// The zone for naive local times; nil to use the patient's.
    public let timeZone: TimeZone?

    /// - Throws: ``Rejection`` `bad_topic` for a filter with more than one `+`, or with none when the
    ///   format cannot name a device in the payload (iHealth and LibreLinkUp have no device id) and no
    ///   `device_field` is set.
    public init(topic: String, format: MessageFormat = .canonical, deviceField: String? = nil, timeZone: TimeZone? = nil) throws(Rejection) {
        self.filter = try DeviceTopicFilter(topic, deviceInTopic: false)
        if !filter.namesDevice && (format == .ihealth || format == .librelinkup) && deviceField == nil {
            throw Rejection(.badTopic, "topic filter '\(topic)' has no '+' level, and \(format.rawValue) payloads name no device: set device_field")
        }
        self.format = format
        self.deviceField = deviceField
        self.timeZone = timeZone
    }

    /// The first route whose filter matches `topic`, with the device id its topic names (nil when
    /// the device is in the payload), or nil when no route matches.
    public static func match(_ topic: String, in routes: [SubscriptionRoute]) -> (route: SubscriptionRoute, deviceID: String?)? {
        for route in routes {
            if route.filter.namesDevice {
                if let device = route.filter.deviceID(in: topic) { return (route, device) }
            } else if route.filter.matches(topic) {
                return (route, nil)
            }
        }
        return nil
    }
}
