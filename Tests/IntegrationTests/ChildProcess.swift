import Foundation
import Glibc
import Synchronization

/// A child process started with `posix_spawn`, with a clean signal mask, that cannot outlive the
/// test process.
///
/// Foundation's `Process` passes on the test runner's blocked signals, so a child started that way
/// ignores SIGTERM. Here the child starts with no blocked signals and default handlers, as it would
/// from a shell or systemd.
///
/// ## Teardown
/// - When the test process dies (a crash, a `kill -9`, a CI timeout), the kernel kills the child:
///   it is started through `setpriv --pdeathsig KILL` (util-linux), which sets `PR_SET_PDEATHSIG`
///   and then executes the program under the same pid. The kernel sends that signal when the
///   *thread* that spawned the child ends, not the process; the cooperative pool's threads end
///   after a few idle seconds (a child spawned from one was killed 10–15 s later), so every child
///   is spawned from ``Spawner``'s thread, which lives as long as the process.
/// - When a test ends, passed or failed, the last reference to its `ChildProcess` goes away and
///   `deinit` kills a child still running, so no broker or daemon keeps running (and logging
///   "Connection refused") for the rest of the run.
///
/// `runAs` starts the program under another user (mosquitto, which would otherwise drop from root
/// to its own user itself; a change of user clears the parent-death signal, so `setpriv` changes
/// it before setting the signal).
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    private let state = Mutex<Int32?>(nil)

    /// Starts `path` with `arguments`, standard output to `outputPath` (default /dev/null) and standard
    /// error to `logPath`.
    init(path: String, arguments: [String], logPath: String, outputPath: String = "/dev/null",
         extraEnvironment: [String: String] = [:], runAs user: String? = nil) throws {
        var wrapped = ["--pdeathsig", "KILL"]
        if let user, getuid() == 0 { wrapped = ["--reuid=\(user)", "--regid=\(user)", "--init-groups"] + wrapped }
        let argv = [Self.setpriv] + wrapped + ["--", path] + arguments
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in extraEnvironment { environment[k] = v }
        let envp = environment.map { "\($0.key)=\($0.value)" }
        pid = try Spawner.shared.spawn(argv: argv, environment: envp, stdout: outputPath, stderr: logPath)
    }

    deinit {
        if isRunning {
            _ = kill(pid, SIGKILL)
            waitBlocking()
        }
    }

    static let setpriv = "/usr/bin/setpriv"

    /// True until the child has exited (reaps it when it has).
    var isRunning: Bool {
        state.withLock { status in
            if status != nil { return false }
            var s: Int32 = 0
            if waitpid(pid, &s, WNOHANG) == pid {
                status = s
                return false
            }
            return true
        }
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
        state.withLock { status in
            guard status == nil else { return }
            var s: Int32 = 0
            while true {
                let r = waitpid(pid, &s, 0)
                if r == pid { status = s; return }
                if r < 0 && errno != EINTR { status = 0; return }
            }
        }
    }

    /// The exit code if the child exited normally; nil if it was killed by a signal or is running.
    var exitCode: Int32? {
        guard let s = state.withLock({ $0 }), s & 0x7f == 0 else { return nil }
        return (s >> 8) & 0xff
    }
}

/// The one thread that spawns every child process of the tests, and never ends (see ``ChildProcess``).
final class Spawner: Sendable {
    static let shared = Spawner()

    private struct Request: @unchecked Sendable {
        var argv: [String]
        var environment: [String]
        var stdout: String
        var stderr: String
        var done: DispatchSemaphore
        var result: UnsafeMutablePointer<(pid: pid_t, error: Int32)>
    }

    private let queue = Mutex<[Request]>([])
    private let wake = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            while true {
                wake.wait()
                guard let request = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { continue }
                request.result.pointee = Self.spawnNow(request)
                request.done.signal()
            }
        }
        thread.name = "test-spawner"
        thread.start()
    }

    /// Spawns on the spawner thread and waits for the pid.
    /// - Throws: ``TestFailure`` when `posix_spawn` fails.
    func spawn(argv: [String], environment: [String], stdout: String, stderr: String) throws -> pid_t {
        let result = UnsafeMutablePointer<(pid: pid_t, error: Int32)>.allocate(capacity: 1)
        defer { result.deallocate() }
        let done = DispatchSemaphore(value: 0)
        queue.withLock {
            $0.append(Request(argv: argv, environment: environment, stdout: stdout, stderr: stderr, done: done, result: result))
        }
        wake.signal()
        done.wait()
        guard result.pointee.error == 0 else {
            throw TestFailure("posix_spawn \(argv.joined(separator: " ")): \(String(cString: strerror(result.pointee.error)))")
        }
        return result.pointee.pid
    }

    private static func spawnNow(_ r: Request) -> (pid: pid_t, error: Int32) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, r.stdout, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, r.stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)

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

        let argv = r.argv.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = r.environment.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, r.argv[0], &actions, &attributes, argv, envp)
        return (child, rc)
    }
}
