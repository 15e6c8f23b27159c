import Foundation
import Logging

/// The driver for PostgreSQL 15 servers on this host: pg_ctl, pg_controldata, pg_rewind, pgBackRest and libpq.
///
/// Every server runs as the plan's unprivileged OS user (``OSUser/postgresUser(for:)``); when failoverd runs
/// as root, commands switch to that user. Ports, listen address and socket directory are passed with
/// `pg_ctl -o` and never written to postgresql.conf, because pg_rewind and backups copy configuration files
/// between instances. Standby settings live in a file failoverd owns (``InstancePaths/recoveryFile``).
/// failoverd connects as the plan's admin role over TCP; passwords come from the plan's libpq passfile.
public struct LocalPostgresDriver: InstanceDriver {
    /// The plan whose repository, roles, passfile and policy this driver uses.
    public let plan: Plan
    /// The directory holding pg_ctl, pg_controldata, pg_rewind and initdb.
    public let binDirectory: String
    /// The OS user that runs PostgreSQL.
    public let osUser: OSUser
    /// How pgBackRest is called.
    public let backrest: PgBackRest
    /// Runs commands as ``osUser``.
    let runner: CommandRunner
    let logger: Logger

    /// Creates a driver for `plan`.
    ///
    /// - Parameter binDirectory: PostgreSQL's bin directory; default from `pg_config --bindir`, else
    ///   /usr/lib/postgresql/15/bin.
    /// - Throws: ``FailoverError`` when the binaries, pgbackrest or the OS user are missing.
    public init(plan: Plan, binDirectory: String? = nil, logger: Logger = Logger(label: "failoverd.local-driver")) throws {
        // Liveness, fencing and the two-primaries check read postmaster.pid and signal pids: they mean
        // something only for servers on this host. A remote server would look stopped while taking writes.
        for (site, instance) in plan.allInstances where site.driver == .local && !LocalHost.isLocal(instance.host) {
            throw FailoverError.invalid(
                "site \"\(site.name)\": instance \(instance.name) is on \(instance.host), which is not this host; the local driver manages servers on this host only (use a loopback address or one of this host's addresses)."
            )
        }
        let bin = binDirectory ?? Self.defaultBinDirectory()
        guard FileManager.default.isExecutableFile(atPath: bin + "/pg_ctl") else {
            throw FailoverError.invalid(
                "PostgreSQL binaries not found in \(bin) (no pg_ctl): install PostgreSQL 15 (apt-get install postgresql-15) or pass its bin directory."
            )
        }
        self.plan = plan
        self.binDirectory = bin
        self.osUser = try OSUser.postgresUser(for: plan)
        self.backrest = PgBackRest(plan: plan, executable: try CommandRunner.resolve("pgbackrest"))
        self.runner = CommandRunner(
            user: osUser, defaultTimeout: max(plan.policy.stepTimeoutSeconds, 10), forwardsRepositoryEnvironment: true)
        self.logger = logger
    }

    /// `pg_config --bindir` when it names a directory with pg_ctl, else /usr/lib/postgresql/15/bin.
    public static func defaultBinDirectory() -> String {
        let fallback = "/usr/lib/postgresql/15/bin"
        guard let pgConfig = try? CommandRunner.resolve("pg_config") else { return fallback }
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: pgConfig)
        process.arguments = ["--bindir"]
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return fallback }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let dir = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 && FileManager.default.isExecutableFile(atPath: dir + "/pg_ctl") ? dir : fallback
    }

    /// How long one operation may wait for its condition (policy.stepTimeoutSeconds).
    var timeout: Double { max(plan.policy.stepTimeoutSeconds, 1) }
    /// The safety limit for bulk copies (restore, pg_rewind): they take as long as the data needs, so
    /// policy.stepTimeoutSeconds, which bounds waits, does not bound them.
    var bulkTimeout: Double { max(timeout, 6 * 3600) }

    func bin(_ tool: String) -> String { binDirectory + "/" + tool }

    // MARK: Connections

    /// How failoverd connects to `instance` (``Plan/adminConnInfo(_:)``).
    public func adminConnInfo(_ instance: Instance) -> ConnInfo { plan.adminConnInfo(instance) }

    /// primary_conninfo for `instance` streaming from `upstream` (``Plan/replicationConnInfo(from:for:)``).
    public func replicationConnInfo(from upstream: Instance, for instance: Instance) -> ConnInfo {
        plan.replicationConnInfo(from: upstream, for: instance)
    }

    /// pg_rewind's --source-server (``Plan/rewindConnInfo(_:)``).
    public func rewindConnInfo(_ source: Instance) -> ConnInfo { plan.rewindConnInfo(source) }

    /// Runs `body` on a fresh admin connection to `instance`, closed on every path.
    public func withConnection<T: Sendable>(_ instance: Instance, _ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T
    {
        try await PGConnection.with(adminConnInfo(instance), body)
    }

    // MARK: InstanceDriver

    /// Probes `instance` over SQL; ``InstanceStatus/stopped`` when no postmaster runs for its data directory.
    ///
    /// A server that runs but does not answer (starting, shutting down, hung, out of connections) is
    /// reported running and unreachable with the reason: its recovery state is unknown, and no gate takes
    /// standby.signal as proof that it cannot write. A refused login is an error, not "unreachable".
    public func status(of instance: Instance) async throws -> InstanceStatus {
        let paths = InstancePaths(instance)
        guard Postmaster.livePID(in: paths.dataDirectory) != nil else { return .stopped }
        do {
            return try await withConnection(instance) { try StatusProbe.run($0) }
        } catch let error as PGError where error.isConnectionFailure && !Self.isLoginRefusal(error) {
            var status = InstanceStatus.stopped
            status.running = true
            status.unreachableReason = error.message.split(separator: "\n").first.map(String.init) ?? "no answer"
            return status
        }
    }

    /// Reads pg_controldata (run as the OS user); nil when the data directory holds no cluster.
    public func controlData(of instance: Instance) async throws -> ControlData? {
        guard try await hasData(instance) else { return nil }
        let dir = InstancePaths(instance).dataDirectory
        let result = try await runner.run(bin("pg_controldata"), ["-D", dir]).checked()
        guard let data = ControlData.parse(result.stdout) else {
            throw FailoverError.failed("pg_controldata -D \(dir) printed no usable control data; is \(dir) a PostgreSQL 15 data directory?")
        }
        return data
    }

    /// Starts the server with `pg_ctl start -w` and waits until it accepts connections.
    ///
    /// Does nothing but wait when it already runs. Refuses (``FailoverError/Code/refused``) when the instance
    /// carries a fence marker and no standby.signal: a fenced former primary never starts as a primary.
    public func start(_ instance: Instance) async throws {
        let paths = InstancePaths(instance)
        guard try await hasData(instance) else {
            throw FailoverError.failed(
                "cannot start \(instance.name): \(paths.dataDirectory) holds no cluster (no PG_VERSION). Restore it first (bootstrap-standby or rebuild)."
            )
        }
        if Postmaster.livePID(in: paths.dataDirectory) == nil {
            if hasFenceMarker(instance) && !Files.exists(paths.standbySignal) {
                throw FailoverError.refused(
                    "\(instance.name) is fenced (\(paths.fenceMarker)) and \(paths.dataDirectory) has no standby.signal: failoverd will not start it as a primary. Repair it with rewind or rebuild, which make it a standby."
                )
            }
            try Files.makeDirectory(paths.stateDirectory, owner: osUser)
            let options = [
                "-p", String(instance.port), "-k", paths.socketDirectory, "-h", instance.host, "-c", "cluster_name=" + instance.name,
            ].map(PgBackRest.shellWord).joined(separator: " ")
            let clock = ContinuousClock.now
            let result = try await runner.run(
                bin("pg_ctl"),
                ["start", "-D", paths.dataDirectory, "-l", paths.logFile, "-w", "-t", String(Int(timeout)), "-s", "-o", options],
                timeout: timeout + 15)
            if !result.succeeded && Postmaster.livePID(in: paths.dataDirectory) == nil {
                throw FailoverError.failed(
                    "could not start \(instance.name) (\(paths.dataDirectory), port \(instance.port)): \(result.outputTail); server log \(paths.logFile): \(Files.tail(paths.logFile)). Fix the cause shown in the log and retry."
                )
            }
            logger.info(
                "started",
                metadata: ["instance": "\(instance.name)", "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))"])
        }
        try await waitUntilAcceptingConnections(instance)
    }

    /// Stops the server with `pg_ctl stop -m fast|immediate`; nothing to do when it is not running.
    ///
    /// pg_ctl only sends the signal (`-W`); the wait is for the postmaster's own pid to be gone, checked every
    /// 5 ms (pg_ctl's `-w` looks every 100 ms, which a switchover's write outage would pay).
    public func stop(_ instance: Instance, mode: StopMode) async throws {
        let paths = InstancePaths(instance)
        guard let pid = Postmaster.livePID(in: paths.dataDirectory) else { return }
        let result = try await runner.run(
            bin("pg_ctl"), ["stop", "-D", paths.dataDirectory, "-m", mode.rawValue, "-W", "-s"], timeout: timeout + 15)
        if !(await Postmaster.waitForExit(pid, seconds: result.succeeded ? timeout : 1)) {
            throw FailoverError.failed(
                "could not stop \(instance.name) (postmaster \(pid), mode \(mode.rawValue)): \(result.outputTail). Try mode immediate, or look at \(paths.logFile)."
            )
        }
        logger.info(
            "stopped",
            metadata: ["instance": "\(instance.name)", "mode": "\(mode.rawValue)", "seconds": "\(String(format: "%.2f", result.seconds))"])
    }

    /// Promotes a running standby (`pg_ctl promote`), waits until it leaves recovery, and clears its fence marker.
    ///
    /// pg_ctl only asks for the promotion (`-W`); the wait is ``PromotionWait``'s, so the promotion is seen
    /// within milliseconds rather than at pg_ctl's next 100 ms step.
    public func promote(_ instance: Instance) async throws {
        let before = try await status(of: instance)
        guard before.running else {
            throw FailoverError.failed("cannot promote \(instance.name): it is not running. Start it as a standby first.")
        }
        if !(before.reachable && !before.inRecovery) {
            let asked = try await runner.run(
                bin("pg_ctl"), ["promote", "-D", InstancePaths(instance).dataDirectory, "-W", "-s"], timeout: timeout + 15)
            // pg_ctl refuses a server that left recovery meanwhile (a promotion asked before a crash of failoverd
            // finishing now): that one counts, as long as the server says so itself.
            let logFile = InstancePaths(instance).logFile
            if !asked.succeeded, await !PromotionWait.finished(adminConnInfo(instance)) {
                try asked.checked("Is \(instance.name) a standby? See \(logFile).")
            }
            try await PromotionWait.wait(for: instance.name, adminConnInfo(instance), timeout: timeout, advice: "See \(logFile).")
        }
        // Promotion is the decision that this instance is the primary: a fence marker from an earlier
        // failover must not keep it from restarting as one.
        try clearFenceMarker(instance)
    }

    /// Runs CHECKPOINT.
    public func checkpoint(_ instance: Instance) async throws {
        try await withConnection(instance) { _ = try $0.query("CHECKPOINT") }
    }

    /// Runs pg_switch_wal() and returns the segment it closed (pg_walfile_name of the switch point).
    public func switchWAL(_ instance: Instance) async throws -> String {
        let segment = try await withConnection(instance) { try $0.scalar("SELECT pg_walfile_name(pg_switch_wal())") }
        guard let segment else { throw FailoverError.failed("pg_switch_wal() on \(instance.name) returned no segment") }
        return segment
    }

    /// Commits a transaction that is assigned an xid (so it writes a commit record) and returns pg_current_wal_lsn().
    ///
    /// synchronous_commit is `local` for this transaction only, so a probe never waits on a synchronous standby.
    public func writeProbe(_ instance: Instance) async throws -> LSN {
        try await PGConnection.writeProbe(adminConnInfo(instance), instance: instance.name)
    }

    /// True when the data directory holds PG_VERSION.
    public func hasData(_ instance: Instance) async throws -> Bool {
        Files.exists(InstancePaths(instance).pgVersion)
    }

    // MARK: Helpers

    /// Waits until `instance` answers `SELECT 1`; fails at once if its postmaster dies.
    func waitUntilAcceptingConnections(_ instance: Instance) async throws {
        let paths = InstancePaths(instance)
        _ = try await Poll.until(
            "\(instance.name) to accept connections on \(instance.host):\(instance.port)", timeout: timeout, interval: 0.02,
            advice: "See \(paths.logFile)."
        ) { () -> Bool? in
            guard Postmaster.livePID(in: paths.dataDirectory) != nil else {
                throw Poll.Abort(
                    error: FailoverError.failed(
                        "\(instance.name) exited while starting; server log \(paths.logFile): \(Files.tail(paths.logFile))"))
            }
            do {
                _ = try await withConnection(instance) { try $0.scalar("SELECT 1") }
            } catch let error as PGError where Self.isLoginRefusal(error) {
                throw Poll.Abort(error: error)
            }
            return true
        }
    }

    /// A refused login (bad password, no pg_hba entry, no passfile) will not cure itself by waiting.
    static func isLoginRefusal(_ error: PGError) -> Bool {
        let text = error.message.lowercased()
        return ["authentication failed", "no pg_hba.conf entry", "password", "role \""].contains { text.contains($0) }
    }
}
