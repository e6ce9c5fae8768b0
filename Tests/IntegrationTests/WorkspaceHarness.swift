import Foundation
import Glibc
import Hummingbird
import Logging
import Synchronization
import VitalsConfig
import VitalsDomain
import VitalsStore
import VitalsWeb

/// An HTTP/1.1 response as a test reads it.
struct HTTPReply: Sendable {
    var status: Int
    /// Header lines in order, names lower-cased.
    var headers: [(name: String, value: String)]
    var body: String
    /// Set when the connection closed before the body was whole: what was missing.
    var missingBytes: String? = nil

    func header(_ name: String) -> String? { headers.first { $0.name == name.lowercased() }?.value }
    var setCookies: [String] { headers.filter { $0.name == "set-cookie" }.map(\.value) }
    var location: String? { header("location") }

    /// The value of a hidden form field in the body, e.g. `csrf` or `version`.
    func field(_ name: String) -> String? {
        guard let r = body.range(of: "name=\"\(name)\" value=\"") else { return nil }
        return String(body[r.upperBound...].prefix { $0 != "\"" })
    }
}

/// One HTTP request over a fresh loopback connection (`Connection: close`), on a Dispatch thread so
/// that the in-process server keeps the cooperative pool.
func httpRequest(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: String? = nil) async throws -> HTTPReply {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try blockingRequest(port: port, method, path, headers: headers, body: body) })
        }
    }
}

/// One HTTP request over a fresh loopback connection, blocking the calling thread.
/// - Throws: `TestFailure` when nothing listens, or when the reply ends before its `Content-Length`
///   or its last chunk (a test then fails with that reason, not on a value cut short).
func blockingRequest(port: Int, _ method: String, _ path: String, headers: [String: String], body: String?) throws -> HTTPReply {
    guard let fd = connectLoopback(port: port) else { throw TestFailure("nothing listens on \(port)") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
    for (k, v) in headers { head += "\(k): \(v)\r\n" }
    let payload = Array((body ?? "").utf8)
    if body != nil { head += "Content-Length: \(payload.count)\r\n" }
    try sendAll(fd, Array((head + "\r\n").utf8) + payload)
    let response = try receiveUntilClosed(fd)
    let reply = try parseReply(response)
    if method != "HEAD", let missing = reply.missingBytes {
        throw TestFailure("\(method) \(path): the reply ended \(missing) early (status \(reply.status))")
    }
    return reply
}

/// Writes all of `bytes`, again after a partial write or a signal.
/// - Throws: `TestFailure` with `errno` when the socket refuses.
func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw TestFailure("send failed: errno \(errno)") }
        sent += n
    }
}

/// Reads until the peer closes. A signal that lands on this thread (SIGCHLD from a test's child
/// process) makes `recv` on a socket with `SO_RCVTIMEO` fail with `EINTR` even under `SA_RESTART`
/// (signal(7)); that is read again, not taken for the end.
/// - Throws: `TestFailure` on the 30 s receive limit or another error.
func receiveUntilClosed(_ fd: Int32) throws -> [UInt8] {
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n == 0 { return response }
        if n < 0 {
            if errno == EINTR { continue }
            throw TestFailure("recv failed after \(response.count) bytes: errno \(errno)")
        }
        response += buffer[0..<n]
    }
}

/// Parses a response; decodes a chunked body.
func parseReply(_ bytes: [UInt8]) throws -> HTTPReply {
    let text = String(decoding: bytes, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("no HTTP response") }
    let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
    guard let status = lines.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
        throw TestFailure("bad status line")
    }
    let headers = lines.dropFirst().compactMap { line -> (String, String)? in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
    }
    var body = String(text[split.upperBound...])
    var missing: String?
    if headers.contains(where: { $0.0 == "transfer-encoding" && $0.1.contains("chunked") }) {
        var decoded = ""
        var rest = Substring(body)
        missing = "before its last chunk"
        while let line = rest.range(of: "\r\n"), let size = Int(rest[..<line.lowerBound], radix: 16) {
            if size == 0 {
                missing = nil
                break
            }
            let start = line.upperBound
            let chunk = rest.utf8[start...].prefix(size)
            if chunk.count < size { break }
            decoded += String(decoding: chunk, as: UTF8.self)
            rest = Substring(String(decoding: rest.utf8[chunk.endIndex...].dropFirst(2), as: UTF8.self))
        }
        body = decoded
    } else if let length = headers.first(where: { $0.0 == "content-length" }).flatMap({ Int($0.1) }), body.utf8.count < length {
        missing = "\(length - body.utf8.count) bytes"
    }
    return HTTPReply(status: status, headers: headers, body: body, missingBytes: missing)
}

/// A clock a test moves by hand.
final class TestClock: Sendable {
    private let now: Mutex<Date>
    init(_ start: Date = Date()) { now = Mutex(start) }
    func read() -> Date { now.withLock { $0 } }
    func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
}

/// The workspace listener in this process on a free loopback port, over a database with two care
/// managers (Ana Ruiz `ana`, Bo Chen `bo`, passwords `correct horse 1` / `battery staple 2`) and the
/// hypertension patient `p2` (cuff `c1`) in Ana's caseload.
final class WorkspaceServer: @unchecked Sendable {
    static let passwords = ["ana": "correct horse 1", "bo": "battery staple 2"]
    /// Their bcrypt hashes, computed once for all servers: each hash is ~0.25 s of CPU on a thread of
    /// the cooperative pool, which the in-process servers of other tests need.
    private static let hashStore = Mutex<[String: String]?>(nil)
    static func hashes() throws -> [String: String] {
        try hashStore.withLock { stored in
            if let stored { return stored }
            let made = try passwords.mapValues { try Passwords.hash($0) }
            stored = made
            return made
        }
    }
    let directory: TemporaryDirectoryPath
    let database: AppDatabase
    let port: Int
    let clock: TestClock
    private let task: Task<Void, any Error>

    /// - Parameter webYAML: more `web.*` lines, indented by two spaces.
    init(tls: (cert: String, key: String)? = nil, clock: TestClock = TestClock(), webYAML: String = "",
         idleTimeout: Duration = .seconds(30)) async throws {
        directory = try TemporaryDirectoryPath()
        self.clock = clock
        var yaml = """
            database:
              path: \(directory.path)/vitalsd.sqlite
            web:
              enabled: true
            """
        if let tls { yaml += "\n  tls_cert_file: \(tls.cert)\n  tls_key_file: \(tls.key)" }
        if !webYAML.isEmpty { yaml += "\n" + webYAML }
        var config = try VitalsConfiguration.parse(yaml: yaml)
        // Port 0: the kernel picks a free port as the listener binds. A port chosen beforehand could be
        // taken by another test's listener meanwhile, which would then answer this test's requests.
        config.web.port = 0
        database = try AppDatabase.open(path: config.database.path)
        try database.addUser(username: "ana", displayName: "Ana Ruiz", role: .careManager,
                             passwordHash: try Self.hashes()["ana"]!, actor: "test")
        try database.addUser(username: "bo", displayName: "Bo Chen", role: .careManager,
                             passwordHash: try Self.hashes()["bo"]!, actor: "test")
        try database.upsertPatient(Patient(id: "p2", timezone: "America/Chicago", programs: [.hypertension], careManager: "ana"),
                                   actor: "test")
        try database.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p2"), actor: "test")
        // Minutes count only within an RPM episode: consent given a month ago.
        try database.startEpisode(
            patientID: "p2", startDate: LocalDate(Date().addingTimeInterval(-30 * 86_400), in: TimeZone(identifier: "America/Chicago")!),
            practitioner: "Dr. Ng", actor: "test")
        var logger = Logger(label: "workspace-test")
        logger.logLevel = .warning
        let (listening, continuation) = AsyncStream<Int>.makeStream()
        let app = try Workspace.application(configuration: config, database: database, logger: logger, clock: { clock.read() },
                                            idleTimeout: idleTimeout, onListening: { port in
                                                continuation.yield(port)
                                                continuation.finish()
                                            })
        task = Task {
            defer { continuation.finish() }
            try await app.runService(gracefulShutdownSignals: [])
        }
        var iterator = listening.makeAsyncIterator()
        guard let bound = await iterator.next() else {
            let reason = await { [task] () async -> String in
                do { try await task.value; return "it stopped" } catch { return "\(error)" }
            }()
            throw TestFailure("the workspace did not listen: \(reason)")
        }
        port = bound
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
        try? database.close()
        directory.remove()
    }

    func get(_ path: String, cookie: String? = nil) async throws -> HTTPReply {
        try await httpRequest(port: port, "GET", path, headers: cookie.map { ["Cookie": $0] } ?? [:])
    }

    func post(_ path: String, cookie: String? = nil, form: [String: String]) async throws -> HTTPReply {
        var headers = ["Content-Type": "application/x-www-form-urlencoded"]
        if let cookie { headers["Cookie"] = cookie }
        let body = form.map { "\(formEncode($0.key))=\(formEncode($0.value))" }.joined(separator: "&")
        return try await httpRequest(port: port, "POST", path, headers: headers, body: body)
    }

    /// Signs in through the form.
    /// - Returns: the reply to the form post and the session cookie (`name=value`), if one was set.
    func signIn(_ username: String, password: String? = nil) async throws -> (reply: HTTPReply, cookie: String?) {
        let form = try await get("/signin")
        let csrfCookie = try requireCookie(form, prefix: "vitalsd_signin=")
        let reply = try await post("/signin", cookie: csrfCookie, form: [
            "csrf": form.field("csrf") ?? "", "username": username, "password": password ?? Self.passwords[username] ?? "",
        ])
        let session = reply.setCookies.first { $0.hasPrefix("vitalsd_session=") && !$0.hasPrefix("vitalsd_session=;") }
        return (reply, session.map { String($0.prefix { $0 != ";" }) })
    }

    /// Signs in through the form and returns the session cookie (`name=value`).
    /// - Throws: `TestFailure` with the reply's status and its error text when no session was made.
    func session(_ username: String, password: String? = nil) async throws -> String {
        let (reply, cookie) = try await signIn(username, password: password)
        if let cookie { return cookie }
        let error = reply.body.range(of: "role=\"alert\"").map { String(reply.body[$0.upperBound...].prefix(200)) } ?? reply.body.prefix(200).description
        throw TestFailure("sign-in of \(username) made no session: status \(reply.status), \(error)")
    }
}

/// `name=value` of the first cookie set with this prefix.
func requireCookie(_ reply: HTTPReply, prefix: String) throws -> String {
    guard let c = reply.setCookies.first(where: { $0.hasPrefix(prefix) }) else { throw TestFailure("no cookie \(prefix)") }
    return String(c.prefix { $0 != ";" })
}

/// `application/x-www-form-urlencoded` encoding of one value.
func formEncode(_ s: String) -> String {
    var allowed = CharacterSet.alphanumerics
    allowed.insert(charactersIn: "-._*")
    return (s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s).replacingOccurrences(of: "%20", with: "+")
}

/// A fresh directory under the system temporary directory.
struct TemporaryDirectoryPath: Sendable {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "vitalsd-web-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
