import Foundation
import Testing
import VitalsDomain

@Suite("UCUM units and numeric values")
struct UnitsAndValuesTests {
    @Test("common spellings map to UCUM codes")
    func spellings() {
        #expect(UCUMUnit(spelling: "mmHg") == .millimetreOfMercury)
        #expect(UCUMUnit(spelling: "mm[Hg]") == .millimetreOfMercury)
        #expect(UCUMUnit(spelling: "bpm") == .perMinute)
        #expect(UCUMUnit(spelling: "/min") == .perMinute)
        #expect(UCUMUnit(spelling: "lb") == .pound)
        #expect(UCUMUnit(spelling: "lbs") == .pound)
        #expect(UCUMUnit(spelling: "°C") == .celsius)
        #expect(UCUMUnit(spelling: "°F") == .fahrenheit)
        #expect(UCUMUnit(spelling: "mmol/L") == .millimolePerLitre)
        #expect(UCUMUnit(spelling: "mg/dl") == .milligramPerDecilitre)
        #expect(UCUMUnit(spelling: "furlongs") == nil)
        #expect(UCUMUnit(spelling: "") == nil)
    }

    @Test("blanks around a spelling are ignored, inside one they are part of it")
    func spellingsWithBlanks() {
        #expect(UCUMUnit(spelling: " mg/dL") == .milligramPerDecilitre)
        #expect(UCUMUnit(spelling: "mg/dL\t") == .milligramPerDecilitre)
        #expect(UCUMUnit(spelling: "\u{00A0}kg\u{00A0}") == .kilogram)
        #expect(UCUMUnit(spelling: "mm Hg") == .millimetreOfMercury)
        #expect(UCUMUnit(spelling: "mg/ dL") == nil)
        #expect(UCUMUnit(spelling: "°C ") == .celsius)
    }

    @Test("conversions use the reference factors")
    func conversions() throws {
        // 5.0 mmol/L × 18.018 = 90.09 mg/dL
        #expect(abs(try #require(UCUMUnit.millimolePerLitre.convert(5.0, to: .milligramPerDecilitre)) - 90.09) < 1e-9)
        // 180 lb × 0.45359237 = 81.6466266 kg
        #expect(abs(try #require(UCUMUnit.pound.convert(180, to: .kilogram)) - 81.6466266) < 1e-9)
        // (100.4 − 32) × 5/9 = 38.0 °C
        #expect(abs(try #require(UCUMUnit.fahrenheit.convert(100.4, to: .celsius)) - 38.0) < 1e-9)
        // 24 kPa × 7.50062 = 180.01488 mmHg
        #expect(abs(try #require(UCUMUnit.kilopascal.convert(24, to: .millimetreOfMercury)) - 180.01488) < 1e-9)
        #expect(UCUMUnit.millimolePerLitre.convert(5, to: .kilogram) == nil)
    }

    @Test("one numeric parser: numbers and plain numeric strings only")
    func numbers() throws {
        #expect(try NumericValue.parse(.number(145), field: "value") == 145)
        #expect(try NumericValue.parse(.string("145"), field: "value") == 145)
        #expect(try NumericValue.parse(.string(" 98.6 "), field: "value") == 98.6)
        #expect(try NumericValue.parse(.string("-3.5"), field: "value") == -3.5)
        for bad: JSONValue in [.string("HI"), .string("LO"), .string(""), .string("1e3"), .string("NaN"), .string("0x10"),
                               .bool(true), .null, .array([]), .object([:])] {
            #expect(throws: Rejection.self) { try NumericValue.parse(bad, field: "value") }
        }
    }

    @Test("observations reject unknown types, bad units and implausible values")
    func observationChecks() throws {
        let t = Date(timeIntervalSince1970: 1_795_871_400)
        func make(_ type: String, _ value: JSONValue, _ unit: String?) -> DeadLetterReason? {
            do {
                _ = try Observation.make(deviceID: "d", typeName: type, value: value, unit: unit.map { .string($0) }, measuredAt: t)
                return nil
            } catch {
                return error.reason
            }
        }
        #expect(make("glucose", .number(110), "mg/dL") == nil)
        #expect(make("pulse_pressure", .number(50), "mmHg") == .unknownType)
        #expect(make("glucose", .number(110), nil) == .badUnit)
        #expect(make("glucose", .number(110), "mmHg") == .badUnit)
        #expect(make("body_weight", .number(80), "mmol/L") == .badUnit)
        // F20: 110 "mmol/L" would be 1,981.98 mg/dL: implausible, quarantined.
        #expect(make("glucose", .number(110), "mmol/L") == .implausibleValue)
        // F21: 2047 is an SFLOAT error code, not a pressure.
        #expect(make("systolic_bp", .number(2047), "mmHg") == .implausibleValue)
        #expect(make("systolic_bp", .number(0), "mmHg") == .implausibleValue)
        #expect(make("glucose", .string("HI"), "mg/dL") == .notANumber)
        #expect(make("spo2", .number(101), "%") == .implausibleValue)
        let o = try Observation.make(deviceID: "d", typeName: "glucose", value: .number(5), unit: .string("mmol/L"), measuredAt: t)
        #expect(o.value == 5)
        #expect(o.unit == "mmol/L")
        #expect(abs(o.canonicalValue - 90.09) < 1e-9)
    }
}

@Suite("measurement times")
struct MeasurementTimeTests {
    let policy = MeasurementTimePolicy()
    // 2026-11-28T13:10:00Z = 1,795,871,400 s since 1970 (by hand: python datetime).
    let received = Date(timeIntervalSince1970: 1_795_871_400)

    @Test("RFC 3339 with an offset, Z, and fractional seconds")
    func rfc3339() throws {
        #expect(try policy.measurementTime(from: .string("2026-11-28T07:10:00-06:00"), receivedAt: received).timeIntervalSince1970 == 1_795_871_400)
        #expect(try policy.measurementTime(from: .string("2026-11-28T13:10:00Z"), receivedAt: received).timeIntervalSince1970 == 1_795_871_400)
        #expect(try policy.measurementTime(from: .string("2026-11-28T13:09:59.250Z"), receivedAt: received).timeIntervalSince1970 == 1_795_871_399.25)
    }

    @Test("epoch milliseconds; seconds-as-milliseconds land in 1970 and are refused (F9)")
    func epoch() throws {
        #expect(try policy.measurementTime(from: .number(1_795_871_400_000), receivedAt: received).timeIntervalSince1970 == 1_795_871_400)
        // A wrong clock: the rejection carries the receive time, by which the value is kept for a device task.
        var unset = Rejection(.badTimestamp, "measured_at is before 2000-01-02 (device clock unset, or seconds sent as milliseconds)")
        unset.clockReceivedAt = received
        #expect(throws: unset) {
            try policy.measurementTime(from: .number(1_648_731_311), receivedAt: received)
        }
    }

    @Test("unset clocks, the future, naive local times and junk are refused (F22)")
    func refused() {
        let bad: [JSONValue] = [
            .number(0), .number(946_684_799_000), .number(-617_292_592_000), .string("1970-01-01T00:00:00Z"),
            .number(946_684_800_000), .string("2000-01-01T23:59:59Z"),  // the reset day of unset clocks
            .string("2026-11-28T13:20:01Z"),  // 10 min 1 s ahead of receipt
            .string("2026-11-28T07:10:00"),  // no offset
            .string("yesterday"), .number(1.5), .bool(true),
        ]
        for value in bad {
            #expect(throws: Rejection.self, "\(value)") { try policy.measurementTime(from: value, receivedAt: received) }
        }
        // 2000-01-02T00:00:00Z and 10 min ahead are accepted; 3 min of drift is fine.
        #expect((try? policy.measurementTime(from: .number(946_771_200_000), receivedAt: received)) != nil)
        #expect((try? policy.measurementTime(from: .string("2026-11-28T13:20:00Z"), receivedAt: received)) != nil)
        #expect((try? policy.measurementTime(from: .string("2026-11-28T13:13:00Z"), receivedAt: received)) != nil)
    }

    @Test("local wall-clock times in a zone, DST gap refused, fixed offsets")
    func localTimes() throws {
        let ny = try #require(TimeZone(identifier: "America/New_York"))
        // 2015-06-06 16:50:27 EDT (UTC−4) = 20:50:27Z = 1,433,623,827 s.
        #expect(LocalDateTime.parse("2015-06-06 16:50:27", in: ny)?.timeIntervalSince1970 == 1_433_623_827)
        // 2015-03-08 02:04:39 does not exist in New York (clocks jumped 02:00 → 03:00).
        #expect(LocalDateTime.parse("2015-03-08 02:04:39", in: ny) == nil)
        #expect(LocalDateTime.isInDaylightSavingGap("2015-03-08 02:04:39", in: ny))
        // Read at a fixed −05:00 it is 07:04:39Z = 1,425,798,279 s.
        let est = try #require(LocalDateTime.fixedOffsetZone("-05:00"))
        #expect(LocalDateTime.parse("2015-03-08 02:04:39", in: est)?.timeIntervalSince1970 == 1_425_798_279)
        #expect(LocalDateTime.parse("2015-13-01 00:00:00", in: est) == nil)
        #expect(LocalDateTime.fixedOffsetZone("America/New_York") == nil)
    }
}
