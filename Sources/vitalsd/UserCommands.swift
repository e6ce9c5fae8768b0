import ArgumentParser
import Foundation
import VitalsStore
import VitalsWeb

extension UserRole: ExpressibleByArgument {}

/// Where a new password comes from: never the command line, where other users and the shell history see it.
struct PasswordSource: ParsableArguments {
    @Option(help: ArgumentHelp("Read the password from the first line of FILE (e.g. a systemd credential).", valueName: "FILE"))
    var passwordFile: String?
    @Flag(help: "Read the password from the first line of standard input.")
    var passwordStdin = false

    func validate() throws {
        if passwordFile != nil && passwordStdin { throw ValidationError("give --password-file or --password-stdin, not both") }
    }

    /// The password: from the file, from standard input, or typed twice at a prompt without echo.
    func read() throws -> String {
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw ValidationError("cannot read \(passwordFile)")
            }
            return firstLine(text)
        }
        if passwordStdin || isatty(STDIN_FILENO) == 0 {
            return firstLine(String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self))
        }
        let first = prompt("Password (12 to 72 characters): ")
        guard prompt("Again: ") == first else { throw ValidationError("the two passwords differ") }
        return first
    }

    private func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
    }

    private func prompt(_ text: String) -> String {
        guard let p = getpass(text) else { return "" }
        return String(cString: p)
    }
}

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Workspace users: care managers, clinicians and admins.",
        subcommands: [Add.self, List.self, Disable.self, Enable.self, ResetPassword.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a user. The password comes from a prompt, --password-file or --password-stdin, never an argument.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Sign-in name: a-z 0-9 . _ @ - (lower case).") var username: String
        @Option(help: "The name colleagues see, e.g. \"Ana Ruiz, RN\".") var name: String
        @Option(help: "care_manager, clinician or admin.") var role: UserRole
        @OptionGroup var password: PasswordSource
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            let user = try db.addUser(
                username: username, displayName: name, role: role, passwordHash: try Passwords.hash(try password.read()), actor: actor(by))
            print("user \(user.username): created (\(user.role.rawValue))")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List users.")
        @OptionGroup var options: GlobalOptions
        @Option var format: OutputFormat = .table

        func run() throws {
            let (_, db) = try options.database()
            let users = try db.users()
            try emit(format, json: users, header: ["username", "name", "role", "status", "created_at"],
                     rows: users.map { [$0.username, $0.displayName, $0.role.rawValue, $0.disabled ? "disabled" : "active", iso($0.createdAt)] })
        }
    }

    struct Disable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable a user: they cannot sign in, their sessions end, and their unresolved tasks go back to Unassigned.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "User name.") var username: String
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            try db.setUserDisabled(username: username, disabled: true, actor: actor(by))
            print("user \(Username.normalized(username)): disabled")
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user again.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "User name.") var username: String
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            try db.setUserDisabled(username: username, disabled: false, actor: actor(by))
            print("user \(Username.normalized(username)): enabled")
        }
    }

    struct ResetPassword: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-password", abstract: "Set a new password for a user; their sessions end.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "User name.") var username: String
        @OptionGroup var password: PasswordSource
        @Option(help: "Who makes the change (default: the invoking user).") var by: String?

        func run() throws {
            let (_, db) = try options.database()
            try db.setPasswordHash(username: username, passwordHash: try Passwords.hash(try password.read()), actor: actor(by))
            print("user \(Username.normalized(username)): password set; sessions ended")
        }
    }
}
