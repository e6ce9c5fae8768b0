/// The CapabilityStatement and SMART discovery document: exactly what the API implements.
public enum FHIRCapabilities {
    /// One search parameter as the CapabilityStatement lists it.
    struct Parameter {
        var name: String
        var type: String
        var documentation: String
    }

    static let resources: [(type: String, parameters: [Parameter])] = [
        ("Observation", [
            Parameter(name: "patient", type: "reference", documentation: "Required (or subject or _id). Patient id or Patient/id; comma-separated alternatives."),
            Parameter(name: "subject", type: "reference", documentation: "Same as patient."),
            Parameter(name: "code", type: "token", documentation: "LOINC code, with or without http://loinc.org|. 85354-9 is the blood-pressure panel."),
            Parameter(name: "category", type: "token", documentation: "vital-signs or laboratory (glucose)."),
            Parameter(name: "date", type: "date", documentation: "effectiveDateTime; prefixes eq, ne, gt, ge, lt, le; repeatable (AND)."),
            Parameter(name: "_id", type: "token", documentation: "Logical id."),
        ]),
        ("Patient", [
            Parameter(name: "identifier", type: "token", documentation: "system|value or value."),
            Parameter(name: "_id", type: "token", documentation: "Logical id."),
        ]),
        ("Device", [
            Parameter(name: "identifier", type: "token", documentation: "system|value or value."),
            Parameter(name: "patient", type: "reference", documentation: "Patient id or Patient/id."),
            Parameter(name: "_id", type: "token", documentation: "Logical id."),
        ]),
        ("Task", [
            Parameter(name: "patient", type: "reference", documentation: "Patient id or Patient/id (Task.for)."),
            Parameter(name: "subject", type: "reference", documentation: "Same as patient."),
            Parameter(name: "status", type: "token", documentation: "requested, accepted or completed."),
            Parameter(name: "_lastUpdated", type: "date", documentation: "meta.lastUpdated; prefixes eq, ne, gt, ge, lt, le; repeatable."),
            Parameter(name: "_id", type: "token", documentation: "Logical id."),
        ]),
    ]

    /// The CapabilityStatement served at `GET [base]/metadata` (hl7.org/fhir/R4/capabilitystatement.html):
    /// JSON only, read and search-type on Observation, Patient, Device and Task, SMART on FHIR
    /// security with the token endpoint, and the common search parameters `_count`, `_total`, `_format`.
    /// - Parameters:
    ///   - baseURL: the FHIR base URL.
    ///   - tokenURL: the token endpoint's URL.
    ///   - date: the statement's date (FHIR dateTime).
    ///   - version: the software version.
    public static func capabilityStatement(baseURL: String, tokenURL: String, date: String, version: String) -> FHIRJSON {
        var rest: FHIRObject = ["mode": "server"]
        rest["security"] = [
            "extension": [[
                "url": .string(FHIRSystems.oauthURIs),
                "extension": [["url": "token", "valueUri": .string(tokenURL)]],
            ]],
            "service": [[
                "coding": [["system": .string(FHIRSystems.restfulSecurityService), "code": "SMART-on-FHIR"]],
                "text": "SMART Backend Services: client_credentials with a private_key_jwt (RS384 or ES384) assertion",
            ]],
            "description": "Every request needs a bearer token from the token endpoint, with system/ scopes for the resource type (read: r, search: s; v1 .read accepted).",
        ]
        let common: [FHIRJSON] = [
            ["name": "_count", "type": "number", "documentation": "Entries per page (default 100, at most the server's limit)."],
            ["name": "_total", "type": "token", "documentation": "none (default) or accurate (estimate is read as accurate)."],
            ["name": "_format", "type": "token", "documentation": "json only."],
        ]
        rest["resource"] = .array(resources.map { r in
            var o: FHIRObject = ["type": .string(r.type)]
            o["interaction"] = [["code": "read"], ["code": "search-type"]]
            o["searchParam"] = .array(r.parameters.map {
                ["name": .string($0.name), "type": .string($0.type), "documentation": .string($0.documentation)]
            } + common)
            return .object(o)
        })
        var o: FHIRObject = ["resourceType": "CapabilityStatement"]
        o["status"] = "active"
        o["date"] = .string(date)
        o["publisher"] = "vitalsd"
        o["kind"] = "instance"
        o["software"] = ["name": "vitalsd", "version": .string(version)]
        o["implementation"] = ["description": "vitalsd remote patient monitoring FHIR R4 read API", "url": .string(baseURL)]
        o["fhirVersion"] = "4.0.1"
        o["format"] = ["json"]
        o["rest"] = [.object(rest)]
        return .object(o)
    }

    /// `.well-known/smart-configuration` (hl7.org/fhir/smart-app-launch/conformance.html): the token
    /// endpoint, `client_credentials` with `private_key_jwt` signed RS384 or ES384, system scopes.
    public static func smartConfiguration(tokenURL: String) -> FHIRJSON {
        [
            "token_endpoint": .string(tokenURL),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": .array((["*"] + SMARTScopeGrant.servedTypes).flatMap { ["system/\($0).rs", "system/\($0).read"] }.map { .string($0) }),
            "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        ]
    }
}
