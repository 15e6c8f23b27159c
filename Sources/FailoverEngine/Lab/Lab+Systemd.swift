import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Instances the plan says are started by a systemd unit of the OS user's own manager (`"scope": "user"`):
/// the lab runs a real `systemd --user` per host, in the host's namespace, and writes each instance's unit.
///
/// The machines this runs on have no systemd as init. systemd's user manager runs all the same once it
/// sees what a booted system shows (/run/systemd/system, on a tmpfs in a mount namespace of its own, so
/// nothing else on the machine sees it) and has a cgroup it may write (one per host, made for the OS user,
/// removed by `down`). Units, drop-ins, start jobs, `ExecStartPre=` and `Restart=` behave as on any host.
extension Lab {
    /// The cgroup hierarchies a user manager needs a writable cgroup in: the unified one, and the named
    /// `systemd` v1 hierarchy on a hybrid layout.
    static var cgroupHierarchies: [String] {
        if Files.exists("/sys/fs/cgroup/cgroup.procs") { return ["/sys/fs/cgroup"] }
        return ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"].filter { Files.exists($0 + "/cgroup.procs") }
    }

    /// The user manager's configuration home (XDG_CONFIG_HOME) of a systemd instance: its dropInDirectory is
    /// CONFIG/systemd/user/UNIT.d.
    static func configurationHome(_ service: ServiceSettings) -> String? {
        guard let unit = service.unit, let dropIns = service.dropInDirectory else { return nil }
        let suffix = "/systemd/user/\(unit).d"
        return dropIns.hasSuffix(suffix) ? String(dropIns.dropLast(suffix.count)) : nil
    }

    /// Refuses systemd instances the lab cannot run: the user scope only (the lab has no system manager), with
    /// runtimeDirectory and a dropInDirectory of CONFIG/systemd/user/UNIT.d inside the lab's directory, one
    /// runtime directory and configuration home per host.
    func validateSystemd(labRoot: String) throws {
        var perHost: [String: (String, String)] = [:]
        for (site, instance) in plan.allInstances {
            guard let service = instance.service, service.manager == "systemd" else { continue }
            let who = "lab: instance \(instance.name) (site \(site.name))"
            guard service.isUserScope, let runtime = service.runtimeDirectory, let config = Self.configurationHome(service),
                PlanValues.isWithin(runtime, labRoot), PlanValues.isWithin(config, labRoot)
            else {
                throw FailoverError.invalid(
                    "\(who) is started by systemd: the lab runs a user manager per host, so give it \"scope\": \"user\", a runtimeDirectory and a dropInDirectory of CONFIG/systemd/user/\(service.unit ?? "UNIT").d, both inside \(labRoot)."
                )
            }
            if let other = perHost[instance.host], other != (runtime, config) {
                throw FailoverError.invalid(
                    "\(who): host \(instance.host) has one user manager; give its instances the same runtimeDirectory and configuration directory."
                )
            }
            perHost[instance.host] = (runtime, config)
        }
    }

    /// Starts `instance`'s host's user manager when it does not run, writes the instance's unit (postgres in
    /// the foreground, Type=notify, fast shutdown on stop, restarted on failure, its log where pg_ctl's would
    /// be) and reloads the manager.
    func prepareUnit(_ instance: Instance) async throws {
        guard let service = instance.service, service.isSystemd, service.isUserScope, let unit = service.unit,
            let runtime = service.runtimeDirectory, let config = Self.configurationHome(service),
            let index = hosts.firstIndex(of: instance.host)
        else {
            throw FailoverError.invalid("lab: instance \(instance.name) is not a systemd user unit the lab can run")
        }
        let user = try OSUser.postgresUser(for: plan)
        var manifest = try LabManifest.load(for: plan, in: stateDirectory) ?? LabManifest(plan: plan.name)
        for dir in [runtime, config + "/systemd/user"] {
            manifest.directories += try Files.makeDirectory(dir, mode: 0o700, owner: user)
        }
        try manifest.save(for: plan, in: stateDirectory)
        try await ensureUserManager(host: index, user: user, runtime: runtime, config: config, manifest: &manifest)

        let paths = ServerPaths(instance)
        let bin = "/usr/lib/postgresql/15/bin"
        let options = [
            "-D", paths.dataDirectory, "-p", String(instance.port), "-k", paths.local.socketDirectory, "-h", instance.host, "-c",
            "cluster_name=" + instance.name,
        ]
        let text = """
            # Written by failoverd lab up (plan \(plan.name)): PostgreSQL 15 instance \(instance.name) on \(instance.host).
            [Unit]
            Description=PostgreSQL 15 \(instance.name) (failoverd lab)

            [Service]
            Type=notify
            ExecStart=\(bin)/postgres \(options.map(SystemdUnit.word).joined(separator: " "))
            ExecReload=/bin/kill -HUP $MAINPID
            KillMode=mixed
            KillSignal=SIGINT
            TimeoutSec=120
            Restart=on-failure
            RestartSec=1
            StandardOutput=append:\(paths.logFile)
            StandardError=inherit

            """
        try Files.write(text, to: config + "/systemd/user/" + unit, mode: 0o644, owner: user)
        try await userSystemctl(user: user, runtime: runtime, ["daemon-reload"]).checked("See \(directory)/host-\(index)/systemd.log.")
    }

    /// Runs `systemctl --user ARGS` against the user manager whose runtime directory is `runtime`.
    func userSystemctl(user: OSUser, runtime: String, _ arguments: [String]) async throws -> CommandResult {
        try await CommandRunner(user: nil, defaultTimeout: 30).run(
            "/usr/sbin/runuser",
            [
                "-u", user.name, "--", "/usr/bin/env", "-i", "PATH=" + RemoteShell.remotePath, "XDG_RUNTIME_DIR=" + runtime,
                SystemdUnit.systemctl, "--user",
            ]
                + arguments)
    }

    /// The user manager of host number `index`: a writable cgroup per hierarchy, then `systemd --user` in the
    /// host's namespace, in a mount namespace where /run/systemd/system exists; recorded in the manifest.
    func ensureUserManager(host index: Int, user: OSUser, runtime: String, config: String, manifest: inout LabManifest) async throws {
        let what = "systemd --user \(hosts[index])"
        if manifest.processes.contains(where: {
            $0.what == what && ProcessIdentity.matches(pid: $0.pid, startTime: $0.startTime, tolerance: 0.01)
        }) {
            return
        }
        var cgroups: [String] = []
        for hierarchy in Self.cgroupHierarchies {
            let cgroup = hierarchy + "/failoverd-lab-\(id)-\(index)"
            if manifest.cgroups?.contains(cgroup) != true {
                manifest.cgroups = (manifest.cgroups ?? []) + [cgroup]
                try manifest.save(for: plan, in: stateDirectory)
            }
            if mkdir(cgroup, 0o755) != 0 && errno != EEXIST {
                throw FailoverError.failed("lab: cannot create cgroup \(cgroup): \(String(cString: strerror(errno)))")
            }
            try await root("/bin/chown", ["-R", user.name, cgroup])
            cgroups.append(cgroup)
        }
        guard !cgroups.isEmpty else { throw FailoverError.failed("lab: no cgroup hierarchy under /sys/fs/cgroup for a user manager") }
        let log = directory + "/host-\(index)/systemd.log"
        _ = try Files.makeDirectory(directory + "/host-\(index)", mode: 0o700, owner: nil)
        let script = #"""
            u="$1"; rt="$2"; cfg="$3"; shift 3
            [ -d /run/systemd ] || mkdir -p /run/systemd
            mount -t tmpfs -o mode=0755 failoverd-lab /run/systemd && mkdir /run/systemd/system || exit 1
            for c; do echo $$ > "$c/cgroup.procs" || exit 1; done
            exec /usr/sbin/runuser -u "$u" -- /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME=/ \
              XDG_RUNTIME_DIR="$rt" XDG_CONFIG_HOME="$cfg" /lib/systemd/systemd --user
            """#
        let argv =
            // nsenter, not `ip netns exec`: that one mounts a fresh /sys, which hides the cgroup hierarchies.
            [
                "/usr/bin/nsenter", "--net=/run/netns/" + namespace(index), "--", "/usr/bin/unshare", "--mount", "--propagation", "private",
                "--", "/bin/sh", "-c", script, "lab-systemd", user.name, runtime, config,
            ] + cgroups
        let identity = try await SandboxDaemon.launch(
            argv, name: "lab: the user manager of \(hosts[index])", logFile: log, runner: CommandRunner(user: nil, defaultTimeout: 30))
        let pid = identity.pid
        manifest.processes.append(LabProcess(pid: pid, startTime: identity.startTime, what: what))
        try manifest.save(for: plan, in: stateDirectory)
        _ = try await Poll.until("the user manager of \(hosts[index]) to answer", timeout: 20, interval: 0.05, advice: "See \(log).") {
            () -> Bool? in
            guard ProcessIdentity.matches(pid: pid, startTime: identity.startTime, tolerance: 0.01) else {
                throw Poll.Abort(error: FailoverError.failed("lab: the user manager of \(hosts[index]) exited; see \(log)"))
            }
            return try await userSystemctl(user: user, runtime: runtime, ["show", "-p", "Version", "--value"]).succeeded ? true : nil
        }
    }

    /// Stops the systemd units of `plan`'s instances on running user managers (`systemctl --user stop`), so
    /// that no `Restart=` brings a server back while its topology is taken down; on the given `hosts` only,
    /// when given. Best effort.
    public func stopUnits(of plan: Plan, hosts: Set<String>? = nil) async {
        guard let user = try? OSUser.postgresUser(for: plan) else { return }
        for (_, instance) in plan.allInstances where hosts?.contains(instance.host) ?? true {
            guard let service = instance.service, service.isSystemd, service.isUserScope, let unit = service.unit,
                let runtime = service.runtimeDirectory, Files.exists(runtime + "/systemd/private")
            else { continue }
            _ = try? await userSystemctl(user: user, runtime: runtime, ["stop", unit])
        }
    }

    /// Removes the lab's cgroups, deepest first (their processes are gone by then).
    func removeCgroups(_ cgroups: [String]) -> [String] {
        var problems: [String] = []
        for cgroup in cgroups where Files.exists(cgroup) {
            var dirs: [String] = []
            if let walker = FileManager.default.enumerator(atPath: cgroup) {
                for case let entry as String in walker {
                    var isDirectory: ObjCBool = false
                    if FileManager.default.fileExists(atPath: cgroup + "/" + entry, isDirectory: &isDirectory), isDirectory.boolValue {
                        dirs.append(cgroup + "/" + entry)
                    }
                }
            }
            for dir in dirs.sorted(by: { $0.count > $1.count }) + [cgroup] where rmdir(dir) != 0 && errno != ENOENT {
                problems.append("rmdir \(dir): \(String(cString: strerror(errno)))")
            }
        }
        return problems
    }
}
