import Foundation
import Glibc
import MQTTClient
import Testing
import VitalsDaemon
import VitalsStore

/// A database on a file system that fills up: a real, small tmpfs (the tests run as root, as CI does).
@Suite("a full disk", .serialized)
struct DiskFullTests {
    /// Runs `path arguments` to completion.
    /// - Returns: its exit code.
    @discardableResult
    func run(_ path: String, _ arguments: [String], log: String) async throws -> Int32? {
        let p = try ChildProcess(path: path, arguments: arguments, logPath: log)
        _ = await p.waitForExit(seconds: 120)
        return p.exitCode
    }

    @Test("/readyz names the full disk (SQLITE_FULL), checkpoint failures do not flood the log, freeing space resumes ingest")
    func diskFull() async throws {
        let mount = NSTemporaryDirectory() + "vitalsd-full-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let tools = mount + ".log"
        try #require(try await run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], log: tools) == 0,
                     "mounting a tmpfs needs root: \((try? String(contentsOfFile: tools, encoding: .utf8)) ?? "")")
        defer {
            _ = umount2(mount, Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: mount)
            try? FileManager.default.removeItem(atPath: tools)
        }
        let env = try await TestEnvironment(databasePath: mount + "/vitalsd.sqlite")
        let daemon = try env.startProcess()
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        let pub = try await env.publisher()
        defer { pub.close() }
        let base = msAgo(86_400)
        #expect(await publishUntilStored(pub, env, payload: glucoseJSON(100, at: base)))

        // Fill the file system, then send readings until a commit must grow the WAL.
        await #expect(try run("/bin/dd", ["if=/dev/zero", "of=\(mount)/filler", "bs=64k"], log: tools) != 0)  // stops at ENOSPC
        var sent = 1
        let full = await eventually {
            for _ in 0..<200 {
                try? pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(100 + Double(sent % 50), at: base + Int64(sent) * 1000))
                sent += 1
            }
            guard let r = await httpGet(port: env.httpPort, "/readyz") else { return false }
            return r.status == 503 && r.body.contains("the disk holding the database is full (SQLITE_FULL)")
        }
        #expect(full)
        #expect(await httpGet(port: env.httpPort, "/readyz")?.body.contains("a commit has waited") == false)

        // Space again: the batch is committed on its next attempt, and nothing was lost.
        try FileManager.default.removeItem(atPath: mount + "/filler")
        try await pub.waitUntilDelivered()
        #expect(await eventually { (try? env.statistics().readings) == sent })
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        #expect(daemon.isRunning)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))

        // Checkpoints failed every 0.5 s meanwhile; the log has the first failure and then one a minute.
        let log = try String(contentsOfFile: env.directory + "/vitalsd.log", encoding: .utf8)
        #expect(log.components(separatedBy: "WAL checkpoint failed").count - 1 <= 2, "\(log)")
    }

    @Test("a failure repeated every 0.5 s is logged first, then once a minute with its count")
    func failureLogRate() {
        var log = FailureLog(every: .seconds(60))
        let t0 = ContinuousClock.now
        // Failures at 0, 0.5, 1.0, ... 130 s: logged at 0 s (1st), 60 s (121st) and 120 s (241st).
        var logged: [Int] = []
        for i in 0...260 {
            if let n = log.failed(now: t0 + .milliseconds(500 * i)) { logged.append(n) }
        }
        #expect(logged == [1, 121, 241])
        #expect(log.recovered() == 261)
        #expect(log.recovered() == nil)
        #expect(log.failed(now: t0 + .seconds(131)) == 1)  // a new failing is logged at once
    }
}
