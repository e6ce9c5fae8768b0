import VitalsStore

/// What this build of vitalsd is: its version, and the schema it brings.
///
/// `vitalsd --version` prints ``description``; `/metrics` exports `vitalsd_build_info{version="…"} 1`;
/// the daemon logs the version as it starts. The version follows semantic versioning and is set here
/// for each release: a minor version adds migrations or settings, a major one changes what a setting,
/// a command or an API means.
public enum BuildInfo {
    /// `MAJOR.MINOR.PATCH`.
    public static let version = "0.9.0"

    /// `0.9.0 (SQLite schema: 31 migrations, last "…"; PostgreSQL schema: 4 migrations, last "…")`:
    /// what an operator compares before an upgrade (`vitalsd db migrate --dry-run` lists the difference).
    public static func description(postgresMigrations: [String]) -> String {
        let sqlite = AppDatabase.migrationNames
        func schema(_ name: String, _ migrations: [String]) -> String {
            "\(name) schema: \(migrations.count) migration\(migrations.count == 1 ? "" : "s")"
                + (migrations.last.map { ", last \"\($0)\"" } ?? "")
        }
        return "\(version) (\(schema("SQLite", sqlite)); \(schema("PostgreSQL", postgresMigrations)))"
    }
}
