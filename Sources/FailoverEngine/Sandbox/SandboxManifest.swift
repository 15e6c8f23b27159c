import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The list of paths `Sandbox.up()` created, so that `down()` removes exactly those and nothing else.
///
/// It lives in failoverd's own state directory (root-owned, 0700), as `sandbox-<plan name>.json`, mode 0600:
/// never beside the repository, where the PostgreSQL OS user (or anyone, in /tmp) could write one.
/// A manifest that is a symbolic link, not owned by the user running failoverd, or writable by others is
/// refused. It is saved after every addition: an `up` that fails half-way still leaves a manifest that
/// `down` can clean up after.
struct SandboxManifest: Codable, Sendable {
    /// The plan the sandbox was built for.
    var plan: String
    /// Created paths, in creation order (parents before children).
    var created: [String]

    /// Where the manifest of `plan` lives in `stateDirectory`.
    static func path(for plan: Plan, in stateDirectory: String) -> String {
        stateDirectory + "/sandbox-\(plan.name).json"
    }

    /// The saved manifest of `plan`, or nil when there is none.
    ///
    /// - Throws: ``FailoverError`` (refused) when the manifest is a symbolic link, is not owned by the user
    ///   running failoverd, is writable by others, cannot be read, or belongs to another plan.
    static func load(for plan: Plan, in stateDirectory: String) throws -> SandboxManifest? {
        let path = path(for: plan, in: stateDirectory)
        guard let text = try Files.readText(path, owner: nil, mustBeOwn: true) else { return nil }
        guard let manifest = try? JSONDecoder().decode(SandboxManifest.self, from: Data(text.utf8)) else {
            throw FailoverError.refused(
                "sandbox: the manifest \(path) cannot be read; failoverd removes nothing on its word. Inspect it, and remove it by hand.")
        }
        guard manifest.plan == plan.name else {
            throw FailoverError.refused(
                "sandbox: the manifest \(path) belongs to plan \(PlanValues.quoted(manifest.plan)), not \(PlanValues.quoted(plan.name)); failoverd removes nothing on its word."
            )
        }
        return manifest
    }

    /// Adds `paths` (skipping ones already listed) and saves, creating the state directory if needed.
    ///
    /// Only paths under the plan's directories are recorded: a parent `up()` had to create above them (the
    /// first sandbox on a machine creates /tmp/failoverd-sandbox) may hold other plans' sandboxes, so it is
    /// left in place, and `down()` (which refuses a manifest listing anything outside) stays possible.
    mutating func record(_ paths: [String], for plan: Plan, in stateDirectory: String) throws {
        let roots = Self.roots(of: plan)
        let new = paths.filter { path in !created.contains(path) && roots.contains { PlanValues.isWithin(path, $0) } }
        guard !new.isEmpty else { return }
        created += new
        try save(for: plan, in: stateDirectory)
    }

    /// Writes the manifest (0600, owned by the user running failoverd).
    func save(for plan: Plan, in stateDirectory: String) throws {
        try StateDirectory.prepare(stateDirectory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.write(
            String(decoding: try encoder.encode(self), as: UTF8.self), to: Self.path(for: plan, in: stateDirectory), mode: 0o600, owner: nil
        )
    }

    /// The directories under which `up()` creates anything for `plan`: the parents of the repository, of its
    /// configuration, of the passfile and of every data directory. A manifest entry outside them was not
    /// created by `up()` for this plan.
    static func roots(of plan: Plan) -> [String] {
        let configPath = PgBackRest(plan: plan).configPath
        // An object store's repository path names a prefix in its bucket, not a directory here.
        let repository = plan.repository.type == "posix" ? [plan.repository.path] : []
        let files = repository + [configPath, plan.replication.passfile] + plan.allInstances.map { $0.instance.dataDirectory }
        return Array(Set(files.map { ($0 as NSString).deletingLastPathComponent }))
    }

    /// Refuses, before anything is removed, an entry that is not a normal absolute path or lies outside `roots`.
    func checkEntries(within roots: [String], manifestPath: String) throws {
        for path in created {
            guard PlanValues.pathProblem(path) == nil, roots.contains(where: { PlanValues.isWithin(path, $0) }) else {
                throw FailoverError.refused(
                    "sandbox down: the manifest \(manifestPath) lists \(PlanValues.quoted(path)), which is not under the plan's directories (\(roots.sorted().joined(separator: ", "))); failoverd removes nothing. Inspect the manifest."
                )
            }
        }
    }
}
