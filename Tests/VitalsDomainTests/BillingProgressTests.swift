import Foundation
import Testing
import VitalsDomain

@Suite("billing progress on values")
struct BillingProgressValueTests {
    let berlin = TimeZone(identifier: "Europe/Berlin")!

    func date(_ text: String) -> LocalDate { LocalDate(text)! }

    @Test("the date by which 16 days become unreachable, and the next minute threshold")
    func needsBy() {
        // Episode from 2025-03-01: period 1 is 03-01 to 03-30 (30 days, the DST change on 03-30 is its last day).
        // On 03-16 at 10:00 with data on 03-01…03-04 (4 days), none today: 14 days after today;
        // at most 4 + 14 + 1 = 19, three to spare: a reading is needed by 03-19 (by hand: with none
        // 03-16…03-19, 03-20…03-30 leave 11 days, 4 + 11 = 15).
        let days = Set((1...4).map { date(String(format: "2025-03-%02d", $0)) })
        let now = MeasurementTimePolicy.parseRFC3339("2025-03-16T10:00:00+01:00")!
        let p = BillingProgress.evaluate(
            rules: BillingRules(), episodeStart: date("2025-03-01"), episodeEnd: nil, dataDates: days,
            time: MonthlyTime(rpmMinutes: 45, interactive: true, ccmMinutes: 19), now: now, timeZone: berlin)
        #expect(p.deviceDays?.dataDays == 4)
        #expect(p.deviceDays?.daysLeft == 14)
        #expect(p.deviceDays?.sixteenNeedsDataBy == date("2025-03-19"))
        #expect(p.nextMinuteTarget == 60)  // 45 minutes: 99457 + 1 × 99458 at 40, the next at 60
        #expect(p.managementCodes == ["99457": 1, "99458": 1])
        #expect(p.ccmCodes == [:])
        // 20 minutes with the interactive communication are done: only a reading is needed, in 3 days.
        #expect(p.need == BillingProgress.Need(days: 3, minutesShort: 0))
        // Data today moves the date one day on: the reading may come by 03-20.
        let withToday = BillingProgress.evaluate(
            rules: BillingRules(), episodeStart: date("2025-03-01"), episodeEnd: nil, dataDates: days.union([date("2025-03-16")]),
            time: MonthlyTime(), now: now, timeZone: berlin)
        #expect(withToday.deviceDays?.sixteenNeedsDataBy == date("2025-03-20"))
        #expect(withToday.nextMinuteTarget == 10)
        // An ended episode has no device period.
        let ended = BillingProgress.evaluate(
            rules: BillingRules(), episodeStart: date("2025-03-01"), episodeEnd: date("2025-03-10"), dataDates: days,
            time: MonthlyTime(), now: now, timeZone: berlin)
        #expect(ended.deviceDays == nil)
    }
}
