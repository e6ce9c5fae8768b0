import ArgumentParser
import Foundation
import VitalsDomain
import VitalsStore

extension PatientCommand {
    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pause a patient's monitoring (hospital stay, travel): readings are stored, no alert task is raised.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Last paused day, YYYY-MM-DD, in the patient's time zone.") var until: LocalDate
        @Option(help: "Why, e.g. \"hospital stay\".") var reason: String
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let p = try db.pauseMonitoring(patientID: patient, through: until, reason: reason, actor: actor(by))
            print("patient \(patient): monitoring paused through \(p.endDate) (pause \(p.id))")
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a patient's monitoring pause now.")
        @OptionGroup var options: GlobalOptions
        @Option var patient: String
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let p = try db.resumeMonitoring(patientID: patient, actor: actor(by))
            print("patient \(patient): monitoring resumed (pause \(p.id) ended)")
        }
    }
}
