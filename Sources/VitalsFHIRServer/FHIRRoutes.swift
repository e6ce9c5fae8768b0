import Foundation
import Hummingbird
import Logging
import VitalsFHIR
import VitalsStore

/// Settings of the FHIR API (`fhir.*`).
public struct FHIRAPISettings: Sendable, Hashable {
    /// The public URL vitalsd is reached under, without a trailing slash (`https://rpm.example.org`):
    /// the FHIR base is `<public>/fhir/r4`, the token endpoint `<public>/auth/token`.
    public var publicBaseURL: String
    /// Entries per page when `_count` is not given.
    public var defaultCount: Int
    /// Largest page; a larger `_count` is lowered to it.
    public var maxCount: Int
    /// The software version in the CapabilityStatement.
    public var version: String

    public init(publicBaseURL: String, defaultCount: Int = 100, maxCount: Int = 1000, version: String = "1") {
        self.publicBaseURL = publicBaseURL
        self.defaultCount = defaultCount
        self.maxCount = maxCount
        self.version = version
    }

    /// `<public>/fhir/r4`.
    public var fhirBaseURL: String { publicBaseURL + FHIRAPI.basePath }
    /// `<public>/auth/token`: the `aud` of client assertions.
    public var tokenURL: String { publicBaseURL + FHIRAPI.tokenPath }
}

/// The FHIR R4 read API and the SMART token endpoint, as routes for any Hummingbird router
/// (``addRoutes(to:)``):
/// - `GET /fhir/r4/metadata`: the CapabilityStatement (no token needed);
/// - `GET /.well-known/smart-configuration` and `GET /fhir/r4/.well-known/smart-configuration`;
/// - `POST /auth/token`: SMART Backend Services tokens (``SMARTAuthorizer``);
/// - `GET /fhir/r4/{Observation|Patient|Device|Task}[/id]`: read and search, with a bearer token whose
///   scopes allow the interaction on the type (401 with `WWW-Authenticate` without a valid token, 403
///   without the scope). Every access, allowed or forbidden, is written to the access log.
///
/// Answers are `application/fhir+json`; errors are OperationOutcomes with their HTTP status.
public struct FHIRAPI: Sendable {
    public static let basePath = "/fhir/r4"
    public static let tokenPath = "/auth/token"
    static let contentType = "application/fhir+json; charset=utf-8"

    let store: FHIRStore
    let authorizer: SMARTAuthorizer
    let mapper: FHIRMapper
    let settings: FHIRAPISettings
    let logger: Logger
    let now: @Sendable () -> Date
    let started: Date

    /// - Parameter now: the clock (tests pass their own).
    public init(
        store: FHIRStore, authorizer: SMARTAuthorizer, mapping: FHIRMappingSettings, settings: FHIRAPISettings, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.authorizer = authorizer
        self.mapper = FHIRMapper(settings: mapping)
        self.settings = settings
        self.logger = logger
        self.now = now
        self.started = now()
    }

    /// Registers the routes on `router`.
    public func addRoutes<R: RouterMethods>(to router: R) {
        let api = self
        router.get("/.well-known/smart-configuration") { _, _ in api.json(FHIRCapabilities.smartConfiguration(tokenURL: api.settings.tokenURL), contentType: "application/json") }
        router.get("\(Self.basePath)/.well-known/smart-configuration") { _, _ in
            api.json(FHIRCapabilities.smartConfiguration(tokenURL: api.settings.tokenURL), contentType: "application/json")
        }
        router.get("\(Self.basePath)/metadata") { _, _ in
            api.json(FHIRCapabilities.capabilityStatement(
                baseURL: api.settings.fhirBaseURL, tokenURL: api.settings.tokenURL,
                date: FHIRTime.instant(epochMilliseconds: Int64(api.started.timeIntervalSince1970 * 1000)),
                version: api.settings.version))
        }
        router.post(RouterPath(Self.tokenPath)) { request, _ -> Response in
            var request = request
            guard let buffer = try? await request.collectBody(upTo: 65_536) else {
                return api.oauth(.failure(.invalidRequest("the request body is larger than 64 KiB")))
            }
            guard request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true,
                  let form = QueryString.parse(String(buffer: buffer)) else {
                return api.oauth(.failure(.invalidRequest("the body must be application/x-www-form-urlencoded")))
            }
            return api.oauth(await api.authorizer.token(form: form, now: api.now()))
        }
        router.get("\(Self.basePath)/:type") { request, context -> Response in
            await api.respond { try await api.search(type: context.parameters.get("type") ?? "", request: request) }
        }
        router.get("\(Self.basePath)/:type/:id") { request, context -> Response in
            await api.respond {
                try await api.read(type: context.parameters.get("type") ?? "", id: context.parameters.get("id") ?? "", request: request)
            }
        }
        // Deeper paths (_history, operations, compartments): an OperationOutcome, as FHIR clients
        // expect, not an empty 404.
        router.get("\(Self.basePath)/:type/:id/**") { _, _ -> Response in
            api.outcome(FHIRError(status: 404, code: "not-supported", "not served here: read, search and metadata only (see /fhir/r4/metadata)"))
        }
        for method in [HTTPRequest.Method.post, .put, .patch, .delete] {
            for path in ["\(Self.basePath)", "\(Self.basePath)/:type", "\(Self.basePath)/:type/:id"] {
                router.on(RouterPath(path), method: method) { _, _ -> Response in
                    api.outcome(FHIRError(status: 405, code: "not-supported", "this server is read-only: GET only (see /fhir/r4/metadata)"))
                }
            }
        }
    }

    // MARK: Interactions

    static let types = ["Observation", "Patient", "Device", "Task"]

    func read(type: String, id: String, request: Request) async throws -> Response {
        guard Self.types.contains(type) else { throw FHIRError(status: 404, code: "not-supported", "resource type '\(type)' is not served") }
        let grant = try await authorize(request, type: type, interaction: .read, target: id)
        if let query = request.uri.query, let params = QueryString.parse(query), params.contains(where: { $0.name != "_format" }) {
            throw FHIRError.invalid("a read takes no parameters but _format")
        }
        let resource: FHIRJSON?
        // The patient whose data the read returns (a Patient read names them already).
        var patientID: String?
        switch type {
        case "Observation":
            let source = try await store.observation(id: id)
            patientID = source?.reading.patientID
            resource = source.map { mapper.observation($0) }
        case "Patient": resource = try await store.patient(id: id).map(mapper.patient)
        case "Device":
            let device = try await store.device(id: id)
            patientID = device?.patientID
            resource = device.map(mapper.device)
        default:
            let task = try await Int64(id).asyncMap { try await store.task(id: $0) }
            patientID = task?.patientID
            resource = task.map(mapper.task)
        }
        try await store.database.recordAccess(
            actor: "client:\(grant.clientID)", action: "fhir.read", targetType: type, targetID: id,
            detail: resource == nil ? "not found" : nil, disclosed: patientID.map { [$0: 1] } ?? [:], at: now())
        guard let resource else { throw FHIRError.notFound("\(type)/\(id) is not known") }
        return json(resource)
    }

    func search(type: String, request: Request) async throws -> Response {
        if type == "metadata" || type == ".well-known" { throw FHIRError.notFound("no such endpoint") }
        guard Self.types.contains(type) else { throw FHIRError(status: 404, code: "not-supported", "resource type '\(type)' is not served") }
        guard let query = QueryString.parse(request.uri.query ?? "") else { throw FHIRError.invalid("the query string is not valid percent-encoded UTF-8") }
        let grant = try await authorize(request, type: type, interaction: .search, target: nil)
        let (d, m) = (settings.defaultCount, settings.maxCount)
        var entries: [(type: String, id: String, resource: FHIRJSON)] = []
        var next: String?
        var total: Int?
        var patients: [String]?
        // Patient id → how many of the returned resources are about them (for the access log).
        var disclosed: [String: Int] = [:]
        switch type {
        case "Observation":
            let search = try ObservationSearch(query: query, defaultCount: d, maxCount: m)
            patients = search.patientIDs
            let result = try await store.observations(search)
            entries = result.page.map { ("Observation", $0.logicalID, mapper.observation($0)) }
            for o in result.page { disclosed[o.reading.patientID, default: 0] += 1 }
            if result.more, let last = result.page.last {
                next = ObservationSearch.cursor(measuredAt: last.reading.measuredAt, readingID: last.reading.id)
            }
            total = result.total
        case "Task":
            let search = try TaskSearch(query: query, defaultCount: d, maxCount: m)
            patients = search.patientIDs
            let result = try await store.tasks(search)
            entries = result.page.map { ("Task", String($0.id), mapper.task($0)) }
            for t in result.page { disclosed[t.patientID, default: 0] += 1 }
            if result.more, let last = result.page.last { next = String(last.id) }
            total = result.total
        case "Patient":
            let search = try EnrollmentSearch(query: query, identifierSystem: mapper.settings.patientIdentifierSystem, withPatient: false,
                                              defaultCount: d, maxCount: m)
            let result = try await store.patients(search)
            entries = result.page.map { ("Patient", $0.id, mapper.patient($0)) }
            for p in result.page { disclosed[p.id, default: 0] += 1 }
            if result.more, let last = result.page.last { next = last.id }
        default:
            let search = try EnrollmentSearch(query: query, identifierSystem: mapper.settings.deviceIdentifierSystem, withPatient: true,
                                              defaultCount: d, maxCount: m)
            patients = search.patientIDs
            let result = try await store.devices(search)
            entries = result.page.map { ("Device", $0.id, mapper.device($0)) }
            for d in result.page { disclosed[d.patientID, default: 0] += 1 }
            if result.more, let last = result.page.last { next = last.id }
        }
        let names = Set(query.map(\.name)).subtracting(["_page"]).sorted().joined(separator: ",")
        // The patients searched for are in the detail's count, not in target_id; those whose data
        // came back each get a `fhir.disclosed` entry.
        try await store.database.recordAccess(
            actor: "client:\(grant.clientID)", action: "fhir.search", targetType: type,
            detail: "params=\(names) patients=\(patients?.count ?? 0) results=\(entries.count)", disclosed: disclosed, at: now())
        let kept = query.filter { $0.name != "_page" }
        let base = "\(settings.fhirBaseURL)/\(type)"
        let selfURL = base + (query.isEmpty ? "" : "?" + QueryString.build(query))
        let nextURL = next.map { base + "?" + QueryString.build(kept + [("_page", $0)]) }
        return json(mapper.searchset(entries: entries, selfURL: selfURL, nextURL: nextURL, total: total))
    }

    /// The grant of the request's bearer token, if its scopes allow `interaction` on `type`.
    /// - Throws: ``FHIRError`` 401 without a valid token, 403 when the scopes do not allow it (logged).
    func authorize(_ request: Request, type: String, interaction: FHIRInteraction, target: String?) async throws -> TokenGrant {
        let header = request.headers[.authorization]
        guard let grant = try await authorizer.grant(authorization: header, now: now()) else {
            throw FHIRError(status: 401, code: "login", header == nil
                ? "a bearer token is required: POST a SMART Backend Services request to \(settings.tokenURL)"
                : "the bearer token is unknown or expired")
        }
        guard grant.scopes.contains(where: { $0.allows(interaction, on: type) }) else {
            try await store.database.recordAccess(
                actor: "client:\(grant.clientID)", action: "fhir.forbidden", targetType: type, targetID: target,
                detail: "\(interaction.rawValue) needs system/\(type).\(interaction == .read ? "r" : "s")", at: now())
            throw FHIRError(status: 403, code: "forbidden",
                            "the token's scopes do not allow \(interaction.rawValue) on \(type) (needs system/\(type).\(interaction == .read ? "r" : "s") or .read)")
        }
        return grant
    }

    // MARK: Responses

    func respond(_ body: () async throws -> Response) async -> Response {
        do {
            return try await body()
        } catch let error as FHIRError {
            return outcome(error)
        } catch {
            logger.error("FHIR request failed", metadata: ["error": "\(error)"])
            return outcome(FHIRError(status: 500, code: "exception", "the request could not be answered; see the server log"))
        }
    }

    func outcome(_ error: FHIRError) -> Response {
        var response = json(error.operationOutcome, status: .init(code: error.status))
        if error.status == 401 {
            response.headers[.wwwAuthenticate] = error.diagnostics.hasPrefix("a bearer token is required")
                ? "Bearer realm=\"vitalsd\"" : "Bearer realm=\"vitalsd\", error=\"invalid_token\""
        } else if error.status == 403 {
            response.headers[.wwwAuthenticate] = "Bearer realm=\"vitalsd\", error=\"insufficient_scope\""
        }
        return response
    }

    func oauth(_ result: Result<FHIRJSON, OAuthError>) -> Response {
        var response: Response
        switch result {
        case .success(let body): response = json(body, contentType: "application/json")
        case .failure(let error): response = json(error.body, status: .init(code: error.status), contentType: "application/json")
        }
        // RFC 6749 §5.1: token responses are never cached.
        response.headers[.cacheControl] = "no-store"
        response.headers[.init("Pragma")!] = "no-cache"
        return response
    }

    func json(_ value: FHIRJSON, status: HTTPResponse.Status = .ok, contentType: String = FHIRAPI.contentType) -> Response {
        let bytes = value.serialized()
        return Response(
            status: status, headers: [.contentType: contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T?) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
