import Foundation
import Glibc
import Logging
import PostgresNIO
import VitalsPostgres

/// A PostgreSQL cluster of the tests' own: initdb into a temporary directory, a server on a random
/// loopback port with SCRAM password authentication, TLS offered with a certificate for `localhost`
/// from a private CA made by openssl, `fsync=off`; one per test process, started by the first test
/// that needs it. Each test works in a database of its own (``withDatabase(migrated:_:)``).
///
/// ## Teardown
/// The server is started by `pg_ctl` inside a small shell (as the `postgres` user when the tests run
/// as root: `initdb` refuses root) whose standard input is a pipe from the test process. The shell
/// waits for the end of that input, which comes when the test process exits *or dies* (the kernel
/// closes the pipe of a killed process too); it then stops the server (`pg_ctl stop -m fast`) and
/// removes the directory. So no cluster outlives the test run, whatever ends it.
///
/// ## Timeouts
/// postgres-nio retries a refused password forever instead of failing, and a query can wait on a lock:
/// every test body runs under a deadline (``withDeadline(_:_:)``), and every connection has
/// `statement_timeout` and `lock_timeout` of 60 s, so a server-side wait ends too.
public final class ThrowawayPostgres: Sendable {
    public let directory: String
    public let port: Int
    public let passwordFile: String
    private let shell: Process
    private let keepAlive: FileHandle

    private init(directory: String, port: Int, passwordFile: String, shell: Process, keepAlive: FileHandle) {
        self.directory = directory
        self.port = port
        self.passwordFile = passwordFile
        self.shell = shell
        self.keepAlive = keepAlive
    }

    /// The cluster of this test process, started on first use.
    public static func shared() async throws -> ThrowawayPostgres {
        try await SharedCluster.instance.get()
    }

    private actor SharedCluster {
        static let instance = SharedCluster()
        private var task: Task<ThrowawayPostgres, any Error>?

        func get() async throws -> ThrowawayPostgres {
            if let task { return try await task.value }
            let task = Task { try await ThrowawayPostgres.start() }
            self.task = task
            return try await task.value
        }
    }

    /// The `bin` directory of the newest PostgreSQL installed by Debian's packages.
    public static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        guard let newest = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/initdb") else {
            throw ClusterFailure("PostgreSQL is not installed (scripts/deps installs Debian's postgresql)")
        }
        return "\(root)/\(newest)/bin"
    }

    private static func start() async throws -> ThrowawayPostgres {
        let bin = try binaries()
        let directory = NSTemporaryDirectory() + "vitalsd-pg-" + UUID().uuidString.prefix(8)
        let asRoot = getuid() == 0
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        var password = ""
        for _ in 0..<24 { password += String(UInt8.random(in: 0...15), radix: 16) }
        let passwordFile = directory + "/password"
        try (password + "\n").write(toFile: passwordFile, atomically: false, encoding: .utf8)
        if asRoot {
            guard let user = getpwnam("postgres") else { throw ClusterFailure("there is no postgres user") }
            for path in [directory, passwordFile] where chown(path, user.pointee.pw_uid, user.pointee.pw_gid) != 0 {
                throw ClusterFailure("chown \(path): \(String(cString: strerror(errno)))")
            }
        }
        try await run(asRoot: asRoot, [
            "\(bin)/initdb", "-D", "\(directory)/data", "-U", "postgres", "-A", "scram-sha-256",
            "--pwfile=\(passwordFile)", "-E", "UTF8", "--no-sync",
        ], log: directory + "/initdb.log")

        // A private CA and a server certificate for the name `localhost`, for the TLS tests. The
        // clock stays the test process's (under --faketime too), so that the certificate is valid
        // by the clock that verifies it.
        try await run(asRoot: asRoot, keepClock: true, ["/bin/sh", "-c", """
            set -e
            cd "$0"
            umask 077
            printf 'subjectAltName=DNS:localhost\\n' >server.ext
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3 \
                -subj '/CN=vitalsd test CA' -keyout ca.key -out ca.pem
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=localhost' \
                -keyout server.key -out server.csr
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile server.ext -out server.pem
            """, directory], log: directory + "/openssl.log")

        // A port found free may be taken by another process before the server binds it: then try another.
        // Above the kernel's ephemeral range (32768–60999 by default), and apart from the range the
        // integration tests' listeners use (below it): no other listener of the tests is given it.
        var attempt = 0
        while true {
            attempt += 1
            let port = Int.random(in: 61000...65000)
            let script = """
                set -u
                "$0/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 \
                    -o "-p $2 -k $1 -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
                    -c ssl=on -c ssl_cert_file=$1/server.pem -c ssl_key_file=$1/server.key" start \
                    >>"$1/pg_ctl.log" 2>&1 || exit 1
                : >"$1/ready"
                cat >/dev/null
                "$0/pg_ctl" -D "$1/data" -m fast -w -t 60 stop >>"$1/pg_ctl.log" 2>&1
                rm -rf "$1"
                """
            let pipe = Pipe()
            // The write end must not leak into other children (their end would keep the server up).
            _ = fcntl(pipe.fileHandleForWriting.fileDescriptor, F_SETFD, FD_CLOEXEC)
            let shell = process(asRoot: asRoot, ["/bin/sh", "-c", script, bin, directory, String(port)])
            shell.standardInput = pipe
            shell.standardOutput = FileHandle.nullDevice
            shell.standardError = FileHandle.nullDevice
            try shell.run()
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, shell.isRunning, !FileManager.default.fileExists(atPath: directory + "/ready") {
                try await Task.sleep(for: .milliseconds(20))
            }
            if FileManager.default.fileExists(atPath: directory + "/ready") {
                return ThrowawayPostgres(directory: directory, port: port, passwordFile: passwordFile, shell: shell, keepAlive: pipe.fileHandleForWriting)
            }
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            try? pipe.fileHandleForWriting.close()
            if attempt < 10 && log.contains("could not bind") { continue }
            throw ClusterFailure("PostgreSQL did not start on port \(port): \(log)")
        }
    }

    /// A process for `arguments`, as the `postgres` user when running as root.
    private static func process(asRoot: Bool, keepClock: Bool = false, _ arguments: [String]) -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: asRoot ? "/usr/sbin/runuser" : arguments[0])
        p.arguments = asRoot ? ["-u", "postgres", "--"] + arguments : Array(arguments.dropFirst())
        p.currentDirectoryURL = URL(fileURLWithPath: "/")
        // The server keeps the real clock when the suite runs under libfaketime (scripts/test
        // --faketime): leases are judged by the server's clock, and no test compares it with its own.
        if !keepClock {
            p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FAKETIME") && $0.key != "LD_PRELOAD" }
        }
        return p
    }

    /// Runs `arguments` to the end without blocking a thread.
    /// - Throws: ``ClusterFailure`` with the log when it exits with another status than 0.
    private static func run(asRoot: Bool, keepClock: Bool = false, _ arguments: [String], log: String) async throws {
        let p = process(asRoot: asRoot, keepClock: keepClock, arguments)
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? output.close() }
        p.standardOutput = output
        p.standardError = output
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            p.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try p.run() } catch { continuation.resume(throwing: error) }
        }
        guard status == 0 else {
            throw ClusterFailure("\(arguments[0]) exited \(status): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }

    /// Settings for `database` as the `postgres` role, with the cluster's password file.
    /// - Parameters:
    ///   - host: `127.0.0.1`, or `localhost`, the name in the server's certificate.
    ///   - parameters: the URL's query (`sslmode=…`).
    public func settings(database: String = "postgres", host: String = "127.0.0.1", parameters: String = "sslmode=disable") throws -> PostgresSettings {
        try PostgresSettings(url: "postgres://postgres@\(host):\(port)/\(database)?\(parameters)", passwordFile: passwordFile)
    }

    /// The PEM file of the CA that signed the server's certificate.
    public var certificateAuthorityFile: String { directory + "/ca.pem" }

    /// A client configuration for `settings`, with the server-side timeouts of the tests.
    public func configuration(_ settings: PostgresSettings, maximumConnections: Int = 12) -> PostgresClient.Configuration {
        var configuration = settings.clientConfiguration(maximumConnections: maximumConnections)
        configuration.options.additionalStartupParameters = [("statement_timeout", "60s"), ("lock_timeout", "60s")]
        return configuration
    }

    /// Creates a database of its own for one test, runs `body` with a running client on it (under
    /// `deadline`), then closes the client and drops the database.
    public func withDatabase<T: Sendable>(
        migrated: Bool = true, deadline: Duration = .seconds(60), _ body: @escaping @Sendable (PostgresClient, String) async throws -> T
    ) async throws -> T {
        let name = "test_" + UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "")
        _ = try await withClient(database: "postgres") { admin in
            // A database name cannot be bound; this one is made of hex digits and '_' above.
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: testLogger)
        }
        let result = try await withClient(settings: settings(database: name), deadline: deadline) { client in
            if migrated { try await PostgresSchema.migrate(client, logger: testLogger) }
            return try await body(client, name)
        }
        _ = try await withClient(database: "postgres") { admin in
            try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: testLogger)
        }
        return result
    }

    /// Runs `body` with a running client on `database`, under a 60 s deadline.
    public func withClient<T: Sendable>(
        database: String, maximumConnections: Int = 12, _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        try await withClient(settings: settings(database: database), maximumConnections: maximumConnections, deadline: .seconds(60), body)
    }

    /// Runs `body` with a running client for `settings`, under `deadline`.
    public func withClient<T: Sendable>(
        settings: PostgresSettings, maximumConnections: Int = 12, deadline: Duration,
        _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: configuration(settings, maximumConnections: maximumConnections))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await withDeadline(deadline) { try await body(client) }
        }
    }
}

/// Runs `body`, or throws ``ClusterFailure`` when `limit` passes first (and cancels it).
public func withDeadline<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw ClusterFailure("a test step took longer than \(limit)")
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// The tests' logger: warnings and errors only (each test migrates a database of its own).
public let testLogger: Logger = {
    var logger = Logger(label: "vitalsd.postgres-tests")
    logger.logLevel = .warning
    return logger
}()

public struct ClusterFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
