import Foundation
import Synchronization
import Glibc
import VitalsDomain

/// A real mosquitto on a free loopback port, with persistence in a temporary directory.
///
/// Uses the repository's `Config/mosquitto.conf` settings (persistence, unlimited queue, 5000 in flight)
/// with the port and paths replaced.
final class Broker: @unchecked Sendable {
    private(set) var port = 0
    let directory: String
    /// A TLS listener's port, when started with `tls`.
    private(set) var tlsPort: Int?
    private let tls: (ca: String, cert: String, key: String)?
    /// Lines added to the shipped configuration.
    private let extraConfiguration: String
    private var process: ChildProcess?

    /// Starts the broker; returns once it listens. Waits without holding a thread of the cooperative
    /// pool, which in-process daemons of other tests need meanwhile.
    /// - Parameter extraConfiguration: lines added to the shipped configuration (`log_type information`).
    init(tls: (ca: String, cert: String, key: String)? = nil, extraConfiguration: String = "") async throws {
        self.tls = tls
        self.extraConfiguration = extraConfiguration
        directory = NSTemporaryDirectory() + "vitalsd-broker-" + UUID().uuidString
        // mosquitto started as root drops to its own user: let it write its persistence file here.
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        // A port found free can be taken by another test's process before mosquitto binds it: then
        // mosquitto exits at once, and the broker starts again on other ports.
        for attempt in 1... {
            port = try Self.freePort()
            tlsPort = tls == nil ? nil : try Self.freePort()
            do {
                try await start()
                return
            } catch let failure as TestFailure where attempt < 5 && failure.description.contains("Address already in use") {
                await stop()
            }
        }
    }

    /// The shipped broker configuration with this broker's port and directory.
    private func writeConfiguration() throws -> String {
        let shipped = try String(contentsOf: repositoryRoot.appendingPathComponent("Config/mosquitto.conf"), encoding: .utf8)
        let conf = shipped
            .replacingOccurrences(of: "listener 1883 127.0.0.1", with: "listener \(port) 127.0.0.1")
            .replacingOccurrences(of: "persistence_location /var/lib/mosquitto/", with: "persistence_location \(directory)/")
        var text = conf + "\n" + extraConfiguration + "\n"
        if let tls, let tlsPort {
            text += "\nlistener \(tlsPort) 127.0.0.1\ncafile \(tls.ca)\ncertfile \(tls.cert)\nkeyfile \(tls.key)\ntls_version tlsv1.2\n"
        }
        let path = directory + "/mosquitto.conf"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func start() async throws {
        let log = directory + "/mosquitto.log"
        // As its own user from the start: mosquitto dropping root itself would clear the parent-death signal.
        process = try ChildProcess(
            path: try Self.mosquittoPath(), arguments: ["-c", try writeConfiguration()], logPath: log, runAs: "mosquitto")
        // A generous deadline: on a loaded machine a start can take seconds; it returns as soon as it listens.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, process?.isRunning ?? false {
            if Self.canConnect(port: port) && (tlsPort.map(Self.canConnect(port:)) ?? true) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("mosquitto did not listen on \(port): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and waits for it to exit.
    func stop() async { await end(SIGTERM) }

    /// Kills the broker with SIGKILL (a crash: nothing is saved on the way out) and waits for it.
    func kill() async { await end(SIGKILL) }

    private func end(_ signal: Int32) async {
        guard let p = process else { return }
        p.signal(signal)
        while !(await p.waitForExit(seconds: 60)) { p.signal(SIGKILL) }
        process = nil
    }

    deinit {
        if let p = process {
            p.signal(SIGTERM)
            p.waitBlocking()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func mosquittoPath() throws -> String {
        for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        throw TestFailure("mosquitto is not installed (apt-get install -y mosquitto)")
    }

    /// A loopback TCP port for a listener a test starts next (a broker, a daemon, a receiver), free
    /// when chosen and never handed out before in this process.
    ///
    /// Chosen outside the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), from
    /// which the kernel picks ports for `bind` to port 0 and for outgoing connections: a port from that
    /// range, found free and then released, could be handed by the kernel to another test's listener
    /// or connection before this test's listener binds it, and requests meant for one test would then
    /// reach another's listener. Outside it only this function hands ports out, each once.
    static func freePort() throws -> Int {
        try PortAllocator.shared.next()
    }

    static func canConnect(port: Int) -> Bool {
        guard let fd = connectLoopback(port: port) else { return false }
        close(fd)
        return true
    }
}

/// A TCP socket connected to 127.0.0.1:`port`, or nil when nothing listens. The caller closes it.
func connectLoopback(port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    var result = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if result != 0 && errno == EINTR {
        // A signal interrupted the connect, which goes on by itself: wait for it and read its outcome.
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while poll(&p, 1, 30_000) < 0 && errno == EINTR {}
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        result = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0 && p.revents & Int16(POLLOUT) != 0 ? 0 : -1
    }
    guard result == 0 else {
        close(fd)
        return nil
    }
    return fd
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The package root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The `vitalsd` executable built next to the test bundle.
func vitalsdBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["VITALSD_BINARY"] { return path }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("vitalsd").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    throw TestFailure("vitalsd binary not found next to \(CommandLine.arguments[0]); run `swift build --build-tests` first")
}

/// Polls `condition` every 20 ms until it holds or `seconds` pass.
///
/// Sleeps with `Task.sleep`, never by blocking a thread: the daemon under test runs on the same
/// cooperative thread pool (two threads on a 2-core machine). The deadline only bounds a failure:
/// it returns as soon as the condition holds, so deadlines are generous enough for a machine busy
/// with a parallel build (the default 60 s; `scripts/test --load` runs the suite so).
func eventually(_ seconds: Double = 60, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Polls `condition` like ``eventually(_:_:)``, and while it does not hold moves `clock` on by
/// `step` seconds, at most once per `period` of real time.
///
/// A timer service on the test clock (escalation, adherence) may be running, not sleeping, when the
/// test moves the clock; it then sleeps its next interval from the new time and would wait for a
/// move that never comes. Moving on in steps of one interval lets it run once more.
func eventually(advancing clock: ManualWallClock, by step: TimeInterval, every period: Duration = .milliseconds(200),
                _ seconds: Double = 60, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let periodSeconds = Double(period.components.seconds) + Double(period.components.attoseconds) / 1e18
    var moved = Date()
    return try await eventually(seconds) {
        if try await condition() { return true }
        if Date().timeIntervalSince(moved) >= periodSeconds {
            clock.advance(by: step)
            moved = Date()
        }
        return false
    }
}

/// Hands out loopback ports outside the kernel's ephemeral range, each once per process
/// (``Broker/freePort()``).
final class PortAllocator: Sendable {
    static let shared = PortAllocator()
    private let handedOut = Mutex<Set<Int>>([])
    /// The ports to choose from.
    let range: ClosedRange<Int>

    init() {
        // Linux's default ephemeral range is 32768–60999; below it, 10000–32767 is left to us.
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? "32768 60999"
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        let low = bounds.first ?? 32768, high = bounds.count > 1 ? bounds[1] : 60999
        range = low - 10000 >= 5000 ? 10000...(low - 1) : (high + 1)...65535
    }

    /// A port of ``range`` not handed out before, that nothing is bound to now.
    /// - Throws: `TestFailure` when 1,000 tries found none.
    func next() throws -> Int {
        for _ in 0..<1000 {
            let port = Int.random(in: range)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if Self.isFree(port) { return port }
        }
        throw TestFailure("no free port in \(range)")
    }

    /// Whether a listener could bind 127.0.0.1:`port` now.
    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
