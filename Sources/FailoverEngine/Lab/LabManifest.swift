import Foundation

/// What `Lab.up()` created or changed, so that `down()` undoes exactly that, by name and by pid: the bridge,
/// the namespaces, the veth links, the sshd and etcd processes, the login user and its sudoers file, and the files
/// and directories it generated.
///
/// It lives in failoverd's state directory as `lab-<plan>.json` (0600), saved before each thing is created,
/// so an `up` that fails half-way leaves a manifest `down` can clean up after.
struct LabManifest: Codable, Sendable {
    /// The plan the lab was built for.
    var plan: String
    /// The bridge joining the sites and the control host.
    var bridge: String?
    /// Network namespaces, one per host.
    var namespaces: [String] = []
    /// Host-side veth links (deleting one deletes its peer in the namespace).
    var links: [String] = []
    /// sshd processes: pid and start time (a reused pid is never signalled).
    var processes: [LabProcess] = []
    /// Files the lab generated (keys, known_hosts, the fencing hook, the sudoers rule).
    var files: [String] = []
    /// Directories the lab created for those files (removed last, deepest first).
    var directories: [String] = []
    /// cgroups made for the hosts' systemd user managers (removed with rmdir, deepest first).
    var cgroups: [String]?
    /// OS users `up` created (the login user): `down` deletes them.
    var users: [String]?
    /// Home directories `up` changed (user → the home before): `down` sets them back.
    var homes: [String: String]?
    /// Data directories of the lab's etcd members (a plan with `coordination`), owned by the OS user:
    /// `down` removes them after the members (in ``processes``) are stopped.
    var etcdDirectories: [String]?

    static func path(for plan: Plan, in stateDirectory: String) -> String { stateDirectory + "/lab-\(plan.name).json" }

    static func load(for plan: Plan, in stateDirectory: String) throws -> LabManifest? {
        let path = path(for: plan, in: stateDirectory)
        guard let text = try Files.readText(path, owner: nil, mustBeOwn: true) else { return nil }
        guard let manifest = try? JSONDecoder().decode(LabManifest.self, from: Data(text.utf8)), manifest.plan == plan.name else {
            throw FailoverError.refused("lab: the manifest \(path) cannot be read or belongs to another plan; remove nothing on its word.")
        }
        return manifest
    }

    func save(for plan: Plan, in stateDirectory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.write(String(decoding: try encoder.encode(self), as: UTF8.self), to: Self.path(for: plan, in: stateDirectory), owner: nil)
    }
}

/// A process the lab started.
struct LabProcess: Codable, Sendable, Equatable {
    var pid: Int32
    var startTime: Double
    var what: String
}
