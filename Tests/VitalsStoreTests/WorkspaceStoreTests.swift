import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsStore

/// A bcrypt-shaped hash for tests of storage alone (the workspace module makes real ones).
let fakeHash = "$2b$12$" + String(repeating: "a", count: 53)

/// A BP message of the hypertension patient's cuff `c1`, measured `minutesAgo` minutes ago.
func cuff(_ sys: Double, _ dia: Double, minutesAgo: Double = 1, device: String = "c1") -> IncomingMessage {
    let ms = Int64((Date().timeIntervalSince1970 - minutesAgo * 60) * 1000)
    return message(device, """
        {"measured_at":\(ms),"readings":[{"type":"systolic_bp","value":\(sys),"unit":"mmHg"},
        {"type":"diastolic_bp","value":\(dia),"unit":"mmHg"}]}
        """)
}

@Suite("users, sessions and sign-in lockout")
struct UserStoreTests {
    @Test("user names are normalized and unique; a bad name or hash is refused")
    func users() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ana = try db.addUser(username: " Ana.Ruiz ", displayName: "Ana Ruiz, RN", role: .careManager, passwordHash: fakeHash, actor: "admin")
        #expect(ana.username == "ana.ruiz")
        #expect(throws: UserError.self) { try db.addUser(username: "ANA.RUIZ", displayName: "x", role: .admin, passwordHash: fakeHash, actor: "a") }
        // A display name with an escape sequence or a newline would forge `user list` output.
        // Nor a text-direction override, a zero-width space or a line separator, which make a page show
        // another name than the one stored.
        for name in ["Eve\u{1B}[31mRED", "Eve\nfake line", "Eve\u{7}", "RTL\u{202E}live", "Ev\u{200B}e", "Eve\u{2028}Ng"] {
            #expect(throws: UserError.self) { try db.addUser(username: "eve", displayName: name, role: .careManager, passwordHash: fakeHash, actor: "a") }
            #expect(throws: EnrollmentError.self) { try PatientDetails.name(name) }
        }
        #expect(try PatientDetails.name(" Zoë Ng-O'Brien ") == "Zoë Ng-O'Brien")
        #expect(throws: UserError.self) { try db.addUser(username: "ana ruiz", displayName: "x", role: .admin, passwordHash: fakeHash, actor: "a") }
        // The schema refuses anything that is not a bcrypt hash (a plain password, say).
        #expect(throws: DatabaseError.self) {
            try db.addUser(username: "bo", displayName: "Bo", role: .clinician, passwordHash: "hunter2hunter2", actor: "a")
        }
        #expect(try db.users().map(\.username) == ["ana.ruiz"])
        let audit = try db.auditEntries().filter { $0.action == "user.create" }
        #expect(audit.count == 1 && audit[0].detail == "role=care_manager" && audit[0].actor == "admin")
    }

    @Test("a session is found by the hash of its id, ends after 15 idle minutes, and is touched at most every 30 s")
    func sessions() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ana = try db.addUser(username: "ana", displayName: "Ana", role: .careManager, passwordHash: fakeHash, actor: "admin")
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let life = SessionLifetime(idleSeconds: 15 * 60, absoluteSeconds: 12 * 3_600)
        let hash = Data(repeating: 7, count: 32)
        try await db.createSession(userID: ana.id, tokenHash: hash, csrfToken: String(repeating: "c", count: 43), lifetime: life, now: t0)

        // 14 min 59 s later it lives, and that request (a person's) moves the idle clock.
        guard case .success(let s) = try await db.session(tokenHash: hash, lifetime: life, now: t0 + 899, touch: true) else {
            Issue.record("session not found")
            return
        }
        #expect(s.user.username == "ana")
        #expect(s.lastSeenAt == t0 + 899)
        // A background request 10 s later does not move it; 14 min 59 s after the touch it still lives.
        _ = try await db.session(tokenHash: hash, lifetime: life, now: t0 + 909, touch: false)
        guard case .success = try await db.session(tokenHash: hash, lifetime: life, now: t0 + 899 + 899, touch: false) else {
            Issue.record("session ended early")
            return
        }
        // 15 minutes after the last touch it has ended, and is gone.
        guard case .failure(let ended) = try await db.session(tokenHash: hash, lifetime: life, now: t0 + 899 + 900, touch: true) else {
            Issue.record("session outlived the idle time")
            return
        }
        #expect(ended.end == .idle)
        guard case .failure(let gone) = try await db.session(tokenHash: hash, lifetime: life, now: t0 + 899 + 901, touch: true) else {
            Issue.record("ended session still there")
            return
        }
        #expect(gone.end == .unknown)
        #expect(try db.auditEntries().contains { $0.action == "session.end" && $0.detail == "idle" && $0.actor == "ana" })
    }

    @Test("the absolute lifetime ends an active session; disabling a user ends theirs")
    func absoluteAndDisabled() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ana = try db.addUser(username: "ana", displayName: "Ana", role: .careManager, passwordHash: fakeHash, actor: "admin")
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let life = SessionLifetime(idleSeconds: 900, absoluteSeconds: 3_600)
        let a = Data(repeating: 1, count: 32), b = Data(repeating: 2, count: 32)
        let csrf = String(repeating: "c", count: 43)
        try await db.createSession(userID: ana.id, tokenHash: a, csrfToken: csrf, lifetime: life, now: t0)
        for minute in stride(from: 10, through: 50, by: 10) {
            _ = try await db.session(tokenHash: a, lifetime: life, now: t0 + Double(minute * 60), touch: true)
        }
        guard case .failure(let ended) = try await db.session(tokenHash: a, lifetime: life, now: t0 + 3_600, touch: true) else {
            Issue.record("session outlived its absolute lifetime")
            return
        }
        #expect(ended.end == .expired)
        try await db.createSession(userID: ana.id, tokenHash: b, csrfToken: csrf, lifetime: life, now: t0)
        try db.setUserDisabled(username: "ana", disabled: true, actor: "admin")
        guard case .failure(let gone) = try await db.session(tokenHash: b, lifetime: life, now: t0 + 1, touch: true) else {
            Issue.record("a disabled user's session lived on")
            return
        }
        #expect(gone.end == .unknown)  // deleted when the user was disabled
    }

    @Test("lockout: 60 s from the 5th failure, doubling per further failure, at most 15 min")
    func throttle() {
        let t = SignInThrottle()
        #expect(t.lockSeconds(afterFailures: 4) == nil)
        #expect(t.lockSeconds(afterFailures: 5) == 60)
        #expect(t.lockSeconds(afterFailures: 6) == 120)
        #expect(t.lockSeconds(afterFailures: 8) == 480)
        #expect(t.lockSeconds(afterFailures: 9) == 900)  // 960 capped
        #expect(t.lockSeconds(afterFailures: 40) == 900)
    }

    @Test("five failures within a minute lock the name; a success clears the count; unknown names are audited as unknown")
    func lockout() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.addUser(username: "ana", displayName: "Ana", role: .careManager, passwordHash: fakeHash, actor: "admin")
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let throttle = SignInThrottle()
        for i in 0..<4 {
            #expect(try await db.recordSignInFailure(username: "ana", throttle: throttle, now: t0 + Double(i * 10), reason: "wrong password") == nil)
        }
        #expect(try await db.signInLockedUntil(username: "ana", now: t0 + 45) == nil)
        let locked = try await db.recordSignInFailure(username: "Ana", throttle: throttle, now: t0 + 50, reason: "wrong password")
        #expect(locked == t0 + 110)
        // The sixth attempt, at 55 s, finds the name locked: its password is never checked.
        #expect(try await db.signInLockedUntil(username: "ana", now: t0 + 55) == t0 + 110)
        #expect(try await db.signInLockedUntil(username: "ana", now: t0 + 110) == nil)
        // The next failure locks for twice as long.
        #expect(try await db.recordSignInFailure(username: "ana", throttle: throttle, now: t0 + 120, reason: "wrong password") == t0 + 240)
        try await db.recordSignIn(username: "ana", now: t0 + 300)
        #expect(try await db.recordSignInFailure(username: "ana", throttle: throttle, now: t0 + 310, reason: "wrong password") == nil)

        // A name that is nobody's (maybe a password typed in the wrong field) is never written to the audit trail.
        _ = try await db.recordSignInFailure(username: "Tr0ub4dor&3", throttle: throttle, now: t0, reason: "unknown user name")
        let failures = try db.auditEntries().filter { $0.action == "sign_in.failed" }
        #expect(failures.count == 8)
        #expect(failures.last?.actor == "unknown" && failures.last?.targetID == "unknown")
        #expect(!(try db.auditEntries().contains { ($0.detail ?? "").lowercased().contains("tr0ub4dor") || $0.actor.contains("tr0ub4dor") }))
    }
}

@Suite("caseloads, task owners and the version check")
struct TaskOwnershipTests {
    /// p2 (hypertension, cuff c1) in Ana's caseload; Bo is a second care manager.
    private func setUp(_ dir: TemporaryDirectory) throws -> AppDatabase {
        let db = try enrolledDatabase(dir)
        try db.addUser(username: "ana", displayName: "Ana Ruiz", role: .careManager, passwordHash: fakeHash, actor: "admin")
        try db.addUser(username: "bo", displayName: "Bo Chen", role: .careManager, passwordHash: fakeHash, actor: "admin")
        try db.addUser(username: "dr.ng", displayName: "Dr. Ng", role: .clinician, passwordHash: fakeHash, actor: "admin")
        try db.assignCareManager(patientID: "p2", username: "ana", actor: "admin")
        // Minutes count only within an RPM episode: consent given a month ago.
        try db.startEpisode(
            patientID: "p2", startDate: LocalDate(Date().addingTimeInterval(-30 * 86_400), in: TimeZone(identifier: "America/Chicago")!),
            practitioner: "Dr. Ng", actor: "admin")
        return db
    }

    @Test("a new task goes to the patient's care manager; without one it waits unassigned")
    func defaultOwner() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        _ = try await db.ingest([cuff(185, 125), glucose(45, minutesAgo: 1)], pipeline: pipeline)
        let tasks = try db.tasks()
        #expect(tasks.first { $0.patientID == "p2" }?.owner == "ana")
        #expect(tasks.first { $0.patientID == "p1" }?.owner == nil)
        // A clinician cannot hold a caseload; an unknown user neither.
        #expect(throws: EnrollmentError.self) { try db.assignCareManager(patientID: "p1", username: "dr.ng", actor: "admin") }
        #expect(throws: EnrollmentError.self) { try db.assignCareManager(patientID: "p1", username: "nobody", actor: "admin") }
        // A disabled care manager gets no new task.
        try db.setUserDisabled(username: "ana", disabled: true, actor: "admin")
        #expect(try db.tasks().first { $0.patientID == "p2" }?.owner == nil)  // released
        _ = try await db.ingest([cuff(85, 60, minutesAgo: 0.5)], pipeline: pipeline)  // systolic critical low: a new condition
        #expect(try db.tasks().first { $0.patientID == "p2" && $0.direction == .low }?.owner == nil)
    }

    @Test("a task opened and changed again in the same batch keeps the care manager it went to")
    func ownerKeptWhenChangedInItsBatch() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        try db.assignCareManager(patientID: "p1", username: "bo", actor: "admin")
        // One batch: 48 mg/dL opens a critical low task; 262 mg/dL two seconds later re-measures it
        // (not confirmed, recovered: two changes of the same task) and opens a warning high one.
        _ = try await db.ingest([glucose(48, minutesAgo: 1), glucose(262, minutesAgo: 1 - 2.0 / 60)], pipeline: pipeline)
        let tasks = try db.tasks().filter { $0.patientID == "p1" }
        #expect(tasks.count == 2)
        let low = try #require(tasks.first { $0.direction == .low })
        #expect(low.priority == .critical)
        #expect(low.confirmation == .notConfirmed)
        #expect(low.owner == "bo")
        #expect(tasks.first { $0.direction == .high }?.owner == "bo")
        let mine = try await db.worklist(tab: .mine, username: "bo", page: 1, pageSize: 50, now: Date(), role: "care_manager")
        #expect(mine.counts[.unassigned] == 0)
    }

    @Test("of two claims at the same version one wins; the other is told who has the task")
    func claimRace() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        _ = try await db.ingest([glucose(45, minutesAgo: 1)], pipeline: pipeline)  // p1: no care manager
        let task = try #require(try db.tasks().first)
        #expect(task.owner == nil)
        let seen = task.version
        let now = Date()
        async let a: Result<Void, any Error> = { do { try await db.claimTask(id: task.id, expectedVersion: seen, by: "ana", at: now); return .success(()) } catch { return .failure(error) } }()
        async let b: Result<Void, any Error> = { do { try await db.claimTask(id: task.id, expectedVersion: seen, by: "bo", at: now); return .success(()) } catch { return .failure(error) } }()
        let results = await [a, b]
        let winners = results.filter { if case .success = $0 { true } else { false } }
        #expect(winners.count == 1)
        let owner = try #require(try db.tasks().first?.owner)
        let loserError = results.compactMap { if case .failure(let e) = $0 { e as? TaskOwnershipError } else { nil } }.first
        #expect(loserError?.code == .versionConflict)
        #expect(loserError?.owner == owner)
        #expect(loserError?.ownerName == (owner == "ana" ? "Ana Ruiz" : "Bo Chen"))
        #expect(try db.tasks().first?.version == seen + 1)
        // One claim in the audit trail, under the winner.
        let claims = try db.auditEntries().filter { $0.action == "task.claim" }
        #expect(claims.map(\.actor) == [owner])
    }

    @Test("assign compares the version; an acknowledgement changes it; unassigning leaves the task to anyone")
    func assign() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        _ = try await db.ingest([cuff(185, 125)], pipeline: pipeline)
        let task = try #require(try db.tasks().first)
        let now = Date()
        try await db.assignTask(id: task.id, to: "bo", expectedVersion: task.version, by: "ana", at: now)
        try await db.acknowledge(taskID: task.id, by: "bo", note: nil, time: nil, at: now)
        let after = try #require(try db.tasks().first)
        #expect(after.owner == "bo" && after.status == .acknowledged && after.version == task.version + 2)
        await #expect(throws: TaskOwnershipError.self) {
            try await db.assignTask(id: task.id, to: "ana", expectedVersion: task.version + 1, by: "ana", at: now)
        }
        await #expect(throws: TaskOwnershipError.self) {
            try await db.assignTask(id: task.id, to: "dr.nobody", expectedVersion: after.version, by: "ana", at: now)
        }
        try await db.assignTask(id: task.id, to: nil, expectedVersion: after.version, by: "ana", at: now)
        #expect(try db.tasks().first?.owner == nil)
    }

    @Test("resolve needs a disposition and a note; notes are an append-only history; reopen brings the task back")
    func resolveNotesReopen() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        _ = try await db.ingest([cuff(185, 125)], pipeline: pipeline)
        let task = try #require(try db.tasks().first)
        let now = Date().addingTimeInterval(-60)
        try await db.addTaskNote(taskID: task.id, author: "ana", text: "Called, no answer.", at: now)
        await #expect(throws: TaskOwnershipError.self) {
            try await db.resolve(taskID: task.id, by: "ana", disposition: .contactedPatient, note: "  ", time: nil, at: now)
        }
        let time = NewTimeEntry(patientID: "", minutes: 12, performedAt: now, performedBy: "ana", activity: "call", modality: .audio)
        try await db.resolve(taskID: task.id, by: "ana", disposition: .contactedPatient, note: "Reached her; re-measured 150/92.",
                             time: time, at: now.addingTimeInterval(1))
        let resolved = try #require(try db.tasks().first)
        #expect(resolved.status == .resolved && resolved.disposition == .contactedPatient)
        let notes = try await db.taskNotes(taskID: task.id)
        #expect(notes.map(\.text) == ["Called, no answer.", "Reached her; re-measured 150/92."])
        let entries = try await db.timeEntries(taskID: task.id)
        #expect(entries.map(\.minutes) == [12] && entries[0].interactive && entries[0].modality == .audio)
        #expect(throws: DatabaseError.self) {
            try db.writer.write { try $0.execute(sql: "UPDATE task_notes SET text = 'changed'") }
        }
        #expect(throws: DatabaseError.self) {
            try db.writer.write { try $0.execute(sql: "DELETE FROM task_notes") }
        }

        try await db.reopenTask(id: task.id, expectedVersion: resolved.version, by: "bo", note: "She called back: dizzy.", at: now.addingTimeInterval(2))
        let reopened = try #require(try db.tasks().first)
        #expect(reopened.status == .acknowledged && reopened.disposition == nil && reopened.owner == "ana")
        #expect(try await db.taskNotes(taskID: task.id).count == 3)
        #expect(try db.auditEntries().contains { $0.action == "task.reopen" && $0.actor == "bo" })

        // A resolved task whose condition has a newer unresolved task cannot be reopened.
        try await db.resolve(taskID: task.id, by: "ana", disposition: .notActionable, note: "ok", time: nil, at: now.addingTimeInterval(3))
        _ = try await db.ingest([cuff(190, 128, minutesAgo: 0.5)], pipeline: IngestPipeline(
            thresholds: .clinicalDefaults, alerts: { var a = AlertPolicy.clinicalDefaults; a.realertAfterSeconds = 0; return a }()))
        let old = try #require(try db.tasks().first { $0.id == task.id })
        await #expect(throws: TaskOwnershipError.self) {
            try await db.reopenTask(id: task.id, expectedVersion: old.version, by: "bo", note: "again", at: now.addingTimeInterval(4))
        }
    }

    @Test("contact details: nil keeps, values are checked, the audit names fields and never values")
    func contactDetails() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try setUp(dir)
        try db.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes], name: "Maria Lopez",
                                     birthDate: "1951-04-30", phone: "+1 312 555 0101"), actor: "admin")
        try db.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes]), actor: "admin")
        let p = try #require(try db.patient(id: "p1"))
        #expect(p.name == "Maria Lopez" && p.birthDate == "1951-04-30" && p.phone == "+1 312 555 0101")
        #expect(throws: EnrollmentError.self) {
            try db.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes], birthDate: "1951-02-30"), actor: "a")
        }
        #expect(throws: EnrollmentError.self) {
            try db.upsertPatient(Patient(id: "p1", timezone: "America/Chicago", programs: [.diabetes], phone: "call me"), actor: "a")
        }
        try await db.updatePatientDetails(patientID: "p1", name: "Maria López", birthDate: nil, phone: "+1 312 555 0101",
                                          careManager: "bo", actor: "ana", at: Date())
        let q = try #require(try db.patient(id: "p1"))
        #expect(q.name == "Maria López" && q.birthDate == nil && q.careManager == "bo")
        let details = try db.auditEntries().filter { $0.action == "patient.details" }.compactMap(\.detail)
        #expect(details == ["set name, set birth_date, set phone", "set name, cleared birth_date"])
        #expect(!(try db.auditEntries().contains { ($0.detail ?? "").contains("Maria") || ($0.detail ?? "").contains("555") }))
    }
}
