import Testing
import VitalsDomain

@Suite("CSV export")
struct CSVTextTests {
    @Test("cells that start a formula get a leading quote (OWASP CSV injection); numbers and text stay")
    func neutralised() {
        #expect(CSVText.neutralised("=HYPERLINK(\"http://x\",\"y\")") == "'=HYPERLINK(\"http://x\",\"y\")")
        #expect(CSVText.neutralised("+1+1") == "'+1+1")
        #expect(CSVText.neutralised("-2+3") == "'-2+3")
        #expect(CSVText.neutralised("@SUM(A1)") == "'@SUM(A1)")
        #expect(CSVText.neutralised("\tx") == "'\tx")
        #expect(CSVText.neutralised("\rx") == "'\rx")
        #expect(CSVText.neutralised("-5") == "-5")
        #expect(CSVText.neutralised("-0.25") == "-0.25")
        #expect(CSVText.neutralised("-") == "'-")
        #expect(CSVText.neutralised("nurse.a") == "nurse.a")
        #expect(CSVText.neutralised("") == "")
    }

    @Test("fields are quoted as RFC 4180 says, after neutralising")
    func quoted() {
        #expect(CSVText.line(["=HYPERLINK(\"http://x\",\"y\")", "a,b", "plain", " padded"]) ==
            #""'=HYPERLINK(""http://x"",""y"")","a,b",plain," padded""#)
        #expect(CSVText.line(["line\nbreak", "-7"]) == "\"line\nbreak\",-7")
    }
}
