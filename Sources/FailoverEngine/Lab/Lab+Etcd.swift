import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The lab's etcd cluster, for a plan with `coordination`: one member per client URL of
/// `coordination.etcd.endpoints`, each in the namespace that owns its address. A member on a host of a site
/// runs in that host's namespace; the one member on an address that is no host of the plan runs in the
/// "witness" namespace the lab creates for it, so that a data center cut off holds one member of three and
/// loses quorum on its side only. Members run as the plan's OS user, their data directories fresh under the
/// lab's tree, and are stopped by pid (``down()``, and on a failed start).
extension Lab {
    /// One etcd member of the lab.
    struct EtcdMember: Sendable, Equatable {
        /// Its name in the cluster (`etcd-SITE`, `etcd-witness`).
        var name: String
        /// The address it listens on (a host's, or the witness's).
        var address: String
        /// The client port (the plan's endpoint).
        var clientPort: Int
        /// The namespace it runs in.
        var namespace: String
        /// The site whose host it runs on; nil for the witness.
        var site: String?

        /// The client URL, as the plan names it.
        var client: String { "http://\(address):\(clientPort)" }
        /// The peer URL: the port after the client port, as etcd's own 2379/2380.
        var peer: String { "http://\(address):\(clientPort + 1)" }
    }

    /// The witness's namespace.
    public var witnessNamespace: String { "fodlab-\(id)-w" }
    /// The witness's control-side veth.
    var witnessLink: String { "flh\(id)w" }
    /// The witness's namespace-side veth.
    var witnessPeer: String { "fln\(id)w" }
    /// Where the members' data directories live: `etcd/` in the directory of the plan's repository (the lab's tree).
    var etcdRoot: String { (plan.repository.path as NSString).deletingLastPathComponent + "/etcd" }

    /// The witness's address: the one endpoint of `coordination.etcd.endpoints` on no host of the plan.
    var witnessAddress: String? { (try? etcdMembers())?.first { $0.site == nil }?.address }

    /// The members `coordination.etcd.endpoints` names, checked: `http://ADDRESS:PORT`, at least three, each on
    /// an address of its own in 198.18.0.0/15; an address of a host of the plan puts the member in that host's
    /// namespace (one member per site), one other address is the witness's. Empty without coordination.
    ///
    /// - Throws: exit 2 naming `coordination.etcd.endpoints` (or the TLS field) and what to change.
    func etcdMembers() throws -> [EtcdMember] {
        guard let etcd = plan.coordination?.etcd else { return [] }
        let field = "coordination.etcd.endpoints"
        for (name, value) in [("caFile", etcd.caFile), ("certFile", etcd.certFile), ("keyFile", etcd.keyFile)] where value != nil {
            throw FailoverError.invalid(
                "lab: coordination.etcd.\(name) is set, but the lab starts its etcd members without TLS; remove it (and use http:// endpoints) for the lab's plan."
            )
        }
        guard etcd.endpoints.count >= 3 else {
            throw FailoverError.invalid(
                "lab: \(field) names \(etcd.endpoints.count) member(s); the lab starts three or more (one on a host of each data center, one witness) so that a data center cut off loses quorum on its side only."
            )
        }
        var members: [EtcdMember] = []
        var sitesUsed: Set<String> = []
        for endpoint in etcd.endpoints {
            guard endpoint.hasPrefix("http://") else {
                throw FailoverError.invalid("lab: \(field): \(endpoint) is not http://ADDRESS:PORT; the lab's members serve plain HTTP.")
            }
            let parsed = PlanValues.parseEndpoint(String(endpoint.dropFirst("http://".count)))
            guard parsed.problem == nil, let bytes = PlanValues.ipv4(parsed.host), bytes[0] == 198, bytes[1] == 18 || bytes[1] == 19,
                parsed.port > 0, parsed.port < 65535
            else {
                throw FailoverError.invalid(
                    "lab: \(field): \(endpoint) is not http://ADDRESS:PORT with an address of \(Self.network) and a port below 65535; the lab creates every address it serves, and sends nothing elsewhere."
                )
            }
            if [Self.controlAddress, "198.18.0.0", "198.19.255.255"].contains(parsed.host) {
                throw FailoverError.invalid(
                    "lab: \(field): \(endpoint) uses a reserved address (the control host is \(Self.controlAddress)).")
            }
            if members.contains(where: { $0.address == parsed.host }) {
                throw FailoverError.invalid("lab: \(field): two members on \(parsed.host); give each member an address of its own.")
            }
            if let index = hosts.firstIndex(of: parsed.host) {
                let site = plan.allInstances.first { $0.instance.host == parsed.host }!.site.name
                if sitesUsed.contains(site) {
                    throw FailoverError.invalid(
                        "lab: \(field): two members in site \(site); one per data center, or a data center cut off could keep quorum.")
                }
                sitesUsed.insert(site)
                let taken = plan.allInstances.filter { $0.instance.host == parsed.host }.map(\.instance.port) + [sshPort]
                if taken.contains(parsed.port) || taken.contains(parsed.port + 1) {
                    throw FailoverError.invalid(
                        "lab: \(field): \(endpoint) and its peer port \(parsed.port + 1) must not be a port PostgreSQL or sshd uses on \(parsed.host) (\(taken.map(String.init).joined(separator: ", ")))."
                    )
                }
                members.append(
                    EtcdMember(name: "etcd-" + site, address: parsed.host, clientPort: parsed.port, namespace: namespace(index), site: site)
                )
            } else {
                if let witness = members.first(where: { $0.site == nil }) {
                    throw FailoverError.invalid(
                        "lab: \(field): \(witness.address) and \(parsed.host) are no host of the plan; the lab creates one witness namespace, so put the other members on hosts of the plan's sites (one per site)."
                    )
                }
                members.append(
                    EtcdMember(name: "etcd-witness", address: parsed.host, clientPort: parsed.port, namespace: witnessNamespace, site: nil))
            }
        }
        return members
    }

    /// The port the lab's sshd listen on.
    private var sshPort: Int { plan.sites.first?.ssh?.effectivePort ?? 22 }

    /// The witness namespace with its veth on the bridge and its address, when the plan has one.
    func ensureWitnessNetwork(manifest: inout LabManifest) async throws {
        guard let address = witnessAddress else { return }
        if !manifest.namespaces.contains(witnessNamespace) { manifest.namespaces.append(witnessNamespace) }
        if !manifest.links.contains(witnessLink) { manifest.links.append(witnessLink) }
        try manifest.save(for: plan, in: stateDirectory)
        if try await !existingNamespaces().contains(witnessNamespace) {
            try await root("/usr/sbin/ip", ["netns", "add", witnessNamespace])
        }
        if try await !linkExists(witnessLink) {
            try await root(
                "/usr/sbin/ip", ["link", "add", witnessLink, "type", "veth", "peer", "name", witnessPeer, "netns", witnessNamespace])
        }
        try await root("/usr/sbin/ip", ["link", "set", witnessLink, "master", bridge, "up"])
        try await root("/usr/sbin/ip", ["-n", witnessNamespace, "addr", "replace", address + "/15", "dev", witnessPeer])
        try await root("/usr/sbin/ip", ["-n", witnessNamespace, "link", "set", witnessPeer, "up"])
        try await root("/usr/sbin/ip", ["-n", witnessNamespace, "link", "set", "lo", "up"])
    }

    /// Starts every member that does not run (each in its namespace, as `user`, its data directory created
    /// fresh under ``etcdRoot`` and recorded), then waits until each reports healthy. On a failure the members
    /// this call started are stopped by pid before it throws.
    func ensureEtcd(user: OSUser, manifest: inout LabManifest) async throws {
        let members = try etcdMembers()
        guard !members.isEmpty else { return }
        let initialCluster = members.map { "\($0.name)=\($0.peer)" }.joined(separator: ",")
        var started: [LabProcess] = []
        do {
            for member in members {
                let what = "etcd \(member.name) \(member.client)"
                if manifest.processes.contains(where: {
                    $0.what == what && ProcessIdentity.matches(pid: $0.pid, startTime: $0.startTime, tolerance: 0.01)
                }) {
                    continue
                }
                let dir = etcdRoot + "/" + member.name
                let recorded = manifest.etcdDirectories?.contains(dir) == true
                if Files.exists(dir) && !recorded {
                    throw FailoverError.refused(
                        "lab up: \(dir) exists but this lab did not create it; the lab starts each etcd member in a fresh data directory. Remove it (or the lab that left it: failoverd lab down) and run lab up again."
                    )
                }
                if !recorded {
                    manifest.etcdDirectories = (manifest.etcdDirectories ?? []) + [dir]
                    try manifest.save(for: plan, in: stateDirectory)
                }
                let madeRoot = try Files.makeDirectory(etcdRoot, mode: 0o755, owner: nil)
                if !madeRoot.isEmpty {
                    manifest.directories += madeRoot.filter { !manifest.directories.contains($0) }
                    try manifest.save(for: plan, in: stateDirectory)
                }
                _ = try Files.makeDirectory(dir, mode: 0o700, owner: user)
                // nsenter joins the namespace and execs setpriv, which execs etcd as the OS user: one pid throughout.
                let argv = [
                    "/usr/bin/nsenter", "--net=/run/netns/" + member.namespace, "--", "/usr/bin/setpriv", "--reuid=\(user.uid)",
                    "--regid=\(user.gid)", "--init-groups", "--", Sandbox.etcdExecutable, "--name", member.name, "--data-dir",
                    dir + "/data", "--listen-client-urls", member.client, "--advertise-client-urls", member.client, "--listen-peer-urls",
                    member.peer, "--initial-advertise-peer-urls", member.peer, "--initial-cluster", initialCluster,
                    "--initial-cluster-token", "failoverd-lab-\(id)", "--initial-cluster-state", "new", "--log-level", "warn",
                ]
                let identity = try await SandboxDaemon.launch(
                    argv, name: "lab: \(what)", logFile: directory + "/\(member.name).log",
                    runner: CommandRunner(user: nil, defaultTimeout: 30))
                let process = LabProcess(pid: identity.pid, startTime: identity.startTime, what: what)
                started.append(process)
                manifest.processes.removeAll { $0.what == what }
                manifest.processes.append(process)
                try manifest.save(for: plan, in: stateDirectory)
            }
            for member in members {
                try await EtcdHealth.waitHealthy(
                    name: member.name, client: member.client, log: directory + "/\(member.name).log", timeout: 60)
            }
        } catch {
            for process in started { await stop(process) }
            throw error
        }
    }

    /// Removes the members' data directories (their processes are stopped by then), as the OS user that owns
    /// them; returns what failed.
    func removeEtcdDirectories(_ manifest: LabManifest) -> [String] {
        var problems: [String] = []
        let user = try? OSUser.postgresUser(for: plan)
        for dir in manifest.etcdDirectories ?? [] where Files.exists(dir) {
            do { try Files.removeTree(dir, owner: user) } catch { problems.append("remove \(dir): \(error)") }
        }
        return problems
    }

    /// One line per member: where it runs, whether its recorded process is alive, and its health.
    func etcdStatus(_ manifest: LabManifest) async -> [String] {
        var lines: [String] = []
        for member in (try? etcdMembers()) ?? [] {
            let process = manifest.processes.first { $0.what == "etcd \(member.name) \(member.client)" }
            let alive = process.map { ProcessIdentity.matches(pid: $0.pid, startTime: $0.startTime, tolerance: 0.01) } ?? false
            let health =
                (try? await CommandRunner().run("/usr/bin/curl", ["-sf", "--max-time", "2", member.client + "/health"]))?.stdout ?? ""
            lines.append(
                "etcd \(member.name) \(member.client): namespace \(member.namespace), \(alive ? "pid \(process!.pid)" : "not running"), \(health.contains("\"true\"") ? "healthy" : "not healthy (no quorum, or cut off)")"
            )
        }
        return lines
    }

    /// The argv that runs `command` in the network namespace of the lab host `host`: what `failoverd lab exec`
    /// executes, so that a second coordinator runs where a machine of that data center would.
    ///
    /// - Throws: exit 2 for a host that is not one of the lab's hosts or an empty command; exit 3 when this
    ///   state directory's lab is not up (no manifest, or the namespace is gone).
    public func execArguments(host: String, command: [String]) async throws -> [String] {
        let prefix = try namespaceArguments(host: host)
        let index = hosts.firstIndex(of: host)!
        guard !command.isEmpty else {
            throw FailoverError.invalid("lab exec: no command; give it after --, as in `lab exec PLAN HOST -- failoverd status`.")
        }
        guard let manifest = try LabManifest.load(for: plan, in: stateDirectory), manifest.namespaces.contains(namespace(index)),
            try await existingNamespaces().contains(namespace(index))
        else {
            throw FailoverError.refused(
                "lab exec: the lab of plan \(PlanValues.quoted(plan.name)) is not up with state directory \(stateDirectory) (no namespace \(namespace(index)) of its building); run `failoverd lab up` first, with the same --state."
            )
        }
        return prefix + command
    }

    /// `nsenter` into the network namespace of the lab host `host`, up to `--`: the command follows.
    ///
    /// - Throws: exit 2 for a host that is not one of the lab's hosts.
    func namespaceArguments(host: String) throws -> [String] {
        guard let index = hosts.firstIndex(of: host) else {
            throw FailoverError.invalid(
                "lab exec: \(host) is not a host of plan \(PlanValues.quoted(plan.name))'s lab; hosts: \(hosts.joined(separator: ", ")).")
        }
        return ["/usr/bin/nsenter", "--net=/run/netns/" + namespace(index), "--"]
    }
}
