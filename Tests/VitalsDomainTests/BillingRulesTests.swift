import Foundation
import Testing
import VitalsDomain

private func d(_ s: String) -> LocalDate { LocalDate(s)! }

@Suite("CMS billing rules")
struct BillingRulesTests {
    let rules = BillingRules()

    @Test("rolling 30-day periods cross month ends (and February)")
    func rolling() {
        // Jan 17–31 is 15 days, Feb 1–15 another 15: period 1 ends Feb 15.
        // Feb 16–28 is 13 days, Mar 1–17 another 17: period 2 ends Mar 17.
        let p = rules.devicePeriods(episodeStart: d("2026-01-17"), episodeEnd: nil, through: d("2026-03-20"))
        #expect(p.map { "\($0.start)..\($0.end)" } == ["2026-01-17..2026-02-15", "2026-02-16..2026-03-17", "2026-03-18..2026-04-16"])
        #expect(p.allSatisfy { $0.length == 30 })
        // 2028 is a leap year: Feb 1–29 is 29 days, so period 1 from Feb 1 ends Mar 1.
        #expect(rules.devicePeriods(episodeStart: d("2028-02-01"), episodeEnd: nil, through: d("2028-02-01"))[0].end == d("2028-03-01"))
    }

    @Test("calendar-month anchor, and an episode end cuts the last period")
    func calendarAndEnd() {
        let monthly = BillingRules(anchor: .calendarMonth)
        let p = monthly.devicePeriods(episodeStart: d("2026-01-17"), episodeEnd: nil, through: d("2026-02-10"))
        #expect(p.map { "\($0.start)..\($0.end)" } == ["2026-01-17..2026-01-31", "2026-02-01..2026-02-28"])
        let cut = rules.devicePeriods(episodeStart: d("2026-01-01"), episodeEnd: d("2026-01-20"), through: d("2026-03-01"))
        #expect(cut.map { "\($0.start)..\($0.end)" } == ["2026-01-01..2026-01-20"])
    }

    @Test("device supply: 0–1 days nothing, 2–15 99445, 16+ 99454")
    func deviceCodes() {
        #expect(rules.deviceSupplyCode(dataDays: 0) == nil)
        #expect(rules.deviceSupplyCode(dataDays: 1) == nil)
        #expect(rules.deviceSupplyCode(dataDays: 2) == "99445")
        #expect(rules.deviceSupplyCode(dataDays: 15) == "99445")
        #expect(rules.deviceSupplyCode(dataDays: 16) == "99454")
        #expect(rules.deviceSupplyCode(dataDays: 30) == "99454")
    }

    @Test("management minutes: 9/10/19/20/39/40/59/60, and no interactive communication")
    func management() {
        #expect(rules.managementCodes(minutes: 9, interactive: true) == [:])
        #expect(rules.managementCodes(minutes: 10, interactive: true) == ["99470": 1])
        #expect(rules.managementCodes(minutes: 19, interactive: true) == ["99470": 1])
        #expect(rules.managementCodes(minutes: 20, interactive: true) == ["99457": 1])
        #expect(rules.managementCodes(minutes: 39, interactive: true) == ["99457": 1])
        #expect(rules.managementCodes(minutes: 40, interactive: true) == ["99457": 1, "99458": 1])
        #expect(rules.managementCodes(minutes: 59, interactive: true) == ["99457": 1, "99458": 1])
        #expect(rules.managementCodes(minutes: 60, interactive: true) == ["99457": 1, "99458": 2])
        #expect(rules.managementCodes(minutes: 60, interactive: false) == [:])
        #expect(BillingRules(max99458Units: 1).managementCodes(minutes: 85, interactive: true) == ["99457": 1, "99458": 1])
    }

    @Test("CCM: 99490 from 20 minutes, 99439 per further 20, at most 2")
    func ccm() {
        #expect(rules.ccmCodes(minutes: 19) == [:])
        #expect(rules.ccmCodes(minutes: 20) == ["99490": 1])
        #expect(rules.ccmCodes(minutes: 40) == ["99490": 1, "99439": 1])
        #expect(rules.ccmCodes(minutes: 100) == ["99490": 1, "99439": 2])
    }

    @Test("local dates in far time zones")
    func localDates() throws {
        // 2026-03-01T09:30:00Z is 23:30 on Mar 1 in Kiritimati (UTC+14), 10:30Z is 00:30 on Mar 2.
        let kiritimati = try #require(TimeZone(identifier: "Pacific/Kiritimati"))
        #expect(LocalDate(Date(timeIntervalSince1970: 1_772_357_400), in: kiritimati) == d("2026-03-01"))
        #expect(LocalDate(Date(timeIntervalSince1970: 1_772_361_000), in: kiritimati) == d("2026-03-02"))
        #expect(LocalDate("2026-02-29") == nil)
        #expect(d("2026-03-01").days(since: d("2026-02-01")) == 28)
        #expect(YearMonth("2026-02")!.last == d("2026-02-28"))
        // Only YYYY-MM: a sign or a doubled hyphen is no month (split on "-" had read -2026-01 as 2026-01).
        for text in ["-2026-01", "2026--01", "+026-01", "2026-1", "2026-13", "2026-00", "20260-01", "2026/01"] {
            #expect(YearMonth(text) == nil, "\(text)")
        }
    }
}
