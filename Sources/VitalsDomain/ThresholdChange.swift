import Foundation

extension ThresholdPolicy {
    /// Why a patient's own limit of `value` for `slot` must be refused, or nil when it can be set: it
    /// lies outside the type's plausible range (``VitalType/plausibleRange``), or with it the limits in
    /// force would be out of order (``ThresholdLimits/orderingProblem``). The check of
    /// `vitalsd threshold set` and of the patient chart's limit form.
    ///
    /// - Parameters:
    ///   - value: in the type's canonical unit.
    ///   - programs: the patient's programs; `overrides`: their own limits now.
    public func problemSetting(
        _ slot: ThresholdSlot, to value: Double, programs: [Program], overrides: [ThresholdSlot: Double]
    ) -> String? {
        let type = slot.type
        guard type.plausibleRange.contains(value) else {
            return "\(Observation.format(value)) \(type.canonicalUnit.rawValue) is outside the plausible range of \(type.rawValue)"
        }
        var changed = overrides
        changed[slot] = value
        if let problem = effectiveLimits(for: type, programs: programs, overrides: changed).limits.orderingProblem {
            return "refused: with this limit, \(type.rawValue) \(problem)"
        }
        return nil
    }
}
