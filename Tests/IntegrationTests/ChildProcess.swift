import Foundation
import Glibc

/// A child process started with `posix_spawn`, with a clean signal mask.
///
/// Foundation's `Process` passes on the test runner's blocked signals, so a child started that way
/// ignores SIGTERM. Here the child starts with no blocked signals and default handlers, as it would
/// from a shell or systemd.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private var status: Int32?

    /// Starts `path` with `arguments`, standard output to `outputPath` (default /dev/null) and standard
    /// error to `logPath`.
    init(path: String, arguments: [String], logPath: String, outputPath: String = "/dev/null",
         extraEnvironment: [String: String] = [:]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in extraEnvironment { environment[k] = v }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn \(path): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// True until the child has exited (reaps it when it has).
    var isRunning: Bool {
        if status != nil { return false }
        var s: Int32 = 0
        if waitpid(pid, &s, WNOHANG) == pid {
            status = s
            return false
        }
        return true
    }

    /// Sends `signal`.
    func signal(_ signal: Int32) { _ = kill(pid, signal) }

    /// Waits up to `seconds` for the child to exit.
    /// - Returns: true if it exited.
    func waitForExit(seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            if Date() > deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Blocks until the child exits; for `deinit` and teardown only.
    func waitBlocking() {
        guard status == nil else { return }
        var s: Int32 = 0
        if waitpid(pid, &s, 0) == pid { status = s }
    }

    /// The exit code if the child exited normally; nil if it was killed by a signal or is running.
    var exitCode: Int32? {
        guard let s = status, s & 0x7f == 0 else { return nil }
        return (s >> 8) & 0xff
    }
}
