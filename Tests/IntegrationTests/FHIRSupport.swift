import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import JWTKit
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import VitalsFHIRServer
import VitalsStore

/// An HTTP answer.
struct HTTPAnswer: Sendable {
    var status: Int
    var headers: [String: String]
    var body: Data

    /// The body as a JSON object.
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
}

/// One request with URLSession, no caching, no cookies.
func request(_ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil) async throws -> HTTPAnswer {
    var r = URLRequest(url: URL(string: url)!)
    r.httpMethod = method
    r.httpBody = body
    for (k, v) in headers { r.setValue(v, forHTTPHeaderField: k) }
    let session = URLSession(configuration: .ephemeral)
    defer { session.finishTasksAndInvalidate() }
    let (data, response) = try await session.data(for: r)
    let http = response as! HTTPURLResponse
    var h: [String: String] = [:]
    for (k, v) in http.allHeaderFields { h[String(describing: k).lowercased()] = String(describing: v) }
    return HTTPAnswer(status: http.statusCode, headers: h, body: data)
}

/// A key pair made with openssl, as an EHR would make it: PEM files and the public JWK Set.
struct TestKey {
    let pemPath: String
    let pem: String
    let algorithm: String
    let kid: String

    /// `ES384` (P-384) or `RS384` (RSA 2048).
    init(_ algorithm: String, kid: String, directory: String) async throws {
        self.algorithm = algorithm
        self.kid = kid
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pemPath = directory + "/\(kid).pem"
        let args = algorithm == "ES384"
            ? ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", pemPath]
            : ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pemPath]
        // RSA key generation takes a while: on a Dispatch thread, not the cooperative pool.
        guard try await runProgram("/usr/bin/openssl", args).0 == 0 else { throw TestFailure("openssl genpkey failed") }
        pem = try String(contentsOfFile: pemPath, encoding: .utf8)
    }

    /// `{"keys": [<public JWK>]}`.
    func jwks() throws -> String { try SMARTClientCredentials.publicJWKS(pem: pem, algorithm: algorithm, keyID: kid) }
}

/// The claims of a test assertion.
struct TestClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: String
    var exp: Int64
    var jti: String
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signs a client assertion with jwt-kit.
/// - Parameter typ: the header's `typ` (SMART requires `JWT`).
func signAssertion(_ key: TestKey, clientID: String, aud: String, exp: Int64, jti: String = UUID().uuidString,
                   typ: String = "JWT") async throws -> String {
    let keys = JWTKeyCollection()
    let kid = JWKIdentifier(string: key.kid)
    if key.algorithm == "ES384" {
        await keys.add(ecdsa: try ES384PrivateKey(pem: key.pem), kid: kid)
    } else {
        await keys.add(rsa: try Insecure.RSA.PrivateKey(pem: key.pem), digestAlgorithm: .sha384, kid: kid)
    }
    var header = JWTHeader()
    header.typ = typ
    return try await keys.sign(TestClaims(iss: clientID, sub: clientID, aud: aud, exp: exp, jti: jti), kid: kid, header: header)
}

/// An ES384 JWS of exactly this header and claims JSON (jwt-kit writes its own `typ` and typed
/// claims), signed with swift-crypto: `base64url(header).base64url(claims).base64url(r ‖ s)`
/// (RFC 7515, RFC 7518 §3.4).
func signRawAssertion(_ key: TestKey, header: String, claims: String) throws -> String {
    func b64(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    let input = b64(Data(header.utf8)) + "." + b64(Data(claims.utf8))
    let signature = try P384.Signing.PrivateKey(pemRepresentation: key.pem).signature(for: Data(input.utf8))
    return input + "." + b64(signature.rawRepresentation)
}

/// An ES384 client assertion whose header has no `typ`.
func signAssertionWithoutTyp(_ key: TestKey, clientID: String, aud: String, exp: Int64) throws -> String {
    try signRawAssertion(key, header: #"{"alg":"ES384","kid":"\#(key.kid)"}"#,
                         claims: #"{"iss":"\#(clientID)","sub":"\#(clientID)","aud":"\#(aud)","exp":\#(exp),"jti":"\#(UUID().uuidString)"}"#)
}

/// POSTs a client_credentials request with an assertion.
func tokenRequest(_ tokenURL: String, assertion: String, scope: String, clientID: String? = nil) async throws -> HTTPAnswer {
    let form = [("grant_type", "client_credentials"), ("scope", scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion)] + (clientID.map { [("client_id", $0)] } ?? [])
    let body = form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)" }.joined(separator: "&")
    return try await request("POST", tokenURL, headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Data(body.utf8))
}

/// The Python of the test virtualenv (scripts/venv): `$VITALSD_TEST_PYTHON`, else `.venv/bin/python`.
func venvPython() throws -> String {
    let path = ProcessInfo.processInfo.environment["VITALSD_TEST_PYTHON"] ?? repositoryRoot.appendingPathComponent(".venv/bin/python").path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestFailure("no test virtualenv at \(path): run scripts/venv (scripts/test does)")
    }
    return path
}

/// Runs a Python script of Tests/python with the venv's Python. Returns (exit code, standard output).
func runPython(_ script: String, _ arguments: [String]) async throws -> (Int32, String) {
    try await runProgram(try venvPython(), [repositoryRoot.appendingPathComponent("Tests/python/\(script)").path] + arguments)
}

/// Runs the built `vitalsd` with arguments; returns (exit code, standard output).
func runVitalsd(_ arguments: [String]) async throws -> (Int32, String) {
    try await runProgram(try vitalsdBinary(), arguments)
}

/// Runs a program to its end on a Dispatch thread (waiting for it on the cooperative pool could starve
/// the in-process daemons of other tests); returns (exit code, standard output). Standard error is dropped.
func runProgram(_ path: String, _ arguments: [String]) async throws -> (Int32, String) {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try runProgramBlocking(path, arguments) }) }
    }
}

private func runProgramBlocking(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Validates resources with fhir.resources (R4B models) and records a test issue for each refused one.
/// - Returns: how many were validated.
@discardableResult
func expectValidFHIR(_ resources: [(name: String, resource: Any)], sourceLocation: SourceLocation = #_sourceLocation) async throws -> Int {
    let path = NSTemporaryDirectory() + "fhir-\(UUID().uuidString).json"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let items = resources.map { ["name": $0.name, "resource": $0.resource] }
    try JSONSerialization.data(withJSONObject: items).write(to: URL(fileURLWithPath: path))
    let (code, output) = try await runPython("validate_fhir.py", [path])
    #expect(code == 0, "validator failed to run: \(output)", sourceLocation: sourceLocation)
    let results = (try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]]) ?? []
    #expect(results.count == resources.count, sourceLocation: sourceLocation)
    for r in results where r["ok"] as? Bool != true {
        Issue.record("fhir.resources refused \(r["name"] ?? "?"): \(r["error"] ?? "")", sourceLocation: sourceLocation)
    }
    return results.count
}

/// Navigates JSON: `value(resource, "code", "coding", 0, "code")`.
func value(_ root: Any?, _ path: Any...) -> Any? {
    var current = root
    for step in path {
        if let key = step as? String { current = (current as? [String: Any])?[key] }
        else if let index = step as? Int {
            guard let array = current as? [Any], index < array.count else { return nil }
            current = array[index]
        }
    }
    return current
}

/// A registered client with its key.
struct RegisteredClient {
    let id: String
    let key: TestKey
}

extension TestEnvironment {
    /// The YAML that turns the FHIR API on, served on the web listener at `port`.
    static func fhirYAML(port: Int) -> String {
        """
        web:
          enabled: true
          port: \(port)
        fhir:
          enabled: true
          public_base_url: http://127.0.0.1:\(port)
        """
    }

    var fhirBase: String { "http://127.0.0.1:\(webPort)/fhir/r4" }
    var tokenURL: String { "http://127.0.0.1:\(webPort)/auth/token" }

    /// Registers a client with an inline JWK Set of a new key.
    func registerClient(scopes: [String], algorithm: String = "ES384") async throws -> RegisteredClient {
        let key = try await TestKey(algorithm, kid: "k-\(UUID().uuidString.prefix(8))", directory: directory)
        let client = try FHIRStore(database: database).addClient(
            name: "EHR", jwks: try key.jwks(), jwksURL: nil, scopes: scopes, actor: "test")
        return RegisteredClient(id: client.id, key: key)
    }

    /// A bearer token for a client, signed with jwt-kit.
    func bearer(_ client: RegisteredClient, scope: String) async throws -> String {
        let exp = Int64(Date().timeIntervalSince1970) + 240
        let answer = try await tokenRequest(tokenURL, assertion: try await signAssertion(client.key, clientID: client.id, aud: tokenURL, exp: exp), scope: scope)
        guard answer.status == 200, let token = answer.json["access_token"] as? String else {
            throw TestFailure("token refused: \(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        }
        return token
    }
}

/// A Hummingbird application on 127.0.0.1, run in this process until stopped: the tests' receivers.
final class LoopbackServer: Sendable {
    private let group: Mutex<(ServiceGroup, Task<Void, any Error>)?> = Mutex(nil)

    /// Starts the application on 127.0.0.1:`port` (0: a port the kernel picks) and returns, once it
    /// listens, the port it listens on. A port chosen earlier with `Broker.freePort()` may have been
    /// taken meanwhile by another test: that is thrown here, not left for a client to meet.
    @discardableResult
    func start(_ router: Router<BasicRequestContext>, port: Int) async throws -> Int {
        var logger = Logger(label: "test-server")
        logger.logLevel = .error
        let (listening, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? port)
                continuation.finish()
            },
            logger: logger)
        let g = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let task = Task {
            defer { continuation.finish() }
            try await g.run()
        }
        group.withLock { $0 = (g, task) }
        var iterator = listening.makeAsyncIterator()
        guard let bound = await iterator.next() else {
            let reason = await { () async -> String in
                do { try await task.value; return "it stopped" } catch { return "\(error)" }
            }()
            throw TestFailure("the test server did not listen on 127.0.0.1:\(port): \(reason)")
        }
        return bound
    }

    func stop() async {
        guard let (g, task) = group.withLock({ $0 }) else { return }
        await g.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
