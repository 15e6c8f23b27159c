import Foundation
import Logging

/// What ``Sandbox/status()`` sees of one instance.
public struct SandboxInstanceStatus: Sendable, Equatable, CustomStringConvertible {
    /// The site's name.
    public var site: String
    /// The instance's name.
    public var instance: String
    /// A postmaster runs for its data directory.
    public var running: Bool
    /// The postmaster's pid.
    public var pid: Int32?
    /// What the server says it is: `primary`, `standby`, `unreachable` (running, not answering) or `stopped`.
    public var role: String
    /// The instance's full probe.
    public var status: InstanceStatus

    /// One line: `site/instance: role pid … timeline … LSNs … walreceiver …`.
    public var description: String {
        var text = "\(site)/\(instance): \(role)"
        if let pid { text += " pid \(pid)" }
        if status.reachable { text += " timeline \(status.timeline)" }
        if let lsn = status.currentLSN { text += " current \(lsn)" }
        if let lsn = status.receiveLSN { text += " receive \(lsn)" }
        if let lsn = status.replayLSN { text += " replay \(lsn)" }
        if let r = status.walReceiver {
            text += " walreceiver \(r.status) from \(r.upstreamHost ?? "?"):\(r.upstreamPort.map(String.init) ?? "?")"
        }
        return text
    }
}

/// Builds a plan's starting topology from nothing on this host, reports on it, and takes it down again.
///
/// `up()` creates (as root) the unprivileged OS user, a pgBackRest configuration and repository, the
/// passfile with generated passwords, initdb's the primary site's leader with archiving through pgBackRest,
/// creates the least-privilege replication and rewind roles, takes a full backup, and restores every other
/// instance as a standby per its site's declared role. It detects what already exists and runs, so running
/// it twice is harmless. `down()` stops the postmasters of the data directories it built, each identified by
/// pid, start time and data directory, and removes exactly what `up()` created (listed in a manifest in
/// failoverd's own state directory, ``SandboxManifest``). For disposable hosts and test directories only.
public struct Sandbox: Sendable {
    /// The plan whose starting topology the sandbox builds.
    public let plan: Plan
    /// failoverd's state directory, where the sandbox's manifest lives (root-owned, 0700).
    public let stateDirectory: String
    /// PostgreSQL's bin directory, or nil for the driver's default.
    public let binDirectory: String?
    let logger: Logger
    /// Starts an instance in place of the local driver (the lab starts servers on their hosts over SSH);
    /// nil starts them on this host. With a starter, sites of driver `ssh` are built too.
    public var starter: (@Sendable (Instance) async throws -> Void)? = nil
    /// Who may connect over TCP in pg_hba.conf: `samehost` (every instance on this host), or the lab's network.
    public var clientAddresses = "samehost"
    /// The plan file as the user named it, for the commands a refusal names (`PLAN` when nil).
    public var planPath: String?

    /// Creates a sandbox for `plan` whose manifest lives in `stateDirectory`.
    public init(plan: Plan, stateDirectory: String, binDirectory: String? = nil, logger: Logger = Logger(label: "failoverd.sandbox")) {
        self.plan = plan
        self.stateDirectory = stateDirectory
        self.binDirectory = binDirectory
        self.logger = logger
    }

    /// Where this sandbox's manifest lives.
    public var manifestPath: String { SandboxManifest.path(for: plan, in: stateDirectory) }

    /// True when `up()` built (part of) this plan's sandbox on this host: its manifest exists.
    public var exists: Bool { Files.exists(manifestPath) }

    /// Builds (or completes, or restarts) the plan's starting topology.
    ///
    /// Refuses (exit 3), before anything is built, a sandbox of this plan that another state directory built
    /// and that still runs (naming it and the `sandbox down` that removes it), a plan whose data directories
    /// already hold something this state directory's manifest does not list, and a port the sandbox would
    /// listen on that something else holds: a sandbox starts from nothing, and must never take over servers
    /// that are not its own. With its own manifest here, it completes and restarts what that lists.
    public func up() async throws {
        if !exists {
            if let running = running() {
                let path = planPath ?? "PLAN"
                throw running.refusal(
                    "sandbox up", planPath: path,
                    reuse: "drill it as it is with `failoverd drill \(RunningTopology.word(path)) --reuse`.")
            }
            for (_, instance) in plan.allInstances {
                if let entries = try? FileManager.default.contentsOfDirectory(atPath: instance.dataDirectory), !entries.isEmpty {
                    let builder = builderStateDirectory().map {
                        " It was built by `failoverd sandbox up --state \(RunningTopology.word($0))`: `\(RunningTopology(kind: .sandbox, plan: plan.name, stateDirectory: $0, evidence: []).downCommand(planPath: planPath ?? "PLAN"))` removes it."
                    }
                    throw FailoverError.refused(
                        "sandbox up: \(instance.dataDirectory) (instance \(instance.name)) is not empty and was not built by `failoverd sandbox up` with state directory \(stateDirectory); the sandbox only builds from nothing.\(builder ?? " Point the plan at fresh directories.")"
                    )
                }
            }
        }
        try refuseTakenPorts()
        let clock = ContinuousClock.now
        let primarySite = try validate()
        let user = try await ensureOSUser()
        let driver = try LocalPostgresDriver(plan: plan, binDirectory: binDirectory, logger: logger)
        var manifest = try SandboxManifest.load(for: plan, in: stateDirectory) ?? SandboxManifest(plan: plan.name, created: [])
        try manifest.save(for: plan, in: stateDirectory)
        let passwords = try prepareFiles(driver: driver, user: user, manifest: &manifest)
        try await checkAccess(driver: driver, user: user)
        try writeBuilderNote(user: user, manifest: &manifest)
        if let endpoint = s3Endpoint(driver) {
            let started = ContinuousClock.now
            try await endpoint.start()
            logger.info(
                "S3 endpoint (moto behind stunnel) on 127.0.0.1:\(endpoint.port) in \(String(format: "%.1f", CommandRunner.seconds(since: started))) s"
            )
        }
        if isPatroni {
            try await upPatroni(primarySite: primarySite, driver: driver, user: user, passwords: passwords, manifest: &manifest)
            logger.info(
                "sandbox up (Patroni)",
                metadata: ["plan": "\(plan.name)", "seconds": "\(String(format: "%.1f", CommandRunner.seconds(since: clock)))"])
            return
        }
        try await bootstrapPrimary(primarySite.leader, driver: driver, user: user, passwords: passwords)
        for follower in primarySite.followers {
            try await ensureStandby(follower, upstream: primarySite.leader, driver: driver)
        }
        for site in plan.sites where site.name != primarySite.name {
            switch site.role {
            case .archiveStandby:
                try await ensureStandby(site.leader, upstream: nil, driver: driver)
            case .streamingStandby:
                try await ensureStandby(site.leader, upstream: primarySite.leader, driver: driver)
            case .none, .primary, .fenced:
                continue
            }
            for follower in site.followers {
                try await ensureStandby(follower, upstream: site.leader, driver: driver)
            }
        }
        logger.info(
            "sandbox up", metadata: ["plan": "\(plan.name)", "seconds": "\(String(format: "%.1f", CommandRunner.seconds(since: clock)))"])
    }

    /// Every instance of the plan: running or not, its pid, the role it reports, and its WAL positions.
    public func status() async throws -> [SandboxInstanceStatus] {
        let driver = try LocalPostgresDriver(plan: plan, binDirectory: binDirectory, logger: logger)
        var result: [SandboxInstanceStatus] = []
        for (site, instance) in plan.allInstances {
            let pid = Postmaster.livePID(in: InstancePaths(instance).dataDirectory)
            let status = try await driver.status(of: instance)
            let role = !status.running ? "stopped" : !status.reachable ? "unreachable" : status.inRecovery ? "standby" : "primary"
            result.append(
                SandboxInstanceStatus(
                    site: site.name, instance: instance.name, running: status.running, pid: pid, role: role, status: status))
        }
        return result
    }

    /// Stops the postmasters of the data directories `up()` created, each only when its pid, start time and
    /// data directory all match (``Postmaster/verifiedPID(in:user:)``), by signals (SIGTERM, then SIGINT, SIGQUIT and SIGKILL,
    /// each after a deadline), then removes what `up()` created. Returns the removed paths.
    ///
    /// Before anything is stopped or removed, refuses a manifest that is missing, not failoverd's own (a
    /// symbolic link, another owner, writable by others) or that lists a path outside the plan's directories.
    /// Each path is checked again as it is removed: no symbolic link is followed, and a link in its place is
    /// refused (``Files/removeTree(_:owner:)``).
    @discardableResult
    public func down() async throws -> [String] {
        guard let manifest = try SandboxManifest.load(for: plan, in: stateDirectory) else {
            throw FailoverError.refused(
                "sandbox down: no sandbox of plan \"\(plan.name)\" in state directory \(stateDirectory) (no manifest \(manifestPath)); `sandbox down` only stops and removes what `sandbox up` built with the same state directory."
            )
        }
        try manifest.checkEntries(within: SandboxManifest.roots(of: plan), manifestPath: manifestPath)
        let user: OSUser? = OSUser.isRoot ? (try? OSUser.postgresUser(for: plan)) : .current
        let built = plan.allInstances.map(\.instance).filter { manifest.created.contains(InstancePaths($0).dataDirectory) }
        // Patroni restarts what is stopped behind it: stop it first, which stops its PostgreSQL fast.
        await downPatroni(
            driver: try? LocalPostgresDriver(plan: plan, binDirectory: binDirectory, logger: logger), user: user, listed: manifest.created)
        await withTaskGroup(of: Void.self) { group in
            for instance in built {
                guard let pid = Postmaster.verifiedPID(in: InstancePaths(instance).dataDirectory, user: user) else {
                    continue
                }
                group.addTask { await Postmaster.shutDown(pid) }
            }
        }
        for instance in built {
            if let pid = Postmaster.verifiedPID(in: InstancePaths(instance).dataDirectory, user: user) {
                throw FailoverError.failed(
                    "sandbox down: postmaster \(pid) of \(instance.name) is still running after SIGKILL; stop it by hand.")
            }
        }
        await endPgBackRestChildren(user: user)
        if let driver = try? LocalPostgresDriver(plan: plan, binDirectory: binDirectory, logger: logger), let endpoint = s3Endpoint(driver),
            manifest.created.contains(endpoint.directory)
        {
            await endpoint.stop()
        }
        var removed: [String] = []
        for path in manifest.created.reversed() where Files.exists(path) {
            // Data directories and the repository: thousands of unlinks, off the cooperative pool.
            try await Blocking.run { try Files.removeTree(path, owner: user) }
            removed.append(path)
        }
        try Files.removeFile(manifestPath, owner: nil)
        logger.info("sandbox down", metadata: ["plan": "\(plan.name)", "removedPaths": "\(removed.count)"])
        return removed
    }

    /// An archive-push or archive-get that PostgreSQL started outlives a postmaster stopped by signals (its
    /// archiver or startup process is gone, the pgBackRest child is not): each gets 10 s to finish, then is
    /// ended, before the directories it writes are removed. Only processes of the sandbox's OS user that
    /// name this plan's pgBackRest configuration file are looked at.
    private func endPgBackRestChildren(user: OSUser?) async {
        guard let user else { return }
        let backrest = PgBackRest(plan: plan)
        let executable = (backrest.executable as NSString).lastPathComponent
        let ended = await ProcessTable.end(grace: 10) {
            ProcessTable.pids(uid: user.uid) { argv in
                argv.first.map { ($0 as NSString).lastPathComponent } == executable && argv.contains("--config=" + backrest.configPath)
            }
        }
        if !ended.isEmpty {
            logger.notice("ended pgBackRest processes still running after their postmasters stopped", metadata: ["pids": "\(ended)"])
        }
    }

    /// Builds the sandbox afresh (taking down one left from before), runs `body`, and takes it down on every
    /// path: for benchmarks that need a topology of their own.
    public func withFresh<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if exists { try await down() }
        try await up()
        do {
            let result = try await body()
            try await down()
            return result
        } catch {
            _ = try? await down()
            throw error
        }
    }

    // MARK: Steps of up

    /// The primary site; refuses plans the sandbox cannot build.
    func validate() throws -> Site {
        guard let primary = plan.declaredPrimary else {
            throw FailoverError.invalid("sandbox: plan \"\(plan.name)\" declares no primary site; declare one site \"role\": \"primary\".")
        }
        for site in plan.sites {
            if site.role == .fenced {
                throw FailoverError.invalid(
                    "sandbox: site \"\(site.name)\" is declared fenced; a sandbox builds a starting topology and cannot make a fenced former primary from nothing. Declare it archive-standby or none."
                )
            }
            switch site.driver {
            case .local: break
            case .patroni where isPatroni: break
            case .ssh where starter != nil: break
            case .patroni, .simulated, .ssh:
                throw FailoverError.invalid(
                    "sandbox: site \"\(site.name)\" uses driver \"\(site.driver)\"; the sandbox builds local sites only.")
            }
            if site.role == .primary && site.name != primary.name {
                throw FailoverError.invalid(
                    "sandbox: sites \"\(primary.name)\" and \"\(site.name)\" are both declared primary; declare one.")
            }
        }
        switch plan.repository.type {
        case "posix": break
        case "s3":
            guard let s3 = plan.repository.s3, plan.repository.config != nil else {
                throw FailoverError.invalid(
                    "sandbox: an s3 repository needs $.repository.s3 and $.repository.config (the sandbox writes its stand-in credentials there)."
                )
            }
            try S3Endpoint.check(s3)
        default:
            throw FailoverError.invalid(
                "sandbox: the sandbox provides a posix repository or a local S3 endpoint; a \(plan.repository.type) repository needs the real service."
            )
        }
        return primary
    }

    /// The OS user that runs PostgreSQL; as root, created with useradd when missing.
    func ensureOSUser() async throws -> OSUser {
        guard OSUser.isRoot else { return .current }
        let name = plan.osUser ?? "failoverd"
        if let user = OSUser.lookup(name) {
            guard user.uid != 0 else {
                throw FailoverError.invalid("sandbox: OS user \"\(name)\" has uid 0; name an unprivileged user in \"osUser\".")
            }
            return user
        }
        let result = try await CommandRunner().run(
            "useradd", ["--system", "--user-group", "--home-dir", "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        // A concurrent `up` may have created it first; what counts is that it exists now.
        if let user = OSUser.lookup(name) {
            if result.succeeded { logger.info("created OS user", metadata: ["user": "\(name)"]) }
            return user
        }
        try result.checked("Create the user by hand, or set \"osUser\" in the plan to an existing unprivileged user.")
        throw FailoverError.failed("sandbox: useradd \(name) succeeded but the user cannot be found")
    }

    /// Fails early, with the path to fix, when the OS user cannot reach the repository, the passfile or a
    /// data directory's parent (a parent directory without search permission for it, say).
    func checkAccess(driver: LocalPostgresDriver, user: OSUser) async throws {
        guard OSUser.isRoot else { return }
        // A posix repository is a directory the OS user writes; an object store's path lives in its bucket.
        var paths = plan.repository.type == "posix" ? [(driver.backrest.repositoryPath, "-w")] : []
        paths += [(plan.replication.passfile, "-r"), (driver.backrest.configPath, "-r")]
        paths += plan.allInstances.map { ((InstancePaths($0.instance).dataDirectory as NSString).deletingLastPathComponent, "-w") }
        for (path, test) in paths {
            let result = try await driver.runner.run("/usr/bin/test", [test, path])
            if !result.succeeded {
                throw FailoverError.invalid(
                    "sandbox: OS user \(user.name) cannot \(test == "-w" ? "write" : "read") \(path). Make every parent directory searchable for it (chmod o+x), or choose paths it can reach."
                )
            }
        }
    }

    /// Restores `instance` as a standby (archive-only when `upstream` is nil) unless it has data, and starts it.
    func ensureStandby(_ instance: Instance, upstream: Instance?, driver: LocalPostgresDriver) async throws {
        if try await !driver.hasData(instance) {
            try await driver.restore(instance, delta: false)
            try await driver.configureRecovery(of: instance, RecoverySettings(upstream: upstream))
        }
        try await start(instance, driver: driver)
    }

    /// Starts `instance` with the ``starter`` when there is one, else with the local driver.
    func start(_ instance: Instance, driver: LocalPostgresDriver) async throws {
        if let starter { try await starter(instance) } else { try await driver.start(instance) }
    }
}
