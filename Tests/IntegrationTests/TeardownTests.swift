import Foundation
import Glibc
import MQTTClient
import Synchronization
import Testing
import VitalsDaemon

/// Brokers and daemons end with the test that started them, also when it fails, and with the test
/// process when it dies, so that no daemon keeps retrying a stopped broker for the rest of a run.
@Suite("test teardown")
struct TeardownTests {
    @Test("every child process carries the parent-death signal KILL")
    func parentDeathSignal() async throws {
        let directory = NSTemporaryDirectory() + "vitalsd-teardown-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // `setpriv --dump` reports the setting of the process it runs in: the wrapped program's.
        let dump = try ChildProcess(path: ChildProcess.setpriv, arguments: ["--dump"], logPath: directory + "/err",
                                    outputPath: directory + "/out")
        #expect(await dump.waitForExit(seconds: 60))
        let output = try String(contentsOfFile: directory + "/out", encoding: .utf8)
        #expect(output.contains("Parent death signal: KILL"), "\(output)")
    }

    @Test("a child process still running when its test lets go of it is killed and reaped")
    func droppedChildIsKilled() throws {
        var pid: pid_t = 0
        do {
            let sleeper = try ChildProcess(path: "/bin/sleep", arguments: ["600"], logPath: "/dev/null")
            pid = sleeper.pid
            #expect(sleeper.isRunning)
        }
        // Killed and reaped by deinit: the pid no longer exists.
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
    }

    @Test("an in-process daemon of a test that ends without stopping it is cancelled with its environment")
    func abandonedDaemonEnds() async throws {
        var daemon: RunningDaemon?
        do {
            let env = try await TestEnvironment()
            let running = try env.startDaemon()
            try await running.waitUntilSubscribed()
            daemon = running
            // The test "fails" here: no stop(), the environment goes away.
        }
        let task = try #require(daemon?.task)
        let ended = Atomic<Bool>(false)
        Task {
            _ = await task.result
            ended.store(true, ordering: .sequentiallyConsistent)
        }
        #expect(await eventually { ended.load(ordering: .sequentiallyConsistent) })
        #expect(daemon?.service.connectionStatus.connected == false)
    }
}
