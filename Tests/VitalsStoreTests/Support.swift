import Foundation
import VitalsDomain
import VitalsStore

/// A fresh directory under the system temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "vitalsd-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A real database file with one diabetes patient (`p1`, glucometer `g1`) and one hypertension
/// patient (`p2`, cuff `c1`).
func enrolledDatabase(_ dir: TemporaryDirectory) throws -> AppDatabase {
    let db = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
    try db.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes]), actor: "test")
    try db.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p1"), actor: "test")
    try db.upsertPatient(Patient(id: "p2", timezone: "Europe/Berlin", programs: [.hypertension]), actor: "test")
    try db.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p2"), actor: "test")
    return db
}

let pipeline = IngestPipeline(thresholds: .clinicalDefaults)

/// A message on `devices/<device>/readings` received now.
func message(_ device: String, _ json: String, receivedAt: Date = Date()) -> IncomingMessage {
    IncomingMessage(topic: "devices/\(device)/readings", deviceID: device, payload: Array(json.utf8), receivedAt: receivedAt)
}

/// A flat glucose reading measured `minutesAgo` minutes ago.
func glucose(_ value: Double, minutesAgo: Double, device: String = "g1") -> IncomingMessage {
    let ms = Int64((Date().timeIntervalSince1970 - minutesAgo * 60) * 1000)
    return message(device, #"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":\#(ms)}"#)
}
