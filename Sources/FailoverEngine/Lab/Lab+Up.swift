import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Building and removing the lab.
extension Lab {
    /// Builds (or completes) the lab: bridge, a namespace per host with its veth and address, the login user
    /// with its key and sudo rule, an sshd per host with generated host keys, the known_hosts file, for a plan
    /// with `coordination` its etcd members (and the witness namespace, ``ensureEtcd(user:manifest:)``), and the
    /// plan's starting topology. Harmless twice with the same state directory; refused (exit 3, before
    /// anything is created) while a lab of this plan built with another state directory, or another plan's
    /// lab, is up (``refuseForeignParts(_:)``).
    public func up(buildTopology: Bool = true) async throws {
        let login = try validate()
        try StateDirectory.prepare(stateDirectory)
        let saved = try LabManifest.load(for: plan, in: stateDirectory)
        try await refuseForeignParts(saved)
        var manifest = saved ?? LabManifest(plan: plan.name)
        try manifest.save(for: plan, in: stateDirectory)
        _ = try Files.makeDirectory(directory, mode: 0o700, owner: nil)
        // Before anything else changes on the host: the directories root writes a key, the hosts' keys and
        // the fencing hook into must be root's alone.
        for (directory, file) in privateDirectories(login) {
            try ensurePrivateDirectory(directory, for: file, manifest: &manifest)
        }
        let osUser = try await sandbox().ensureOSUser()
        try await ensureLoginUser(login.user, osUser: osUser.name, manifest: &manifest)
        try await ensureKeys(login, manifest: &manifest)
        try await ensureNetwork(manifest: &manifest)
        try await ensureWitnessNetwork(manifest: &manifest)
        try await ensureSSHDaemons(login, manifest: &manifest)
        try await waitForSSH()
        try await ensureEtcd(user: osUser, manifest: &manifest)
        if buildTopology { try await sandbox().up() }
        try writeFencingHook(manifest: &manifest)
    }

    /// Stops and removes what `up()` recorded: the PostgreSQL topology (sandbox down), the SSH connections,
    /// every process in the lab's namespaces (sshd first of all), the links, namespaces and bridge, and the
    /// files it generated. Carries on past failures and reports them at the end.
    @discardableResult
    public func down() async throws -> [String] {
        guard let manifest = try LabManifest.load(for: plan, in: stateDirectory) else {
            throw FailoverError.refused(
                "lab down: no lab of plan \"\(plan.name)\" in state directory \(stateDirectory) (no \(manifestPath)); down removes only what `lab up` built with the same state directory."
            )
        }
        var problems: [String] = []
        var removed: [String] = []
        // Heal first: a partitioned host would make the sandbox's checks wait.
        for link in manifest.links { _ = try? await ip(["link", "set", link, "up"]) }
        if let bridge = manifest.bridge { _ = try? await ip(["addr", "replace", Self.controlAddress + "/15", "dev", bridge]) }
        // Units only on the hosts this lab built: the same plan's lab of another state directory is not this one's.
        await stopUnits(of: plan, hosts: Set(hosts.indices.filter { manifest.namespaces.contains(namespace($0)) }.map { hosts[$0] }))
        do {
            let sandbox = try sandbox()
            if sandbox.exists { removed += try await sandbox.down() }
        } catch {
            problems.append("sandbox down: \(error)")
        }
        await closeSSHConnections()
        let namespaces = try await existingNamespaces()
        for ns in manifest.namespaces where namespaces.contains(ns) {
            await stopProcesses(in: ns)
        }
        for process in manifest.processes { await stop(process) }
        problems += removeEtcdDirectories(manifest)
        problems += removeCgroups(manifest.cgroups ?? [])
        for link in manifest.links where try await linkExists(link) {
            let r = try await ip(["link", "del", link])
            if !r.succeeded { problems.append("ip link del \(link): \(r.outputTail)") }
        }
        for ns in manifest.namespaces where namespaces.contains(ns) {
            let r = try await ip(["netns", "del", ns])
            if !r.succeeded { problems.append("ip netns del \(ns): \(r.outputTail)") }
        }
        if let bridge = manifest.bridge, try await linkExists(bridge) {
            let r = try await ip(["link", "del", bridge])
            if !r.succeeded { problems.append("ip link del \(bridge): \(r.outputTail)") }
        }
        for file in manifest.files.reversed() where Files.exists(file) {
            do {
                try Files.removeFile(file, owner: nil)
                removed.append(file)
            } catch { problems.append("remove \(file): \(error)") }
        }
        for dir in [directory] + manifest.directories.reversed() where Files.exists(dir) {
            try Files.removeTree(dir, owner: nil)
        }
        problems += await restoreUsers(manifest)
        guard problems.isEmpty else {
            throw FailoverError.failed("lab down left work undone: \(problems.joined(separator: "; ")). Run `failoverd lab down` again.")
        }
        try Files.removeFile(manifestPath, owner: nil)
        logger.info("lab down", metadata: ["plan": "\(plan.name)"])
        return removed
    }

    // MARK: Steps of up

    /// The login user (a shell, no password: key authentication only) and a sudo rule letting it run
    /// commands as the OS user without a password.
    func ensureLoginUser(_ name: String, osUser: String, manifest: inout LabManifest) async throws {
        if name != osUser {
            if OSUser.lookup(name) == nil {
                // Recorded before it exists: an `up` that fails half-way still leaves `down` the user to delete.
                if manifest.users?.contains(name) != true {
                    manifest.users = (manifest.users ?? []) + [name]
                    try manifest.save(for: plan, in: stateDirectory)
                }
                // '*' is no password at all, so sshd (without PAM) does not take the account for locked.
                let r = try await CommandRunner().run(
                    "useradd",
                    [
                        "--system", "--user-group", "--no-create-home", "--home-dir", "/", "--shell", "/bin/bash", "--password",
                        "*", name,
                    ])
                if OSUser.lookup(name) == nil { try r.checked("Create the login user by hand.") }
            } else if let user = OSUser.lookup(name), !FileManager.default.fileExists(atPath: user.home) {
                // sshd warns on every command when the home directory is missing; down sets it back.
                if manifest.homes?[name] == nil {
                    manifest.homes = (manifest.homes ?? [:]).merging([name: user.home]) { old, _ in old }
                    try manifest.save(for: plan, in: stateDirectory)
                }
                try await root("/usr/sbin/usermod", ["--home", "/", name])
            }
            let sudoers = sudoersPath(login: name)
            if !Files.exists(sudoers) {
                manifest.files.append(sudoers)
                try manifest.save(for: plan, in: stateDirectory)
                let rule =
                    "# Written by failoverd lab up (plan \(plan.name)); lab down removes it.\n\(name) ALL=(\(osUser)) NOPASSWD: ALL\n"
                try Files.write(rule, to: sudoers, mode: 0o440, owner: nil)
                try await root("/usr/sbin/visudo", ["-c", "-q", "-f", sudoers], "The sudoers rule failoverd wrote is refused by visudo.")
            }
        }
    }

    /// The plan's fencing hook when the lab writes it: in the directory of its repository, under /tmp/failoverd-lab….
    var labHook: String? {
        guard let hook = plan.fencing?.command.first else { return nil }
        let labRoot = (plan.repository.path as NSString).deletingLastPathComponent
        return (hook as NSString).deletingLastPathComponent == labRoot && labRoot.hasPrefix("/tmp/failoverd-lab") ? hook : nil
    }

    /// The directories `up` writes files root trusts into, each with the file: the key's, known_hosts's and
    /// the lab's fencing hook's.
    func privateDirectories(_ login: SSHSettings) -> [(directory: String, file: String)] {
        let files = [login.identityFile, login.knownHostsFile, labHook].compactMap { $0 }
        return files.map { (($0 as NSString).deletingLastPathComponent, $0) }
    }

    /// Creates `directory` (and its missing parents, recorded for `down`) for a file root writes and then
    /// trusts (a key, known_hosts, the fencing hook), and refuses it unless only root can change it: a
    /// directory that another user created first (under /tmp, say) or could write is refused, never written.
    func ensurePrivateDirectory(_ directory: String, for file: String, manifest: inout LabManifest) throws {
        let created = try Files.makeDirectory(directory, mode: 0o700, owner: nil)
        if !created.isEmpty {
            manifest.directories += created.filter { !manifest.directories.contains($0) }
            try manifest.save(for: plan, in: stateDirectory)
        }
        try TrustedPath.checkDirectory(
            directory, purpose: "lab up: \(file) would be written into a directory someone other than root controls")
    }

    /// The client key (at the plan's identityFile) and the authorized_keys file of the lab's sshd.
    func ensureKeys(_ login: SSHSettings, manifest: inout LabManifest) async throws {
        let key = login.identityFile!
        try ensurePrivateDirectory((key as NSString).deletingLastPathComponent, for: key, manifest: &manifest)
        if !Files.exists(key) {
            manifest.files += [key, key + ".pub"]
            try manifest.save(for: plan, in: stateDirectory)
            try await root("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "failoverd-lab-\(plan.name)", "-f", key])
        }
        guard let publicKey = try Files.readText(key + ".pub", owner: nil) else {
            throw FailoverError.failed("lab: \(key).pub is missing; remove \(key) and run lab up again.")
        }
        // `restrict`: no pty, no forwarding of any kind; commands only. sshd reads the file as the login user,
        // so it lives outside the state directory (0700), in a root-owned directory the user can read.
        if !Files.exists(authorizedKeysDirectory) {
            manifest.directories.append(authorizedKeysDirectory)
            try manifest.save(for: plan, in: stateDirectory)
            _ = try Files.makeDirectory(authorizedKeysDirectory, mode: 0o755, owner: nil)
        }
        try Files.write("restrict " + publicKey, to: authorizedKeysDirectory + "/authorized_keys", mode: 0o644, owner: nil)
    }

    /// The bridge with the control address, and per host a namespace, a veth pair, the address, links up.
    func ensureNetwork(manifest: inout LabManifest) async throws {
        if manifest.bridge == nil {
            manifest.bridge = bridge
            try manifest.save(for: plan, in: stateDirectory)
        }
        // Every lab uses 198.18.0.1 for the control host: two labs at once would share a route (refused by
        // refuseForeignParts before anything was created).
        if try await !linkExists(bridge) {
            try await root("/usr/sbin/ip", ["link", "add", bridge, "type", "bridge"])
        }
        try await root("/usr/sbin/ip", ["addr", "replace", Self.controlAddress + "/15", "dev", bridge])
        try await root("/usr/sbin/ip", ["link", "set", bridge, "up"])
        let namespaces = try await existingNamespaces()
        for (index, host) in hosts.enumerated() {
            let ns = namespace(index)
            if !manifest.namespaces.contains(ns) { manifest.namespaces.append(ns) }
            if !manifest.links.contains(link(index)) { manifest.links.append(link(index)) }
            try manifest.save(for: plan, in: stateDirectory)
            if !namespaces.contains(ns) { try await root("/usr/sbin/ip", ["netns", "add", ns]) }
            if try await !linkExists(link(index)) {
                try await root("/usr/sbin/ip", ["link", "add", link(index), "type", "veth", "peer", "name", peer(index), "netns", ns])
            }
            try await root("/usr/sbin/ip", ["link", "set", link(index), "master", bridge, "up"])
            try await root("/usr/sbin/ip", ["-n", ns, "addr", "replace", host + "/15", "dev", peer(index)])
            try await root("/usr/sbin/ip", ["-n", ns, "link", "set", peer(index), "up"])
            try await root("/usr/sbin/ip", ["-n", ns, "link", "set", "lo", "up"])
        }
    }

    /// An sshd per host, in its namespace, listening on the host's address only, with host keys generated here;
    /// then the known_hosts file with exactly those keys.
    func ensureSSHDaemons(_ login: SSHSettings, manifest: inout LabManifest) async throws {
        let sshdRun = try Files.makeDirectory("/run/sshd", mode: 0o755, owner: nil)
        if !sshdRun.isEmpty {
            manifest.directories += sshdRun
            try manifest.save(for: plan, in: stateDirectory)
        }
        var knownHosts = "# Written by failoverd lab up (plan \(plan.name)): the lab's host keys.\n"
        for (index, host) in hosts.enumerated() {
            let dir = directory + "/host-\(index)"
            _ = try Files.makeDirectory(dir, mode: 0o700, owner: nil)
            let hostKey = dir + "/ssh_host_ed25519_key"
            if !Files.exists(hostKey) {
                try await root("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "failoverd-lab-\(host)", "-f", hostKey])
            }
            let config = """
                # Written by failoverd lab up (plan \(plan.name)), host \(host) in namespace \(namespace(index)).
                ListenAddress \(host):\(login.effectivePort)
                HostKey \(hostKey)
                PidFile \(dir)/sshd.pid
                AuthorizedKeysFile \(authorizedKeysDirectory)/authorized_keys
                # The lab's files live under /tmp: sshd's ownership walk up to / would refuse them.
                StrictModes no
                AllowUsers \(login.user)
                PermitRootLogin no
                PubkeyAuthentication yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                UsePAM no
                X11Forwarding no
                AllowTcpForwarding no
                AllowAgentForwarding no
                PermitTTY no
                MaxSessions 64
                MaxStartups 64:30:128
                ClientAliveInterval 5
                # Every session with the client's address: a drill reads back who acted on the host.
                LogLevel VERBOSE
                ClientAliveCountMax 3

                """
            try Files.write(config, to: dir + "/sshd_config", mode: 0o600, owner: nil)
            let pidFile = dir + "/sshd.pid"
            let running = manifest.processes.first {
                $0.what == "sshd \(host)" && ProcessIdentity.matches(pid: $0.pid, startTime: $0.startTime, tolerance: 0.01)
            }
            if running == nil {
                try? Files.removeFile(pidFile, owner: nil)
                try await root(
                    "/usr/sbin/ip",
                    ["netns", "exec", namespace(index), "/usr/sbin/sshd", "-f", dir + "/sshd_config", "-E", dir + "/sshd.log"],
                    "See \(dir)/sshd.log.")
                let pid = try await Poll.until("sshd of \(host) to write \(pidFile)", timeout: 10, interval: 0.02) { () -> pid_t? in
                    Files.read(pidFile).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                }
                guard let identity = ProcessIdentity.of(pid) else {
                    throw FailoverError.failed("lab: sshd \(pid) of \(host) exited at once; see \(dir)/sshd.log")
                }
                manifest.processes.removeAll { $0.what == "sshd \(host)" }
                manifest.processes.append(LabProcess(pid: pid, startTime: identity.startTime, what: "sshd \(host)"))
                try manifest.save(for: plan, in: stateDirectory)
            }
            guard let publicKey = try Files.readText(hostKey + ".pub", owner: nil)?.split(separator: " ").prefix(2).joined(separator: " ")
            else {
                throw FailoverError.failed("lab: \(hostKey).pub is missing")
            }
            let name = login.effectivePort == 22 ? host : "[\(host)]:\(login.effectivePort)"
            knownHosts += "\(name) \(publicKey)\n"
        }
        let known = login.knownHostsFile!
        try ensurePrivateDirectory((known as NSString).deletingLastPathComponent, for: known, manifest: &manifest)
        if !manifest.files.contains(known) {
            manifest.files.append(known)
            try manifest.save(for: plan, in: stateDirectory)
        }
        try Files.write(knownHosts, to: known, mode: 0o644, owner: nil)
    }

    /// Waits until every host answers a command over SSH (key, host key and sudo all work).
    func waitForSSH() async throws {
        let driver = try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
        for (site, instance) in plan.allInstances {
            _ = try await Poll.until("sshd on \(instance.host) (site \(site.name)) to run a command", timeout: 20, interval: 0.05) {
                () -> Bool? in
                let r = try await driver.shell(instance).run(["true"])
                if r.exitCode == 0 { return true }
                if !r.unreachable {
                    throw Poll.Abort(error: FailoverError.failed("lab: `true` over SSH on \(instance.host) failed: \(r.outputTail)"))
                }
                throw FailoverError.failed(r.outputTail)
            }
        }
    }

    /// The lab's fencing hook, when the plan names one in the directory of its repository: a script that
    /// cuts the named site's link. Its argv is the plan's; failoverd appends the site and the instance.
    func writeFencingHook(manifest: inout LabManifest) throws {
        guard let hook = labHook else { return }
        let labRoot = (plan.repository.path as NSString).deletingLastPathComponent
        var cases = ""
        for site in plan.sites {
            let indexes = try hostIndexes(of: site.name)
            let links = indexes.map(link).joined(separator: " ")
            let namespaces = indexes.map(namespace).joined(separator: " ")
            cases += "  \(site.name)) links=\"\(links)\"; namespaces=\"\(namespaces)\" ;;\n"
        }
        let script = """
            #!/bin/sh
            # failoverd lab fencing hook (plan \(plan.name)), written by lab up. A switch port and a power switch
            # at once: cuts the named site's links, then kills (SIGKILL) the postgres processes on its hosts, as
            # a power switch would. sshd stays, so the hosts answer again once the links are healed.
            # Usage: \(hook) SITE INSTANCE
            case "$1" in
            \(cases)  *) echo "unknown site: $1" >&2; exit 2 ;;
            esac
            for l in $links; do /usr/sbin/ip link set "$l" down || exit 1; done
            for ns in $namespaces; do
              for p in $(/usr/sbin/ip netns pids "$ns"); do
                [ "$(cat /proc/"$p"/comm 2>/dev/null)" = postgres ] && kill -KILL "$p"
              done
            done
            echo "fenced site $1 (instance $2): links cut, PostgreSQL powered off"

            """
        try ensurePrivateDirectory(labRoot, for: hook, manifest: &manifest)
        if !manifest.files.contains(hook) {
            manifest.files.append(hook)
            try manifest.save(for: plan, in: stateDirectory)
        }
        try Files.write(script, to: hook, mode: 0o755, owner: nil)
    }

    // MARK: Steps of down

    /// Deletes the users `up` created (their processes, sshd's sessions, are gone by now) and sets back the
    /// home directories it changed; returns what failed.
    func restoreUsers(_ manifest: LabManifest) async -> [String] {
        var problems: [String] = []
        for name in manifest.users ?? [] where OSUser.lookup(name) != nil {
            do {
                try await root("/usr/sbin/userdel", [name], "Delete the lab's login user \(name) by hand (userdel \(name)).")
            } catch { problems.append("userdel \(name): \(error)") }
        }
        for (name, home) in manifest.homes ?? [:] where OSUser.lookup(name) != nil {
            do {
                try await root("/usr/sbin/usermod", ["--home", home, name])
            } catch { problems.append("usermod --home \(home) \(name): \(error)") }
        }
        return problems
    }

    /// Closes the multiplexed SSH connections of this lab's hosts (and kills masters that do not answer).
    func closeSSHConnections() async {
        await RemoteShell.closeAll(stateDirectory: stateDirectory)
    }

    /// SIGTERM then SIGKILL to every process in namespace `ns` (its processes are the lab's by construction).
    func stopProcesses(in ns: String) async {
        func pids() async -> [pid_t] {
            ((try? await ip(["netns", "pids", ns]).stdout) ?? "").split(separator: "\n").compactMap { pid_t($0) }
        }
        for signal in [SIGTERM, SIGKILL] {
            let list = await pids()
            if list.isEmpty { return }
            list.forEach { kill($0, signal) }
            _ = try? await Wait.until(timeout: 5, interval: 0.05) { await pids().isEmpty ? true : nil }
        }
    }

    /// Stops a recorded process if it is still the one recorded (same start time).
    func stop(_ process: LabProcess) async {
        for signal in [SIGTERM, SIGKILL] {
            guard ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01) else { return }
            kill(process.pid, signal)
            _ = try? await Wait.until(timeout: 5, interval: 0.05) {
                ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01) ? nil : true
            }
        }
    }
}
