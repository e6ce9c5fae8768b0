import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import VitalsStore

/// The templates, parsed once at start, and the rendering of pages.
struct Pages: Sendable {
    /// A template that does not parse.
    struct TemplateError: Error, CustomStringConvertible {
        var description: String
    }

    let library: MustacheLibrary
    /// The zone in which times are shown (`web.display_timezone`).
    let timeZone: TimeZone

    init(timeZone: TimeZone) throws {
        var library = MustacheLibrary()
        for (name, text) in Templates.all {
            do {
                try library.register(text, named: name)
            } catch {
                throw TemplateError(description: "template \(name): \(error)")
            }
        }
        self.library = library
        self.timeZone = timeZone
    }

    /// The rendered page as a `text/html` response.
    func render(_ template: String, _ values: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let html = library.render(values, withTemplate: template) ?? ""
        return Response(
            status: status, headers: [.contentType: "text/html; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// A page for an error status, with a message a person can act on.
    func errorResponse(status: HTTPResponse.Status, message: String?) -> Response {
        let heading: String
        let text: String
        switch status.code {
        case 401: (heading, text) = ("Sign in first", "Your session has ended.")
        case 403: (heading, text) = ("Not allowed", "You cannot do this.")
        case 404: (heading, text) = ("Not found", "There is nothing at this address.")
        case 413: (heading, text) = ("Too large", "The form is too large.")
        case 400..<500: (heading, text) = ("Cannot do this", "The request could not be used.")
        default: (heading, text) = ("Something went wrong", "The workspace could not answer. Try again; if it persists, tell your administrator.")
        }
        return render("error", ["title": "\(heading) · vitalsd", "heading": heading, "message": message ?? text], status: status)
    }

    // MARK: Times

    /// `2026-11-28 07:10 CST` in the display zone, or in `zone` (a patient's).
    func local(_ date: Date, in zone: TimeZone? = nil) -> String {
        let timeZone = zone ?? timeZone
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        let zone = ["UTC", "GMT"].contains(timeZone.identifier) ? "UTC" : timeZone.abbreviation(for: date) ?? timeZone.identifier
        return String(format: "%04d-%02d-%02d %02d:%02d ", c.year!, c.month!, c.day!, c.hour!, c.minute!) + zone
    }

    /// `2026-11-28T13:10:05Z`, for `<time datetime>`.
    static func iso(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }

    /// How long ago: `just now`, `12 min ago`, `3 h ago`, `2 d ago`.
    static func ago(_ date: Date, now: Date) -> String {
        let s = max(0, now.timeIntervalSince(date))
        if s < 60 { return "just now" }
        if s < 3_600 { return "\(Int(s / 60)) min ago" }
        if s < 172_800 { return "\(Int(s / 3_600)) h ago" }
        return "\(Int(s / 86_400)) d ago"
    }

    /// A duration ahead: `in 12 min`, `in 1 h 5 min`.
    static func inTime(_ seconds: Double) -> String {
        let m = Int((seconds / 60).rounded(.up))
        return m < 60 ? "in \(m) min" : "in \(m / 60) h\(m % 60 == 0 ? "" : " \(m % 60) min")"
    }
}
