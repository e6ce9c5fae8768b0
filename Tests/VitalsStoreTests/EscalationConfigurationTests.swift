import Foundation
import Testing
import VitalsConfig
import VitalsDomain

@Suite("escalation backup configuration")
struct EscalationConfigurationTests {
    func problems(_ yaml: String, _ env: [String: String] = [:]) -> [String] {
        do {
            _ = try VitalsConfiguration.parse(yaml: yaml, environment: env)
            return []
        } catch let error as ConfigurationErrors {
            return error.errors.map(\.key)
        } catch {
            return ["?"]
        }
    }

    @Test("a backup user or role is read; both, or an unknown role, are refused naming the key; the environment overrides")
    func backup() throws {
        #expect(try VitalsConfiguration.parse(yaml: "alerts:\n  escalation_backup_user: Dr.Lee\n").alerts.escalationBackup == .user("dr.lee"))
        #expect(try VitalsConfiguration.parse(yaml: "alerts:\n  escalation_backup_role: clinician\n").alerts.escalationBackup == .role("clinician"))
        #expect(try VitalsConfiguration.parse(yaml: "alerts:\n  escalation_after_minutes: 30\n").alerts.escalationBackup == nil)
        #expect(problems("alerts:\n  escalation_backup_user: dr.lee\n  escalation_backup_role: clinician\n") == ["alerts.escalation_backup_role"])
        #expect(problems("alerts:\n  escalation_backup_role: nurse\n") == ["alerts.escalation_backup_role"])
        let env = try VitalsConfiguration.parse(yaml: "", environment: ["VITALSD_ALERTS_ESCALATION_BACKUP_ROLE": "admin"])
        #expect(env.alerts.escalationBackup == .role("admin"))
        #expect(EscalationBackup.role("admin").target == "role:admin")
    }
}
