import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsStore
import VitalsWeb

/// A BP of 185/125 mmHg from cuff `c1`, measured a minute ago.
private func crisis() -> IncomingMessage {
    let ms = Int64((Date().timeIntervalSince1970 - 60) * 1000)
    return IncomingMessage(
        topic: "devices/c1/readings", deviceID: "c1",
        payload: Array(#"{"measured_at":\#(ms),"readings":[{"type":"systolic_bp","value":185,"unit":"mmHg"},{"type":"diastolic_bp","value":125,"unit":"mmHg"}]}"#.utf8),
        receivedAt: Date())
}

private let pipeline = IngestPipeline(thresholds: .clinicalDefaults)

@Suite("the workspace over HTTP: sessions, CSRF, escaping, headers", .serialized)
struct WorkspaceTests {
    @Test("every page and action without a session redirects to sign-in or answers 401, and changes nothing")
    func signedOut() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let task = try #require(try server.database.tasks().first)
        for path in ["/", "/worklist", "/worklist?tab=team", "/tasks/\(task.id)", "/patients", "/patients/p2"] {
            let r = try await server.get(path)
            #expect(r.status == 303, "GET \(path)")
            #expect(r.location?.hasPrefix("/signin") == true, "GET \(path)")
        }
        for path in ["/worklist/rows", "/events"] {
            #expect(try await server.get(path).status == 401, "GET \(path)")
        }
        // A made-up session id is no session either.
        #expect(try await server.get("/worklist", cookie: "vitalsd_session=" + String(repeating: "A", count: 43)).status == 303)
        for action in ["claim", "assign", "acknowledge", "resolve", "reopen", "notes"] {
            let r = try await server.post("/tasks/\(task.id)/\(action)", form: [
                "version": String(task.version), "owner": "bo", "disposition": "not_actionable", "note": "x",
            ])
            #expect(r.status == 303 && r.location?.hasPrefix("/signin") == true, "POST \(action)")
        }
        #expect(try await server.post("/patients/p2", form: ["name": "Changed"]).status == 303)
        #expect(try await server.post("/signout", form: [:]).status == 303)
        let after = try #require(try server.database.tasks().first)
        #expect(after.status == .open && after.version == task.version && after.owner == "ana")
        #expect(try server.database.patient(id: "p2")?.name == nil)
        #expect(try await server.database.taskNotes(taskID: task.id).isEmpty)
    }

    @Test("a form post without its CSRF token, or with another session's, is refused with 403")
    func csrf() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let task = try #require(try server.database.tasks().first)
        let ana = try await server.session("ana")
        let bo = try await server.session("bo")
        let boPage = try await server.get("/tasks/\(task.id)", cookie: bo)
        let boToken = try #require(boPage.field("csrf"))
        let form = ["version": String(task.version)]
        #expect(try await server.post("/tasks/\(task.id)/claim", cookie: ana, form: form).status == 403)
        #expect(try await server.post("/tasks/\(task.id)/claim", cookie: ana, form: form.merging(["csrf": boToken]) { $1 }).status == 403)
        #expect(try await server.post("/tasks/\(task.id)/notes", cookie: ana, form: ["note": "x", "csrf": ""]).status == 403)
        // The sign-in form has its own token, tied to a cookie.
        let signIn = try await server.post("/signin", form: ["username": "ana", "password": WorkspaceServer.passwords["ana"]!])
        #expect(signIn.status == 403)
        // A cookie someone planted, with the same value in the form (a plain double submit): refused,
        // as the cookie must carry the daemon's signature of the form's token.
        let planted = String(repeating: "x", count: 43)
        let forced = try await server.post("/signin", cookie: "vitalsd_signin=\(planted)", form: [
            "csrf": planted, "username": "ana", "password": WorkspaceServer.passwords["ana"]!,
        ])
        #expect(forced.status == 403)
        #expect(try server.database.tasks().first?.owner == "ana")
        #expect(try server.database.tasks().first?.version == task.version)
        // With the token, it works.
        let anaPage = try await server.get("/tasks/\(task.id)", cookie: ana)
        let ok = try await server.post("/tasks/\(task.id)/notes", cookie: ana, form: ["note": "Called.", "csrf": anaPage.field("csrf") ?? ""])
        #expect(ok.status == 303)
        #expect(try await server.database.taskNotes(taskID: task.id).map(\.text) == ["Called."])
    }

    @Test("a details post that lacks one of the form's fields changes nothing; the whole form saves")
    func partialDetails() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let ana = try await server.session("ana")
        let before = try #require(try await server.database.patientRecord(id: "p2"))
        let token = try #require(try await server.get("/patients/p2", cookie: ana).field("csrf"))
        // Only a name: before, the missing birth date, phone and care manager were cleared.
        let partial = try await server.post("/patients/p2", cookie: ana, form: ["csrf": token, "name": "Changed"])
        #expect(partial.status == 400)
        #expect(partial.body.contains("The form is incomplete (no birth_date field). Nothing was changed."))
        #expect(try await server.database.patientRecord(id: "p2") == before)
        let whole = try await server.post("/patients/p2", cookie: ana, form: [
            "csrf": token, "name": "Changed", "birth_date": before.birthDate ?? "", "phone": before.phone ?? "",
            "care_manager": before.careManager ?? "",
        ])
        #expect(whole.status == 303)
        #expect(try await server.database.patientRecord(id: "p2")?.name == "Changed")
        #expect(try await server.database.patientRecord(id: "p2")?.careManager == before.careManager)
    }

    @Test("a patient name and a note holding markup render as text, on the worklist and the task page")
    func escaping() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"
        try server.database.upsertPatient(
            Patient(id: "p2", timezone: "America/Chicago", programs: [.hypertension], name: hostile), actor: "test")
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let task = try #require(try server.database.tasks().first)
        try await server.database.addTaskNote(taskID: task.id, author: "ana", text: hostile, at: Date())
        let ana = try await server.session("ana")
        for path in ["/worklist", "/worklist/rows", "/tasks/\(task.id)", "/patients/p2", "/patients?show=all"] {
            let body = try await server.get(path, cookie: ana).body
            #expect(!body.contains("<script>alert"), "\(path)")
            #expect(!body.contains("<img src=x"), "\(path)")
            #expect(!body.contains("\"><img"), "\(path)")
            #expect(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"), "\(path)")
        }
    }

    @Test("a row shows the latest value against the limit in force: the patient's own, else the program's")
    func valueAgainstLimit() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let ana = try await server.session("ana")
        var body = try await server.get("/worklist", cookie: ana).body
        // AHA hypertensive crisis: systolic ≥ 180 or diastolic ≥ 120 (the built-in critical limits).
        #expect(body.contains("185/125 mmHg") && body.contains("critical ≥ 180/120"))
        // A clinician's own limit for this patient wins; a systolic-only reading shows only its limit.
        try server.database.setThreshold(patientID: "p2", slot: ThresholdSlot(type: .systolicBP, level: .critical, direction: .high),
                                         value: 170, actor: "dr.ng")
        let ms = Int64((Date().timeIntervalSince1970 - 30) * 1000)
        _ = try await server.database.ingest([IncomingMessage(
            topic: "devices/c1/readings", deviceID: "c1",
            payload: Array(#"{"type":"systolic_bp","value":172,"unit":"mmHg","measured_at":\#(ms)}"#.utf8), receivedAt: Date())],
            pipeline: pipeline)
        body = try await server.get("/worklist", cookie: ana).body
        #expect(body.contains("172 mmHg") && body.contains("critical ≥ 170<"))
    }

    @Test("every response carries the CSP without unsafe-inline, no framing, no referrer, no sniffing; pages are not stored")
    func headers() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let ana = try await server.session("ana")
        for (path, cookie) in [("/signin", nil), ("/worklist", ana), ("/static/app.js", nil), ("/no/such/page", ana), ("/worklist", nil)] {
            let r = try await server.get(path, cookie: cookie)
            let csp = try #require(r.header("content-security-policy"), "\(path)")
            #expect(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "\(path)")
            #expect(csp.contains("frame-ancestors 'none'"), "\(path)")
            #expect(r.header("x-frame-options") == "DENY", "\(path)")
            #expect(r.header("x-content-type-options") == "nosniff", "\(path)")
            #expect(r.header("referrer-policy") == "no-referrer", "\(path)")
        }
        #expect(try await server.get("/worklist", cookie: ana).header("cache-control") == "no-store")
        #expect(try await server.get("/no/such/page", cookie: ana).status == 404)
        // No inline script anywhere: the only script is the file.
        let page = try await server.get("/worklist", cookie: ana).body
        #expect(page.components(separatedBy: "<script").count == 2 && page.contains("<script src=\"/static/app.js\" defer></script>"))
    }

    @Test("the session cookie is HttpOnly and SameSite=Strict, a new one at each sign-in; sign-out ends the session")
    func cookies() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let first = try await server.signIn("ana")
        #expect(first.reply.status == 303 && first.reply.location == "/worklist")
        let set = try #require(first.reply.setCookies.first { $0.hasPrefix("vitalsd_session=") })
        let attributes = set.components(separatedBy: "; ")
        #expect(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict") && attributes.contains("Path=/"))
        #expect(!attributes.contains("Secure"))  // plain HTTP on loopback
        let cookie = try #require(first.cookie)
        let second = try await server.session("ana")
        #expect(second != cookie)
        // Only the hash of a session id is stored.
        let stored = try await server.database.writer.read { db in try Data.fetchAll(db, sql: "SELECT token_hash FROM web_sessions") }
        let token = String(cookie.dropFirst("vitalsd_session=".count))
        #expect(stored.count == 2 && !stored.contains(Data(token.utf8)))
        let page = try await server.get("/worklist", cookie: cookie)
        #expect(page.status == 200)
        let out = try await server.post("/signout", cookie: cookie, form: ["csrf": page.field("csrf") ?? ""])
        #expect(out.status == 303 && out.location == "/signin?signedout=1")
        #expect(try await server.get("/worklist", cookie: cookie).status == 303)
        #expect(try await server.get("/worklist", cookie: second).status == 200)
        let actions = try server.database.auditEntries().filter { $0.actor == "ana" }.map(\.action)
        #expect(actions == ["sign_in", "sign_in", "sign_out"])
        // Signing in again from the browser that holds `second` ends that session: its cookie never works again.
        let form = try await server.get("/signin")
        let csrfCookie = try requireCookie(form, prefix: "vitalsd_signin=")
        let again = try await server.post("/signin", cookie: "\(csrfCookie); \(second)", form: [
            "csrf": form.field("csrf") ?? "", "username": "ana", "password": WorkspaceServer.passwords["ana"] ?? "",
        ])
        #expect(again.status == 303)
        #expect(try await server.get("/worklist", cookie: second).status == 303)
        #expect(try server.database.auditEntries().filter { $0.actor == "ana" }.map(\.action).suffix(2) == ["sign_out", "sign_in"])
    }

    @Test("under TLS the cookie is Secure with the __Host- prefix, and HSTS is sent")
    func tlsCookies() async throws {
        let certificates = try TestCertificates()
        let (_, cert, key) = try certificates.brokerCertificate("web", altNames: "IP:127.0.0.1")
        let server = try await WorkspaceServer(tls: (cert, key))
        defer { Task { await server.stop() } }
        let output = try await curl(["-sk", "-D", "-", "-o", "/dev/null", "https://127.0.0.1:\(server.port)/signin"])
        let cookie = try #require(output.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("set-cookie:") })
        #expect(cookie.contains("__Host-vitalsd_signin="))
        #expect(cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"))
        #expect(output.lowercased().contains("strict-transport-security: max-age=31536000"))
        // Signing in over TLS sets the session cookie the same way.
        let jar = certificates.directory + "/jar"
        let form = try await curl(["-sk", "-c", jar, "https://127.0.0.1:\(server.port)/signin"])
        let csrf = try #require(HTTPReply(status: 200, headers: [], body: form).field("csrf"))
        let signIn = try await curl([
            "-sk", "-b", jar, "-D", "-", "-o", "/dev/null", "--data-urlencode", "csrf=\(csrf)", "--data-urlencode", "username=ana",
            "--data-urlencode", "password=\(WorkspaceServer.passwords["ana"]!)", "https://127.0.0.1:\(server.port)/signin",
        ])
        let session = try #require(signIn.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("set-cookie: __host-vitalsd_session=") })
        #expect(session.contains("; Secure") && session.contains("HttpOnly") && session.contains("SameSite=Strict"))
    }

    @Test("the sixth wrong password within a minute is refused even when correct")
    func lockout() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        for i in 1...5 {
            let r = try await server.signIn("ana", password: "wrong password \(i)")
            #expect(r.cookie == nil)
            #expect(r.reply.status == (i < 5 ? 401 : 429))
        }
        let sixth = try await server.signIn("ana")
        #expect(sixth.reply.status == 429)
        #expect(sixth.cookie == nil)
        #expect(sixth.reply.body.contains("Too many failed sign-ins"))
        // Another user is not affected; after the lock, the right password works.
        #expect(try await server.signIn("bo").cookie != nil)
        server.clock.advance(61)
        #expect(try await server.signIn("ana").cookie != nil)
        let audit = try server.database.auditEntries().filter { $0.actor == "ana" }.map(\.action)
        #expect(audit == Array(repeating: "sign_in.failed", count: 5) + ["sign_in.refused", "sign_in"])
        #expect(!(try server.database.auditEntries().contains { ($0.detail ?? "").contains("wrong password 1") || ($0.detail ?? "").contains("horse") }))
    }

    @Test("over 3 requests a minute from one address, sign-ins and token requests get 429 and Retry-After before any check")
    func rateLimit() async throws {
        let server = try await WorkspaceServer(webYAML: "  authentication_requests_per_minute: 3")
        defer { Task { await server.stop() } }
        for i in 1...3 {
            #expect(try await server.signIn("ana", password: "wrong password \(i)").reply.status == 401)
        }
        // The fourth is refused before its password is checked, even the right one, and audits nothing.
        let fourth = try await server.signIn("ana")
        #expect(fourth.reply.status == 429 && fourth.cookie == nil)
        #expect(fourth.reply.header("Retry-After") == "20")  // 3 a minute: one back every 20 s
        // The router also takes a trailing or doubled slash to the sign-in: the same bucket.
        for variant in ["/signin/", "//signin", "/signin//"] {
            #expect(try await server.post(variant, form: ["username": "ana", "password": "x"]).status == 429, "\(variant)")
        }
        #expect(try server.database.auditEntries().filter { $0.actor == "ana" }.map(\.action)
                == Array(repeating: "sign_in.failed", count: 3))
        // The sign-in page itself is not limited; the token endpoint has buckets of its own (without
        // the FHIR API here, the route answers 404 until the limit, then 429).
        #expect(try await server.get("/signin").status == 200)
        for _ in 1...3 { #expect(try await server.post("/auth/token", form: ["grant_type": "client_credentials"]).status == 404) }
        #expect(try await server.post("/auth/token", form: ["grant_type": "client_credentials"]).status == 429)
        for variant in ["/auth/token/", "/auth//token", "//auth/token"] {
            #expect(try await server.post(variant, form: ["grant_type": "client_credentials"]).status == 429, "\(variant)")
        }
        // One request comes back after 20 s, not two.
        server.clock.advance(20)
        #expect(try await server.signIn("ana").cookie != nil)
        #expect(try await server.signIn("ana").reply.status == 429)
    }

    @Test("behind a TLS proxy, the limit counts the address the proxy saw: the last of X-Forwarded-For")
    func rateLimitBehindProxy() async throws {
        let server = try await WorkspaceServer(webYAML: "  authentication_requests_per_minute: 2\n  behind_tls_proxy: true")
        defer { Task { await server.stop() } }
        func token(from forwarded: String) async throws -> Int {
            try await httpRequest(port: server.port, "POST", "/auth/token", headers: [
                "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": forwarded,
            ], body: "grant_type=client_credentials").status
        }
        // A client cannot pick its own key by sending a header: the proxy appends the address it saw.
        #expect(try await token(from: "198.51.100.1, 203.0.113.5") == 404)
        #expect(try await token(from: "198.51.100.2, 203.0.113.5") == 404)
        #expect(try await token(from: "198.51.100.3, 203.0.113.5") == 429)
        #expect(try await token(from: "203.0.113.6") == 404)
    }

    @Test("page, period and month numbers from a URL, however large, get a page or a 400, quickly")
    func hugeNumbers() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let ana = try await server.session("ana")
        // The Resolved tab lists a resolved task (it answered 500: its query took one argument too many).
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let task = try #require(try server.database.tasks().first)
        _ = try server.database.resolveTask(id: task.id, by: "ana", note: "called, re-measured 128/80")
        #expect(try await server.get("/worklist?tab=resolved", cookie: ana).body.contains("/tasks/\(task.id)"))
        let huge = String(Int.max)
        // These multiplied the number by the page size, or counted 30-day periods up to it: an
        // arithmetic overflow stopped the whole daemon.
        for path in ["/worklist?page=\(huge)", "/worklist?tab=team&page=\(huge)", "/worklist?tab=resolved", "/worklist?tab=resolved&page=-\(huge)",
                     "/patients/p2?log=\(huge)", "/patients/p2?log=-\(huge)"] {
            #expect(try await server.get(path, cookie: ana).status == 200, "GET \(path)")
        }
        for path in ["/billing/days?patient=p2&period=\(huge)", "/billing/days?patient=p2&period=-\(huge)",
                     "/billing/days?patient=p2&period=1301"] {
            #expect(try await server.get(path, cookie: ana).status == 404, "GET \(path)")
        }
        #expect(try await server.get("/billing/days?patient=p2&period=1", cookie: ana).status == 200)
        // A month more than a year ahead, or before 2000, is refused before any period is counted.
        let nextYear = LocalDate(server.clock.read().addingTimeInterval(366 * 86_400), in: .gmt)
        let later = LocalDate(server.clock.read().addingTimeInterval(400 * 86_400), in: .gmt)
        for month in ["9999-12", "1999-12", String(later.description.prefix(7))] where month != String(nextYear.description.prefix(7)) {
            #expect(try await server.get("/billing?month=\(month)", cookie: ana).status == 400, "month \(month)")
        }
        #expect(try await server.get("/billing?month=\(nextYear.description.prefix(7))", cookie: ana).status == 200)
        #expect(try await server.get("/billing/csv?month=9999-12", cookie: ana).status == 400)
        // Billing errors are workspace pages, which never echo the request's text as JSON.
        let unknown = try await server.get("/billing/days?patient=%3Cscript%3Ex%3C/script%3E&period=1", cookie: ana)
        #expect(unknown.status == 404 && !unknown.body.contains("{\"error\"") && !unknown.body.contains("<script>x"))
        // The billing pages and the patient list show PHI: each is in the access log under the user.
        _ = try await server.get("/patients?show=all", cookie: ana)
        let actions = try server.database.accessEntries(actor: "ana").map(\.action)
        #expect(actions.contains("billing.viewed") && actions.contains("patients.listed"))
        #expect(try server.database.accessEntries(patientID: "p2").contains { $0.action == "billing.days_viewed" && $0.detail == "period=1" })
    }

    @Test("the timer logs once per page, never more than the page has been open, and only with the page's own token")
    func timerPage() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let ana = try await server.session("ana")
        let page = try await server.get("/patients/p2", cookie: ana)
        // A second tab, opened a second after the first (in the same millisecond it would carry the same token).
        server.clock.advance(1)
        let secondTab = try await server.get("/patients/p2", cookie: ana)
        let served = try #require(page.field("served_at"))
        let token = try #require(page.field("served_token"))
        let csrf = try #require(page.field("csrf"))
        server.clock.advance(119)
        func stop(_ fields: [String: String]) async throws -> HTTPReply {
            var form = ["csrf": csrf, "served_at": served, "served_token": token, "seconds": "100", "program": "rpm",
                        "modality": "audio", "activity": "reviewed readings"]
            form.merge(fields) { $1 }
            return try await server.post("/patients/p2/time", cookie: ana, form: form)
        }
        // A serving time moved back two hours (to claim 117 minutes), or a form without the token: refused.
        let twoHoursEarlier = String(Int64(served)! - 7_200_000)
        #expect(try await stop(["served_at": twoHoursEarlier, "seconds": "7000"]).status == 400)
        #expect(try await stop(["served_token": ""]).status == 400)
        #expect(try await stop(["seconds": "200"]).status == 400)  // 120 s open, 5 s slack
        // The page's own 100 s: logged; the same form sent again: refused, one entry.
        let saved = try await stop([:])
        #expect(saved.status == 303 && saved.location?.hasSuffix("done=saved") == true)
        let again = try await stop([:])
        #expect(again.status == 400 && again.body.contains("already logged"))
        let entries = try server.database.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT seconds, performed_by FROM time_entries WHERE patient_id = 'p2'")
        }
        #expect(entries.map { $0["seconds"] as Int } == [100])
        // The second tab's timer counted the same minutes: refused.
        let overlapping = try await server.post("/patients/p2/time", cookie: ana, form: [
            "csrf": csrf, "served_at": try #require(secondTab.field("served_at")), "served_token": try #require(secondTab.field("served_token")),
            "seconds": "100", "program": "rpm", "activity": "reviewed readings",
        ])
        #expect(overlapping.status == 400 && overlapping.body.contains("another page"))
        // The schema holds it too.
        #expect(throws: (any Error).self) {
            try server.database.writer.write { db in
                try db.execute(sql: """
                    INSERT INTO time_entries(patient_id, program, minutes, seconds, performed_at, performed_by, activity, interactive,
                                             modality, created_at, timer_page)
                    SELECT patient_id, program, minutes, seconds, performed_at, performed_by, activity, interactive, modality,
                           created_at, timer_page FROM time_entries
                    """)
            }
        }
    }

    @Test("a connection that sends half a request header is closed after the idle timeout; a whole request is answered")
    func halfHeader() async throws {
        let server = try await WorkspaceServer(idleTimeout: .seconds(1))
        defer { Task { await server.stop() } }
        let port = server.port
        // recv on a Dispatch thread: 0 is the server's close, -1 our own 30 s limit.
        let received: Int = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                guard let fd = connectLoopback(port: port) else { return continuation.resume(throwing: TestFailure("no listener")) }
                defer { close(fd) }
                var timeout = timeval(tv_sec: 30, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                let half = Array("GET /signin HTTP/1.1\r\nHost: x\r\n".utf8)
                do { try sendAll(fd, half) } catch { return continuation.resume(throwing: error) }
                var buffer = [UInt8](repeating: 0, count: 1024)
                var n = recv(fd, &buffer, buffer.count, 0)
                while n < 0 && errno == EINTR { n = recv(fd, &buffer, buffer.count, 0) }
                continuation.resume(returning: n)
            }
        }
        #expect(received == 0)
        #expect(try await server.get("/signin").status == 200)
    }

    @Test("HEAD answers as GET without the body: status, headers and length")
    func head() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let get = try await server.get("/static/app.js")
        let head = try await httpRequest(port: server.port, "HEAD", "/static/app.js")
        #expect(get.status == 200 && head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("content-length") == String(get.body.utf8.count))
        #expect(head.header("content-type") == get.header("content-type"))
        #expect(head.header("content-security-policy") != nil)
        // Behind the sign-in as GET is: a redirect.
        #expect(try await httpRequest(port: server.port, "HEAD", "/worklist").status == 303)
    }

    @Test("after sign-in, next is followed only to a local path: not //host, not with a tab a browser would drop")
    func signInNext() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        for (next, expected) in [("/patients/p2", "/patients/p2"), ("//evil.example", "/worklist"), ("/\t/evil.example", "/worklist"),
                                 ("/\n/evil.example", "/worklist"), ("https://evil.example", "/worklist")] {
            let form = try await server.get("/signin")
            let cookie = try requireCookie(form, prefix: "vitalsd_signin=")
            let reply = try await server.post("/signin", cookie: cookie, form: [
                "csrf": form.field("csrf") ?? "", "username": "bo", "password": WorkspaceServer.passwords["bo"]!, "next": next,
            ])
            #expect(reply.status == 303 && reply.location == expected, "next \(next.debugDescription)")
        }
    }

    @Test("after 15 idle minutes a page redirects to sign-in saying why")
    func idle() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        let ana = try await server.session("ana")
        server.clock.advance(14 * 60)
        #expect(try await server.get("/worklist", cookie: ana).status == 200)
        server.clock.advance(14 * 60)
        #expect(try await server.get("/worklist/rows", cookie: ana).status == 200)
        server.clock.advance(60 + 1)  // 15 minutes after the last page, the background request did not count
        let r = try await server.get("/worklist", cookie: ana)
        #expect(r.status == 303 && r.location?.contains("ended=idle") == true)
    }

    @Test("of two claims on the same page, one wins; the other sees who has the task")
    func claimConflict() async throws {
        let server = try await WorkspaceServer()
        defer { Task { await server.stop() } }
        try server.database.assignCareManager(patientID: "p2", username: nil, actor: "test")
        _ = try await server.database.ingest([crisis()], pipeline: pipeline)
        let task = try #require(try server.database.tasks().first)
        #expect(task.owner == nil)
        let ana = try await server.session("ana")
        let bo = try await server.session("bo")
        let anaPage = try await server.get("/tasks/\(task.id)", cookie: ana)
        let boPage = try await server.get("/tasks/\(task.id)", cookie: bo)
        let won = try await server.post("/tasks/\(task.id)/claim", cookie: ana,
                                         form: ["csrf": anaPage.field("csrf")!, "version": anaPage.field("version")!])
        #expect(won.status == 303 && won.location == "/tasks/\(task.id)?done=claim")
        let lost = try await server.post("/tasks/\(task.id)/claim", cookie: bo,
                                          form: ["csrf": boPage.field("csrf")!, "version": boPage.field("version")!])
        #expect(lost.status == 409)
        #expect(lost.body.contains("Already claimed by Ana Ruiz"))
        #expect(try server.database.tasks().first?.owner == "ana")
        // Acknowledge and resolve with a disposition, a note and 12 interactive minutes.
        let page = try await server.get("/tasks/\(task.id)", cookie: ana)
        let ack = try await server.post("/tasks/\(task.id)/acknowledge", cookie: ana, form: ["csrf": page.field("csrf")!])
        #expect(ack.status == 303)
        let missing = try await server.post("/tasks/\(task.id)/resolve", cookie: ana, form: ["csrf": page.field("csrf")!, "note": "x"])
        #expect(missing.status == 400 && missing.body.contains("Choose a disposition"))
        let resolved = try await server.post("/tasks/\(task.id)/resolve", cookie: ana, form: [
            "csrf": page.field("csrf")!, "disposition": "contacted_patient", "note": "Advised rest; recheck in 1 h.",
            "minutes": "12", "program": "rpm", "interactive": "yes", "modality": "audio",
        ])
        #expect(resolved.status == 303)
        let final = try #require(try server.database.tasks().first)
        #expect(final.status == .resolved && final.resolvedBy == "ana" && final.disposition == .contactedPatient)
        let time = try await server.database.timeEntries(taskID: task.id)
        #expect(time.map(\.minutes) == [12] && time[0].interactive && time[0].modality == .audio && time[0].performedBy == "ana")
        let shown = try await server.get("/tasks/\(task.id)", cookie: ana).body
        #expect(shown.contains("Contacted patient") && shown.contains("Advised rest; recheck in 1 h.") && shown.contains("12 min RPM"))
    }
}

/// Runs curl and returns its standard output.
func curl(_ arguments: [String]) async throws -> String {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
                process.arguments = ["--max-time", "30"] + arguments
                let pipe = Pipe()
                process.standardOutput = pipe
                try process.run()
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                guard process.terminationStatus == 0 else { throw TestFailure("curl \(arguments) exited \(process.terminationStatus)") }
                return String(decoding: data, as: UTF8.self)
            })
        }
    }
}
