import Foundation
import HTTPTypes
import Hummingbird
import VitalsDomain
import VitalsStore

/// The billing page: the month's `report billing` (`/billing?month=YYYY-MM`), each device code's
/// evidence one click away (`report days`, `/billing/days?patient=…&period=…`), and the CSV
/// (`/billing/csv?month=…`, every cell neutralised against formulas by ``CSVText``).
struct BillingController {
    typealias Context = WorkspaceRequestContext
    let workspace: Workspace

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("billing", use: page)
        group.get("billing/csv", use: csv)
        group.get("billing/days", use: days)
    }

    /// The requested month, or this month (UTC) without one.
    /// - Throws: 400 for a month that is not `YYYY-MM`.
    private func month(_ request: Request) throws -> YearMonth {
        guard let text = request.uri.queryParameters.get("month") else {
            return YearMonth(LocalDate(workspace.clock(), in: .gmt))
        }
        guard let month = YearMonth(String(text)) else { throw HTTPError(.badRequest, message: "The month must be YYYY-MM.") }
        return month
    }

    /// The month's billing report.
    /// - Throws: 400 for a month the report does not cover (``BillingError``).
    private func report(_ month: YearMonth) async throws -> [PatientBilling] {
        do {
            return try await workspace.database.billingReportAsync(month: month, rules: workspace.billing, today: workspace.clock())
        } catch let error as BillingError {
            throw HTTPError(.badRequest, message: error.description.prefixCapitalized + ".")
        }
    }

    @Sendable func page(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let month = try month(request)
        let report = try await report(month)
        try await workspace.database.recordAccess(
            actor: user.username, action: "billing.viewed", targetType: "billing", targetID: month.description,
            detail: "patients=\(report.count)", at: workspace.clock())
        var values = workspace.pageValues(context, title: "Billing \(month)", nav: "billing")
        values["month"] = month.description
        let previous = month.month == 1 ? String(format: "%04d-12", month.year - 1) : String(format: "%04d-%02d", month.year, month.month - 1)
        let next = month.month == 12 ? String(format: "%04d-01", month.year + 1) : String(format: "%04d-%02d", month.year, month.month + 1)
        values["previous"] = previous
        values["next"] = next
        values["rows"] = report.flatMap { p -> [[String: Any]] in
            let cells = p.rows(review: false)
            return zip(cells, p.periods.isEmpty ? [nil] : p.periods.map(Optional.some)).map { cell, period -> [String: Any] in
                var row: [String: Any] = [
                    "patientID": p.patientID, "period": cell[1], "dataDays": cell[2], "deviceCode": cell[3], "rpmMinutes": cell[4],
                    "interactive": cell[5], "managementCodes": cell[6], "ccmMinutes": cell[7], "ccmCodes": cell[8], "practitioner": cell[9],
                ]
                if let period {
                    row["evidence"] = "/billing/days?patient=\(Self.query(p.patientID))&period=\(period.period.number)"
                }
                return row
            }
        }
        values["review"] = report.flatMap { p in p.review.map { ["patientID": p.patientID, "note": $0] } }
        return workspace.pages.render("billing", values)
    }

    @Sendable func csv(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let month = try month(request)
        let report = try await report(month)
        try await workspace.database.recordAccess(
            actor: user.username, action: "billing.csv", targetType: "billing", targetID: month.description,
            detail: "patients=\(report.count)", at: workspace.clock())
        var text = CSVText.line(PatientBilling.columns + ["review"]) + "\n"
        for p in report {
            for row in p.rows(review: true) { text += CSVText.line(row) + "\n" }
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/csv; charset=utf-8", .contentDisposition: "attachment; filename=\"billing-\(month).csv\"",
                .cacheControl: "no-store",
            ],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    @Sendable func days(_ request: Request, context: Context) async throws -> Response {
        let user = try context.user()
        let q = request.uri.queryParameters
        guard let patient = q.get("patient").map({ String($0) }), let number = q.get("period").flatMap({ Int($0) }) else {
            throw HTTPError(.badRequest, message: "Name a patient and a period.")
        }
        let evidence: PeriodEvidence
        do {
            evidence = try await workspace.database.periodEvidenceAsync(patientID: patient, period: number, rules: workspace.billing)
        } catch let error as BillingError {
            throw HTTPError(.notFound, message: error.description.prefixCapitalized + ".")
        }
        let zone = TimeZone(identifier: evidence.timezone) ?? .gmt
        var values = workspace.pageValues(context, title: "Days of data · \(patient)", nav: "billing")
        values["patientID"] = patient
        values["timezone"] = evidence.timezone
        values["episode"] = evidence.episode.id
        values["number"] = number
        values["start"] = evidence.period.start.description
        values["end"] = evidence.period.end.description
        values["count"] = evidence.days.count
        values["code"] = evidence.code ?? "no device code"
        values["month"] = YearMonth(evidence.period.end).description
        let local = Date.ISO8601FormatStyle(timeZoneSeparator: .colon, timeZone: zone)
        values["days"] = evidence.days.map { d -> [String: Any] in
            ["date": d.date.description, "readings": d.readings, "first": d.first.formatted(local), "last": d.last.formatted(local),
             "devices": d.devices.joined(separator: ", ")]
        }
        try await workspace.database.recordAccess(
            actor: user.username, action: "billing.days_viewed", targetType: "patient", targetID: patient,
            detail: "period=\(number)", at: workspace.clock())
        return workspace.pages.render("billing-days", values)
    }

    /// A value for a query string: RFC 3986 unreserved characters kept, everything else percent-encoded.
    static func query(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }

    private static let unreserved = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        .union(CharacterSet(charactersIn: "-._~"))
}
