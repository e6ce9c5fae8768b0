import VitalsDomain

/// The settings the mapping needs: where the API lives and whose identifiers are whose.
public struct FHIRMappingSettings: Sendable, Hashable {
    /// The FHIR base URL clients use, without a trailing slash, e.g. `https://rpm.example.org/fhir/r4`.
    public var baseURL: String
    /// `Patient.identifier.system` of the patient id (the id the program or EHR gave the patient).
    public var patientIdentifierSystem: String
    /// `Device.identifier.system` of the device id.
    public var deviceIdentifierSystem: String
    /// `Observation.identifier.system` of ``ObservationSource/identifierValue``.
    public var observationIdentifierSystem: String
    /// `Task.identifier.system` of the task id.
    public var taskIdentifierSystem: String
    /// A reading received more than this many milliseconds after it was measured is tagged `late`
    /// (`alerts.late_after_hours`, default 24 h).
    public var lateAfterMilliseconds: Int64

    public init(
        baseURL: String, patientIdentifierSystem: String = "urn:vitalsd:patient",
        deviceIdentifierSystem: String = "urn:vitalsd:device", observationIdentifierSystem: String = "urn:vitalsd:observation",
        taskIdentifierSystem: String = "urn:vitalsd:task", lateAfterMilliseconds: Int64 = 86_400_000
    ) {
        self.baseURL = baseURL
        self.patientIdentifierSystem = patientIdentifierSystem
        self.deviceIdentifierSystem = deviceIdentifierSystem
        self.observationIdentifierSystem = observationIdentifierSystem
        self.taskIdentifierSystem = taskIdentifierSystem
        self.lateAfterMilliseconds = lateAfterMilliseconds
    }
}

/// How an Observation names its patient and device.
public enum ReferenceStyle: Sendable {
    /// `Patient/<id>`, `Device/<id>`: resources of this server (the read API).
    case local
    /// For another server (the push channel): the patient by a conditional reference on its
    /// identifier, `Patient?identifier=<system>|<id>`, which a transaction resolves to the chart's
    /// patient (hl7.org/fhir/R4/http.html#trules); the device by its identifier alone.
    case byIdentifier
}

/// Pure mapping from stored rows to FHIR R4 JSON resources.
public struct FHIRMapper: Sendable {
    public var settings: FHIRMappingSettings

    public init(settings: FHIRMappingSettings) { self.settings = settings }

    // MARK: Observation

    /// The Observation of a reading or a blood-pressure pair (hl7.org/fhir/R4/observation-vitalsigns.html).
    ///
    /// `status` final; `category` vital-signs (glucose: laboratory); LOINC `code`; `valueQuantity`
    /// (or, for the panel, two `component`s) in the canonical UCUM unit with system
    /// `http://unitsofmeasure.org`; `effectiveDateTime` at the device's recorded UTC offset, or in
    /// UTC when none was recorded; `issued` = received; `subject`; `device`; a business identifier
    /// from the reading's natural key. `meta.tag` marks late readings (received more than
    /// ``FHIRMappingSettings/lateAfterMilliseconds`` after measurement), manual readings, and the
    /// device's flags, in ``FHIRSystems/readingTag``.
    /// - Parameter references: `.local` for the API, `.byIdentifier` for the push channel (no `id` then).
    public func observation(_ source: ObservationSource, references: ReferenceStyle = .local) -> FHIRJSON {
        let r = source.reading
        var o = FHIRObject()
        o["resourceType"] = "Observation"
        if references == .local { o["id"] = .string(source.logicalID) }
        var meta = FHIRObject()
        let profile = source.diastolic == nil ? ObservationCodes.profile(r.type) : "http://hl7.org/fhir/StructureDefinition/bp"
        if let profile { meta["profile"] = [.string(profile)] }
        let tags = readingTags(source)
        if !tags.isEmpty { meta["tag"] = .array(tags) }
        if !meta.members.isEmpty { o["meta"] = .object(meta) }
        o["identifier"] = [["system": .string(settings.observationIdentifierSystem), "value": .string(source.identifierValue)]]
        o["status"] = "final"
        let category = source.diastolic == nil ? ObservationCodes.category(r.type) : .vitalSigns
        o["category"] = [[
            "coding": [["system": .string(FHIRSystems.observationCategory), "code": .string(category.rawValue),
                        "display": .string(category.display)]],
        ]]
        if source.diastolic != nil {
            o["code"] = [
                "coding": [["system": .string(FHIRSystems.loinc), "code": .string(ObservationCodes.bloodPressurePanel),
                            "display": "Blood pressure panel with all children optional"]],
                "text": "Blood pressure",
            ]
        } else {
            o["code"] = code(r.type)
        }
        switch references {
        case .local:
            o["subject"] = ["reference": .string("Patient/\(r.patientID)")]
        case .byIdentifier:
            o["subject"] = [
                "reference": .string("Patient?identifier=\(settings.patientIdentifierSystem)|\(r.patientID)"),
            ]
        }
        o["effectiveDateTime"] = .string(FHIRTime.format(epochMilliseconds: r.measuredAt, offsetMinutes: r.localOffsetMinutes))
        o["issued"] = .string(FHIRTime.instant(epochMilliseconds: max(r.receivedAt, source.diastolic?.receivedAt ?? r.receivedAt)))
        if let diastolic = source.diastolic {
            o["component"] = [
                ["code": code(.systolicBP), "valueQuantity": quantity(r.canonicalValue, .systolicBP)],
                ["code": code(.diastolicBP), "valueQuantity": quantity(diastolic.canonicalValue, .diastolicBP)],
            ]
        } else {
            o["valueQuantity"] = quantity(r.canonicalValue, r.type)
        }
        switch references {
        case .local:
            o["device"] = ["reference": .string("Device/\(r.deviceID)")]
        case .byIdentifier:
            o["device"] = ["identifier": ["system": .string(settings.deviceIdentifierSystem), "value": .string(r.deviceID)]]
        }
        return .object(o)
    }

    /// The `meta.tag` codings of an Observation: `late`, `manual`, then the reading flags.
    public func readingTags(_ source: ObservationSource) -> [FHIRJSON] {
        let readings = [source.reading] + (source.diastolic.map { [$0] } ?? [])
        var tags: [FHIRJSON] = []
        func tag(_ code: String, _ display: String) {
            tags.append(["system": .string(FHIRSystems.readingTag), "code": .string(code), "display": .string(display)])
        }
        if readings.contains(where: { $0.receivedAt - $0.measuredAt > settings.lateAfterMilliseconds }) {
            tag("late", "Received more than \(settings.lateAfterMilliseconds / 3_600_000) h after it was measured")
        }
        if readings.contains(where: { $0.source == .manual }) { tag("manual", "Entered by hand in vitalsd") }
        let flags = readings.reduce(ObservationFlags()) { $0.union($1.flags) }
        for (flag, name) in ObservationFlags.names where flags.contains(flag) {
            tag(name, Self.flagDisplay[name] ?? name)
        }
        return tags
    }

    static let flagDisplay: [String: String] = [
        "irregular_heartbeat": "The device detected an irregular heartbeat",
        "from_device_memory": "Stored on the device and sent later",
        "estimated_time": "Measurement time estimated",
        "local_time_assumed": "Device sent a local time without offset",
        "manual_entry": "Entered by hand on the device or in the vendor's app",
        "unregistered_unit": "Unit accepted by alias",
    ]

    func code(_ type: VitalType) -> FHIRJSON {
        var codings: [FHIRJSON] = [
            ["system": .string(FHIRSystems.loinc), "code": .string(type.loinc), "display": .string(ObservationCodes.display(type))],
        ]
        if type == .spo2 {
            codings.append([
                "system": .string(FHIRSystems.loinc), "code": .string(ObservationCodes.oxygenSaturationArterial),
                "display": "Oxygen saturation in Arterial blood",
            ])
        }
        return ["coding": .array(codings), "text": .string(type.displayName)]
    }

    func quantity(_ value: Double, _ type: VitalType) -> FHIRJSON {
        [
            "value": .decimal(value), "unit": .string(ObservationCodes.unitDisplay(type)),
            "system": .string(FHIRSystems.ucum), "code": .string(type.canonicalUnit.rawValue),
        ]
    }

    // MARK: Patient, Device

    /// The Patient: id, identifier (the enrolled id under ``FHIRMappingSettings/patientIdentifierSystem``),
    /// `active`, and name (as `HumanName.text`), phone and birth date when enrolled.
    public func patient(_ p: StoredPatient) -> FHIRJSON {
        var o = FHIRObject()
        o["resourceType"] = "Patient"
        o["id"] = .string(p.id)
        o["identifier"] = [["system": .string(settings.patientIdentifierSystem), "value": .string(p.id)]]
        o["active"] = true
        if let name = p.name { o["name"] = [["text": .string(name)]] }
        if let phone = p.phone { o["telecom"] = [["system": "phone", "value": .string(phone)]] }
        if let birthDate = p.birthDate { o["birthDate"] = .string(birthDate) }
        return .object(o)
    }

    /// The Device: id, identifier (the id it publishes under), `status` active, `type` (the enrolled
    /// kind in ``FHIRSystems/deviceKind``) and the patient it is bound to.
    public func device(_ d: StoredDevice) -> FHIRJSON {
        var o = FHIRObject()
        o["resourceType"] = "Device"
        o["id"] = .string(d.id)
        o["identifier"] = [["system": .string(settings.deviceIdentifierSystem), "value": .string(d.id)]]
        o["status"] = "active"
        o["type"] = [
            "coding": [["system": .string(FHIRSystems.deviceKind), "code": .string(d.kind), "display": .string(Self.kindDisplay[d.kind] ?? d.kind)]],
            "text": .string(Self.kindDisplay[d.kind] ?? d.kind),
        ]
        o["patient"] = ["reference": .string("Patient/\(d.patientID)")]
        return .object(o)
    }

    static let kindDisplay: [String: String] = [
        "bp_cuff": "Blood pressure cuff", "glucometer": "Blood glucose meter", "cgm": "Continuous glucose monitor",
        "scale": "Weighing scale", "pulse_oximeter": "Pulse oximeter", "thermometer": "Thermometer", "other": "Other device",
    ]

    // MARK: Task

    /// The Task of a care task (hl7.org/fhir/R4/task.html): `status` requested/accepted/completed,
    /// `intent` order, `priority` stat/urgent/routine, `code` (what raised it), `description` (the
    /// reason), `for` the patient, `focus` the Observation whose breach opened it, `input` the latest
    /// breaching Observation, `owner` when known, `reasonCode` the condition, `businessStatus`
    /// (escalation level and confirmation state, also as extensions), `note` (the care managers' notes,
    /// oldest first, each with its author and time), `authoredOn`,
    /// `lastModified` and `executionPeriod`.
    public func task(_ t: StoredTask) -> FHIRJSON {
        var o = FHIRObject()
        o["resourceType"] = "Task"
        o["id"] = .string(String(t.id))
        o["meta"] = ["lastUpdated": .string(FHIRTime.instant(epochMilliseconds: t.updatedAt))]
        var extensions: [FHIRJSON] = [
            ["url": .string(FHIRSystems.escalationLevelExtension), "valueInteger": .integer(Int64(t.escalationLevel))],
        ]
        if let confirmation = t.confirmation {
            extensions.append(["url": .string(FHIRSystems.confirmationExtension), "valueCode": .string(confirmation)])
        }
        extensions.append(["url": .string(FHIRSystems.dataStaleExtension), "valueBoolean": .bool(t.dataStale)])
        extensions.append(["url": .string(FHIRSystems.occurrencesExtension), "valueInteger": .integer(Int64(t.occurrences))])
        o["extension"] = .array(extensions)
        o["identifier"] = [["system": .string(settings.taskIdentifierSystem), "value": .string(String(t.id))]]
        o["status"] = .string(TaskVocabulary.status(t.status))
        var business: [String] = [t.escalationLevel == 0 ? "not escalated" : "escalated \(t.escalationLevel) time\(t.escalationLevel == 1 ? "" : "s")"]
        if let confirmation = t.confirmation { business.append("confirmation \(confirmation.spaced)") }
        if t.dataStale { business.append("data stale") }
        o["businessStatus"] = [
            "coding": [["system": .string(FHIRSystems.taskBusinessStatus),
                        "code": .string(t.escalationLevel == 0 ? "not-escalated" : "escalated")]],
            "text": .string(business.joined(separator: "; ")),
        ]
        o["intent"] = "order"
        o["priority"] = .string(TaskVocabulary.priority(t.priority))
        o["code"] = ["coding": [["system": .string(FHIRSystems.taskKind), "code": .string(t.kind)]], "text": .string(t.kind.spaced)]
        o["description"] = .string(t.reason)
        if let focus = t.focusObservationID { o["focus"] = ["reference": .string("Observation/\(focus)")] }
        o["for"] = ["reference": .string("Patient/\(t.patientID)")]
        var period: FHIRObject = ["start": .string(FHIRTime.instant(epochMilliseconds: t.openedAt))]
        period["end"] = t.resolvedAt.map { .string(FHIRTime.instant(epochMilliseconds: $0)) }
        o["executionPeriod"] = .object(period)
        o["authoredOn"] = .string(FHIRTime.instant(epochMilliseconds: t.openedAt))
        o["lastModified"] = .string(FHIRTime.instant(epochMilliseconds: t.updatedAt))
        if let owner = t.owner { o["owner"] = ["display": .string(owner)] }
        o["reasonCode"] = [
            "coding": [["system": .string(FHIRSystems.taskCondition), "code": .string("\(t.condition)-\(t.direction)")]],
            "text": .string("\(t.condition.spaced) \(t.direction)"),
        ]
        if !t.notes.isEmpty {
            o["note"] = .array(t.notes.map { n in
                ["authorString": .string(n.author), "time": .string(FHIRTime.instant(epochMilliseconds: n.at)), "text": .string(n.text)]
            })
        }
        if let latest = t.latestObservationID, latest != t.focusObservationID {
            o["input"] = [[
                "type": ["text": "Latest breaching Observation"],
                "valueReference": ["reference": .string("Observation/\(latest)")],
            ]]
        }
        return .object(o)
    }

    // MARK: Bundles and outcomes

    /// A `searchset` Bundle (hl7.org/fhir/R4/bundle.html): `self` and, when more matches follow,
    /// `next` links; each entry with its absolute `fullUrl` and `search.mode` match.
    /// - Parameters:
    ///   - entries: (resource type, logical id, resource).
    ///   - total: the number of matches over all pages, when counted.
    public func searchset(
        entries: [(type: String, id: String, resource: FHIRJSON)], selfURL: String, nextURL: String?, total: Int?
    ) -> FHIRJSON {
        var o = FHIRObject()
        o["resourceType"] = "Bundle"
        o["type"] = "searchset"
        o["total"] = total.map { .integer(Int64($0)) }
        var links: [FHIRJSON] = [["relation": "self", "url": .string(selfURL)]]
        if let nextURL { links.append(["relation": "next", "url": .string(nextURL)]) }
        o["link"] = .array(links)
        if !entries.isEmpty {
            o["entry"] = .array(entries.map { e in
                ["fullUrl": .string("\(settings.baseURL)/\(e.type)/\(e.id)"), "resource": e.resource, "search": ["mode": "match"]]
            })
        }
        return .object(o)
    }

    /// A `transaction` Bundle that creates each Observation unless one with its identifier exists
    /// (`ifNoneExist`, hl7.org/fhir/R4/http.html#ccreate), with references by identifier.
    /// - Parameter fullURLs: one `urn:uuid:` per source, in order.
    public func transaction(_ sources: [ObservationSource], fullURLs: [String]) -> FHIRJSON {
        var entries: [FHIRJSON] = []
        for (source, fullURL) in zip(sources, fullURLs) {
            entries.append([
                "fullUrl": .string(fullURL),
                "resource": observation(source, references: .byIdentifier),
                "request": [
                    "method": "POST", "url": "Observation",
                    "ifNoneExist": .string("identifier=\(settings.observationIdentifierSystem)|\(source.identifierValue)"),
                ],
            ])
        }
        return ["resourceType": "Bundle", "type": "transaction", "entry": .array(entries)]
    }
}

/// An error as a FHIR OperationOutcome with its HTTP status (hl7.org/fhir/R4/operationoutcome.html,
/// issue types from hl7.org/fhir/R4/valueset-issue-type.html).
public struct FHIRError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The HTTP status to answer with.
    public var status: Int
    /// The OperationOutcome issue type: `invalid`, `not-supported`, `not-found`, `login`, `forbidden`, …
    public var code: String
    /// What went wrong, for the client's developer; names parameters and ids, never stored values.
    public var diagnostics: String

    public init(status: Int, code: String, _ diagnostics: String) {
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
    }

    public var description: String { "\(status) \(code): \(diagnostics)" }

    public static func invalid(_ message: String) -> FHIRError { FHIRError(status: 400, code: "invalid", message) }
    public static func notSupported(_ message: String) -> FHIRError { FHIRError(status: 400, code: "not-supported", message) }
    public static func notFound(_ message: String) -> FHIRError { FHIRError(status: 404, code: "not-found", message) }

    /// The OperationOutcome resource.
    public var operationOutcome: FHIRJSON {
        ["resourceType": "OperationOutcome",
         "issue": [["severity": "error", "code": .string(code), "diagnostics": .string(diagnostics)]]]
    }
}

extension String {
    /// `blood_pressure` → `blood pressure`.
    var spaced: String { String(map { $0 == "_" ? " " : $0 }) }
}
