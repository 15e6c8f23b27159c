import Crypto
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Real hosts on one machine: each host of a plan's ssh sites is a Linux network namespace with its own veth
/// link and address from 198.18.0.0/15, its own sshd (host keys generated here) and its PostgreSQL
/// instances listening on that address; a bridge joins the hosts and the control host (198.18.0.1) where
/// failoverd runs. The pgBackRest repository is shared through the file system (the NFS case).
///
/// `up()` builds the network, sshd, the login user (a shell, key authentication only, sudo to the OS user),
/// then the plan's starting topology through ``Sandbox`` with servers started over SSH. `down()` stops and
/// removes what `up()` recorded, by name and by pid. Faults: ``partition(site:)``, ``heal(site:)``,
/// ``isolateControl()``, ``reconnectControl()``. For test machines only; needs root.
public struct Lab: Sendable {
    /// The plan.
    public let plan: Plan
    /// failoverd's state directory (manifests).
    public let stateDirectory: String
    /// The plan file as the user named it, for the commands a refusal names (`PLAN` when nil).
    public var planPath: String?
    let logger: Logger

    /// The control host's address on the bridge.
    public static let controlAddress = "198.18.0.1"
    /// The lab's network: 198.18.0.0/15, reserved for network tests (RFC 2544).
    public static let network = "198.18.0.0/15"

    /// A lab for `plan`.
    public init(plan: Plan, stateDirectory: String, logger: Logger = Logger(label: "failoverd.lab")) {
        self.plan = plan
        self.stateDirectory = stateDirectory
        self.logger = logger
    }

    /// Six hex digits of the plan's name: the lab's interfaces are named after it (at most 15 characters).
    var id: String { SHA256.hash(data: Data(plan.name.utf8)).prefix(3).map { String(format: "%02x", $0) }.joined() }
    /// The bridge.
    public var bridge: String { "flb\(id)" }
    /// The distinct hosts of the plan's instances, in plan order.
    public var hosts: [String] {
        var seen: [String] = []
        for (_, instance) in plan.allInstances where !seen.contains(instance.host) { seen.append(instance.host) }
        return seen
    }
    /// The namespace of host number `index`.
    public func namespace(_ index: Int) -> String { "fodlab-\(id)-\(index)" }
    /// The control-side veth of host number `index`.
    public func link(_ index: Int) -> String { "flh\(id)\(index)" }
    /// The namespace-side veth of host number `index`.
    func peer(_ index: Int) -> String { "fln\(id)\(index)" }
    /// The lab's own files (host keys, sshd configurations, pid files, logs). Absolute: sshd's command line
    /// names its configuration there, which is how ``running()`` finds the state directory of a lab.
    public var directory: String { RunningTopology.absolute(stateDirectory) + "/lab-\(plan.name)" }
    /// The directory of the lab sshd's authorized_keys (root's, readable by the login user).
    public var authorizedKeysDirectory: String { "/run/failoverd-lab-\(id)" }
    /// The sudo rule letting the lab's login user act as the OS user: one file per lab (plan), so that another
    /// lab's `down` removes its own file, never the one this lab uses.
    func sudoersPath(login: String) -> String { "/etc/sudoers.d/failoverd-lab-\(login)-\(id)" }
    /// The manifest's path.
    var manifestPath: String { LabManifest.path(for: plan, in: stateDirectory) }
    /// True when `up()` built (part of) this lab.
    public var exists: Bool { Files.exists(manifestPath) }

    /// The indexes of the hosts of `site`.
    public func hostIndexes(of site: String) throws -> [Int] {
        guard let site = plan.site(named: site) else {
            throw FailoverError.invalid(
                "lab: no site \"\(site)\" in plan \"\(plan.name)\"; sites: \(plan.sites.map(\.name).joined(separator: ", "))")
        }
        return Set(site.instances.map(\.host)).compactMap { hosts.firstIndex(of: $0) }.sorted()
    }

    /// The sandbox that builds the PostgreSQL topology, its servers started over SSH.
    public func sandbox() throws -> Sandbox {
        let driver = try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
        var sandbox = Sandbox(plan: plan, stateDirectory: stateDirectory, logger: logger)
        sandbox.planPath = planPath
        let lab = self
        sandbox.starter = { try await lab.start($0, driver: driver) }
        sandbox.clientAddresses = Self.network
        return sandbox
    }

    // MARK: Checks

    /// Refuses plans the lab cannot build: every site ssh, with identityFile and knownHostsFile (the lab
    /// generates them), one login user, every host an address of 198.18.0.0/15 other than the control host's.
    func validate() throws -> SSHSettings {
        guard OSUser.isRoot else { throw FailoverError.invalid("lab: namespaces, links and sshd need root; run failoverd lab as root.") }
        var login: SSHSettings?
        for site in plan.sites {
            guard site.driver == .ssh, let ssh = site.ssh else {
                throw FailoverError.invalid(
                    "lab: site \"\(site.name)\" uses driver \(site.driver); a lab builds hosts for ssh sites only (\"driver\": \"ssh\" with its \"ssh\" settings)."
                )
            }
            guard ssh.identityFile != nil, ssh.knownHostsFile != nil else {
                throw FailoverError.invalid(
                    "lab: site \"\(site.name)\" needs $.sites[].ssh.identityFile and knownHostsFile: the lab generates the key and the hosts' keys there."
                )
            }
            if let login, login != ssh {
                throw FailoverError.invalid(
                    "lab: sites \"\(plan.sites[0].name)\" and \"\(site.name)\" have different ssh settings; a lab has one login.")
            }
            login = ssh
        }
        for host in hosts {
            guard let bytes = PlanValues.ipv4(host), bytes[0] == 198, bytes[1] == 18 || bytes[1] == 19 else {
                throw FailoverError.invalid(
                    "lab: host \(host) is not an address of \(Self.network); the lab gives each host an address from the range reserved for network tests, and sends nothing elsewhere."
                )
            }
            if host == Self.controlAddress || host == "198.18.0.0" || host == "198.19.255.255" {
                throw FailoverError.invalid(
                    "lab: host \(host) is reserved (the control host is \(Self.controlAddress)); choose another address.")
            }
        }
        guard hosts.count <= 99 else { throw FailoverError.invalid("lab: at most 99 hosts") }
        // A Debian cluster's configuration is written by the lab: inside the lab's directory, never /etc.
        let labRoot = (plan.repository.path as NSString).deletingLastPathComponent
        for (site, instance) in plan.allInstances where instance.service?.isPgCtlCluster == true {
            guard let root = instance.service?.configurationRoot, PlanValues.isWithin(root, labRoot) else {
                throw FailoverError.invalid(
                    "lab: instance \(instance.name) (site \(site.name)) is started by pg_ctlcluster; give it a service.configurationRoot inside \(labRoot), where the lab writes its cluster configuration (never /etc/postgresql)."
                )
            }
        }
        try validateSystemd(labRoot: labRoot)
        _ = try etcdMembers()
        return login!
    }

    // MARK: Commands

    /// Runs a command as root; throws with its output when it fails.
    @discardableResult
    func root(_ executable: String, _ arguments: [String], _ hint: String = "") async throws -> CommandResult {
        try await CommandRunner(user: nil, defaultTimeout: 30).run(executable, arguments).checked(hint)
    }

    /// Runs `ip` with `arguments`; the result, whatever its exit status.
    func ip(_ arguments: [String]) async throws -> CommandResult {
        try await CommandRunner(user: nil, defaultTimeout: 30).run("/usr/sbin/ip", arguments)
    }

    /// The names of existing network namespaces.
    func existingNamespaces() async throws -> Set<String> {
        let out = try await ip(["netns", "list"]).stdout
        return Set(out.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }

    /// True when the link `name` exists in this namespace.
    func linkExists(_ name: String) async throws -> Bool { try await ip(["link", "show", "dev", name]).succeeded }
}
