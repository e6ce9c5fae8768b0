import ArgumentParser
import Foundation
import VitalsConfig
import VitalsDaemon
import VitalsFHIRServer

struct ClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client", abstract: "SMART Backend Services clients of the FHIR API (EHRs).",
        subcommands: [Add.self, List.self, Disable.self, PushJWKS.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register a client; prints its client id.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Who the client is, e.g. EHR.") var name: String
        @Option(help: ArgumentHelp("The client's JWK Set (public keys, each with kty and kid).", valueName: "FILE")) var jwks: String?
        @Option(help: ArgumentHelp("Where the client publishes its JWK Set (https).", valueName: "URL")) var jwksURL: String?
        @Option(help: "Pre-authorised scopes, space-separated: system/Observation.rs system/Patient.rs … (v1 .read accepted).")
        var scope: String
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            var set: String?
            if let jwks {
                guard let data = FileManager.default.contents(atPath: jwks) else { throw ValidationError("cannot read \(jwks)") }
                set = String(decoding: data, as: UTF8.self)
            }
            let client = try FHIRStore(database: db).addClient(
                name: name, jwks: set, jwksURL: jwksURL, scopes: scope.split(separator: " ").map(String.init), actor: actor(by))
            print(client.id)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered clients.")
        @OptionGroup var options: GlobalOptions
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            var clients = try FHIRStore(database: db).clients()
            for i in clients.indices where clients[i].jwks != nil { clients[i].jwks = "(inline)" }
            try emit(format, json: clients, header: ["client_id", "name", "enabled", "keys", "scopes", "created_at", "created_by"],
                     rows: clients.map { [$0.id, $0.name, $0.enabled ? "yes" : "no", $0.jwksURL ?? "inline", $0.scopes.joined(separator: " "),
                                          iso($0.createdAt), $0.createdBy] })
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a client and revoke its tokens.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The client id.") var clientID: String
        @Option(help: "Who makes the change, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            try FHIRStore(database: db).disableClient(id: clientID, actor: actor(by))
            print("client \(clientID) disabled; its tokens are revoked")
        }
    }

    struct PushJWKS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "push-jwks",
            abstract: "Print the public JWK Set of delivery.fhir.private_key_file, to register vitalsd with the EHR.")
        @OptionGroup var options: GlobalOptions

        func run() throws {
            let config = try options.load()
            guard let push = config.delivery.fhir, let pem = try config.fhirPushKey() else {
                throw ValidationError("delivery.fhir is not configured")
            }
            print(try SMARTClientCredentials.publicJWKS(pem: pem, algorithm: push.algorithm, keyID: push.keyID))
        }
    }
}
