import Foundation
import Glibc
import Testing
import VitalsDaemon

/// A fake systemd: a datagram socket that collects what the daemon sends to `$NOTIFY_SOCKET`.
final class FakeNotifySocket: @unchecked Sendable {
    let fd: Int32
    /// The value for `NOTIFY_SOCKET`: a file path, or `@name` for an abstract socket.
    let name: String

    init(abstract: Bool) throws {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        name = abstract ? "@vitalsd-test-\(UUID().uuidString.prefix(8))" : NSTemporaryDirectory() + "vitalsd-notify-\(UUID().uuidString.prefix(8))"
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(name.utf8)
        if abstract { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in for (i, b) in bytes.enumerated() { buffer[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1))
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard rc == 0 else { throw TestFailure("bind \(name): \(String(cString: strerror(errno)))") }
    }

    deinit {
        close(fd)
        if !name.hasPrefix("@") { unlink(name) }
    }

    /// The next datagram within `seconds`, or nil.
    func receive(seconds: Double) async -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { return String(decoding: buffer[0..<n], as: UTF8.self) }
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    /// Datagrams until one contains `text` or `seconds` pass.
    func wait(for text: String, seconds: Double) async -> [String] {
        var seen: [String] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, let d = await receive(seconds: deadline.timeIntervalSinceNow) {
            seen.append(d)
            if d.contains(text) { break }
        }
        return seen
    }
}

@Suite("systemd notification protocol", .serialized)
struct SystemdNotifyTests {
    @Test("READY=1 once subscribed, WATCHDOG=1 every WATCHDOG_USEC/2, STOPPING=1 on SIGTERM", arguments: [false, true])
    func notifyProtocol(abstract: Bool) async throws {
        let env = try await TestEnvironment()
        let socket = try FakeNotifySocket(abstract: abstract)
        let daemon = try env.startProcess(environment: ["NOTIFY_SOCKET": socket.name, "WATCHDOG_USEC": "400000"])
        defer { if daemon.isRunning { daemon.signal(SIGKILL); daemon.waitBlocking() } }

        let beforeReady = await socket.wait(for: "READY=1", seconds: 60)
        #expect(beforeReady.last?.contains("READY=1") == true)
        // Pings keep coming (every 0.2 s, half of WATCHDOG_USEC: the interval itself is checked in
        // `noSocket`). Three within 60 s: a machine busy with a build may delay a ping, never stop them.
        var pings = 0
        let start = Date()
        while pings < 3, Date().timeIntervalSince(start) < 60, let d = await socket.receive(seconds: 60) {
            if d == "WATCHDOG=1" { pings += 1 }
        }
        #expect(pings == 3)

        daemon.signal(SIGTERM)
        let afterTerm = await socket.wait(for: "STOPPING=1", seconds: 30)
        #expect(afterTerm.last == "STOPPING=1")
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
    }

    @Test("without NOTIFY_SOCKET nothing is sent and nothing fails")
    func noSocket() {
        let n = SystemdNotifier(environment: [:])
        #expect(n.socketPath == nil)
        #expect(n.watchdogInterval == nil)
        #expect(n.notify("READY=1") == false)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"]).watchdogInterval == .seconds(15))
    }
}
