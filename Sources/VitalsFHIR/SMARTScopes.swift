/// A FHIR interaction a scope may allow.
public enum FHIRInteraction: String, Sendable, Hashable, CaseIterable {
    case read
    case search
}

/// One SMART system scope, `system/<Resource|*>.<permissions>` (hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
/// SMART v2 permissions are an ordered subset of `cruds` (`rs`: read and search); SMART v1 `read`
/// means read and search, `*` everything.
public struct SMARTScope: Sendable, Hashable, CustomStringConvertible {
    /// A resource type, or `*` for all.
    public var resourceType: String
    /// The interactions granted, of those vitalsd serves.
    public var interactions: Set<FHIRInteraction>
    /// The scope as written.
    public var text: String

    /// Parses one scope.
    /// - Returns: nil for anything but a `system/` scope with v1 or v2 permissions (`patient/`,
    ///   `user/`, `launch`, `openid`, and v2 scopes with query parameters are not served).
    public init?(_ text: String) {
        guard text.hasPrefix("system/"), !text.contains("?") else { return nil }
        let body = text.dropFirst("system/".count)
        guard let dot = body.lastIndex(of: ".") else { return nil }
        let type = String(body[..<dot])
        let permissions = String(body[body.index(after: dot)...])
        guard type == "*" || (type.first?.isUppercase == true && type.allSatisfy { $0.isLetter && $0.isASCII }) else { return nil }
        var granted: Set<FHIRInteraction> = []
        switch permissions {
        case "read", "*": granted = [.read, .search]
        case "write": granted = []
        default:
            // v2: letters of "cruds", each at most once, in that order.
            let order = Array("cruds")
            var last = -1
            for c in permissions {
                guard let i = order.firstIndex(of: c), i > last else { return nil }
                last = i
                if c == "r" { granted.insert(.read) }
                if c == "s" { granted.insert(.search) }
            }
            guard !permissions.isEmpty else { return nil }
        }
        resourceType = type
        interactions = granted
        self.text = text
    }

    public var description: String { text }

    /// The scope as granted: as written when it asks for reading only (`system/Observation.rs`,
    /// `system/Patient.read`), else narrowed to the v2 letters of what vitalsd grants
    /// (`system/Observation.cruds` → `system/Observation.rs`), so that a token never advertises
    /// create, update or delete rights that do not exist here.
    public var grantedText: String {
        let permissions = text[text.index(after: text.lastIndex(of: ".")!)...]
        if permissions == "read" || permissions.allSatisfy({ $0 == "r" || $0 == "s" }) { return text }
        return "system/\(resourceType)." + (interactions.contains(.read) ? "r" : "") + (interactions.contains(.search) ? "s" : "")
    }

    /// Whether this scope allows `interaction` on `type`.
    public func allows(_ interaction: FHIRInteraction, on type: String) -> Bool {
        (resourceType == "*" || resourceType == type) && interactions.contains(interaction)
    }

    /// Whether everything this scope allows, on the resource types vitalsd serves, is also allowed by `grants`.
    public func isCovered(by grants: [SMARTScope], servedTypes: [String]) -> Bool {
        let types = resourceType == "*" ? servedTypes : [resourceType]
        return types.allSatisfy { type in
            interactions.allSatisfy { i in grants.contains { $0.allows(i, on: type) } }
        }
    }
}

/// The scopes of a token request checked against a client's registration.
public enum SMARTScopeGrant {
    /// The resource types the API serves, for scopes on `*`.
    public static let servedTypes = ["Observation", "Patient", "Device", "Task"]

    /// The scopes to grant for a request: every requested scope, when each is a `system/` scope of a
    /// served resource type within the client's registered scopes, narrowed to reading
    /// (``SMARTScope/grantedText``): SMART lets a server grant less than was asked, and says what it
    /// granted in the token response's `scope`.
    ///
    /// SMART Backend Services: the server "SHALL mediate the request to assure that the scope requested
    /// is within the scope pre-authorized to the client", and SHOULD fail a request for data the client
    /// may not see or the server does not serve (hl7.org/fhir/smart-app-launch/backend-services.html).
    /// - Returns: the granted scopes, or the reason the request is refused (an OAuth `invalid_scope`).
    public static func grant(requested: String, registered: [String]) -> Result<[SMARTScope], ScopeRefusal> {
        let allowed = registered.compactMap(SMARTScope.init)
        let names = requested.split(separator: " ").map(String.init).filter { !$0.isEmpty }
        guard !names.isEmpty else { return .failure(ScopeRefusal(description: "scope is required (e.g. system/Observation.rs)")) }
        var granted: [SMARTScope] = []
        for name in names {
            guard let scope = SMARTScope(name) else {
                return .failure(ScopeRefusal(description: "scope '\(name)' is not a system/ scope with read (v1) or cruds (v2) permissions"))
            }
            guard scope.resourceType == "*" || servedTypes.contains(scope.resourceType) else {
                return .failure(ScopeRefusal(description: "scope '\(name)': \(scope.resourceType) is not served here"))
            }
            guard !scope.interactions.isEmpty else {
                return .failure(ScopeRefusal(description: "scope '\(name)': this server only reads; no write access exists"))
            }
            guard scope.isCovered(by: allowed, servedTypes: servedTypes) else {
                return .failure(ScopeRefusal(description: "scope '\(name)' is beyond what this client was registered for"))
            }
            var narrowed = scope
            narrowed.text = scope.grantedText
            granted.append(narrowed)
        }
        return .success(granted)
    }

    /// A scope request refused, with the reason for `error_description`.
    public struct ScopeRefusal: Error, Sendable, Hashable, CustomStringConvertible {
        public var description: String
    }
}
