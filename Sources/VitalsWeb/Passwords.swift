import Foundation
import HummingbirdBcrypt
import NIOPosix
import VitalsStore

/// Password hashing for workspace users: bcrypt (hummingbird-auth) at cost 12, OWASP ASVS 4.0 V2.4.
public enum Passwords {
    /// bcrypt cost: 2^12 rounds, about a quarter of a second on one core.
    public static let cost: UInt8 = 12

    /// Why a new password is refused, or nil when it is acceptable: 12 to 72 bytes (bcrypt reads no
    /// more than 72; a longer one would be cut silently), no NUL character. ASVS 4.0 V2.1.1 asks for
    /// at least 12 characters.
    public static func problem(_ password: String) -> String? {
        if password.count < 12 { return "a password has at least 12 characters" }
        if password.utf8.count > 72 { return "a password has at most 72 bytes (bcrypt reads no more)" }
        if password.contains("\u{0}") { return "a password cannot contain a NUL character" }
        return nil
    }

    /// The bcrypt hash of a new password.
    /// - Throws: ``UserError`` when ``problem(_:)`` refuses it.
    public static func hash(_ password: String) throws -> String {
        if let problem = problem(password) { throw UserError(problem) }
        return Bcrypt.hash(password, cost: cost)
    }

    /// Whether `password` matches the bcrypt `hash`, computed on ``pool``, off the cooperative pool.
    /// Without a hash (an unknown user name) it checks ``decoy`` and returns false, taking as long.
    static func verify(_ password: String, hash: String?) async throws -> Bool {
        try await pool.runIfActive {
            let matches = Bcrypt.verify(password, hash: hash ?? decoy)
            return hash != nil && matches && !password.contains("\u{0}") && password.utf8.count <= 72
        }
    }

    /// One thread for every password check: sign-ins queue for it, so that however many arrive they
    /// use at most one core and never the core that ingest needs (a check is ~0.25 s of CPU).
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    /// A hash of a random password nobody knows: checked for unknown user names, so that a sign-in
    /// takes as long whether the name exists or not.
    static let decoy: String = Bcrypt.hash(UUID().uuidString + UUID().uuidString, cost: cost)
}
