import Foundation
import Logging

/// The driver for PostgreSQL 15 servers: pg_ctl (or pg_ctlcluster, or a systemd unit), pg_controldata,
/// pg_rewind, pgBackRest and libpq, written once over a ``HostTransport``: ``LocalHost`` for this host
/// (``LocalPostgresDriver``), ``SSHHost`` for hosts reached over OpenSSH (``SSHPostgresDriver``).
///
/// Every server runs as the plan's unprivileged OS user; every command and file of an instance goes through
/// the transport as that user. Ports, listen address and socket directory are passed with `pg_ctl -o` (or
/// live in a Debian cluster's own configuration directory) and never in the data directory, because
/// pg_rewind and backups copy configuration files between instances. Standby settings live in a file
/// failoverd owns (``ServerPaths/recoveryFile``). SQL goes over libpq straight to the instance's host and
/// port, as the plan's admin role, passwords from the plan's libpq passfile.
///
/// Fail closed: a server the transport cannot see is never "stopped". ``status(of:)`` reports it running
/// and unreachable, with the reason, unless SQL proves what it is.
public struct PostgresInstanceDriver<Host: HostTransport>: InstanceDriver {
    /// The plan whose repository, roles, passfile and policy this driver uses.
    public let plan: Plan
    /// How commands and files reach the instances' hosts.
    public let transport: Host
    /// The directory holding pg_ctl, pg_controldata, pg_rewind and pg_waldump on the hosts.
    public let binDirectory: String
    /// How pgBackRest is called on the hosts.
    public let backrest: PgBackRest
    let logger: Logger

    /// A driver for `plan` over `transport`.
    ///
    /// - Throws: ``FailoverError`` (invalid) when an instance of a site this transport reaches is started by a
    ///   service manager without its settings.
    public init(plan: Plan, transport: Host, binDirectory: String, backrest: PgBackRest, logger: Logger) throws {
        for (site, instance) in plan.allInstances where site.driver == Host.driverKind {
            if let service = instance.service, service.manager != "pg_ctl" && !service.isPgCtlCluster && !service.isSystemd {
                throw FailoverError.invalid(
                    "site \"\(site.name)\": instance \(instance.name) is started by \(service.manager) without its settings; this failoverd starts servers with pg_ctl, pg_ctlcluster VERSION CLUSTER or a systemd unit."
                )
            }
        }
        self.plan = plan
        self.transport = transport
        self.binDirectory = binDirectory
        self.backrest = backrest
        self.logger = logger
    }

    /// How long one operation may wait for its condition (policy.stepTimeoutSeconds).
    var timeout: Double { max(plan.policy.stepTimeoutSeconds, 1) }
    /// The safety limit for bulk copies (restore, pg_rewind): they take as long as the data needs, so
    /// policy.stepTimeoutSeconds, which bounds waits, does not bound them.
    var bulkTimeout: Double { max(timeout, 6 * 3600) }

    /// The path of PostgreSQL's program `tool` (`pg_ctl`) on this host.
    @_spi(Benchmarks) public func bin(_ tool: String) -> String { binDirectory + "/" + tool }

    /// Where `instance`'s files live on its host: as its service lays them out where services apply
    /// (``HostTransport/startsServices``), else pg_ctl's layout (the configuration in the data directory).
    func paths(_ instance: Instance) -> ServerPaths { ServerPaths(instance, service: Host.startsServices) }

    /// ` on HOST` for messages about `instance` (empty on this host).
    func on(_ instance: Instance) -> String { transport.onHost(instance) }

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

    // MARK: Status

    /// Probes `instance` over SQL; ``InstanceStatus/stopped`` only when its host proves no postmaster runs
    /// for its data directory.
    ///
    /// A server that runs but does not answer (starting, shutting down, hung, out of connections), and one
    /// whose host cannot tell, are reported running and unreachable with the reason: their recovery state is
    /// unknown, and no gate takes standby.signal as proof that they cannot write. A refused login is an error.
    ///
    /// Where the host's answer is free (this host's /proc) it is asked first. Where it costs a round trip, SQL
    /// goes first (an answer proves the server runs); when SQL has not answered within ``hedgeDelay`` the host
    /// is asked alongside, so a host that answers neither (cut off) costs one timeout, not two in a row.
    public func status(of instance: Instance) async throws -> InstanceStatus {
        let dataDirectory = paths(instance).dataDirectory
        if transport.postmasterCheck == .free {
            let seen = await transport.postmaster(of: dataDirectory, on: instance)
            if seen == .stopped { return .stopped }
            do {
                return try await sqlStatus(instance)
            } catch let failure as SQLUnanswered {
                return Self.unanswered(seen, sql: failure.reason)
            }
        }
        let once = ClaimOnce()
        let hedge = Task { () -> PostmasterState? in
            do { try await Task.sleep(for: Self.hedgeDelay) } catch { return nil }
            return once.claim() ? await transport.postmaster(of: dataDirectory, on: instance) : nil
        }
        let sqlFailure: String
        do {
            let status = try await sqlStatus(instance)
            hedge.cancel()
            return status
        } catch let failure as SQLUnanswered {
            sqlFailure = failure.reason
        } catch {
            hedge.cancel()
            throw error
        }
        // SQL failed: the host's answer that already started, else one now (a stopped server refuses at once).
        let seen: PostmasterState
        if once.claim() {
            hedge.cancel()
            seen = await transport.postmaster(of: dataDirectory, on: instance)
        } else if let hedged = await hedge.value {
            seen = hedged
        } else {
            seen = await transport.postmaster(of: dataDirectory, on: instance)
        }
        return Self.unanswered(seen, sql: sqlFailure)
    }

    /// How long SQL may take before ``status(of:)`` asks the host as well, where that costs a round trip.
    static var hedgeDelay: Duration { .milliseconds(250) }

    /// The status probe over SQL; ``SQLUnanswered`` when the server cannot be reached (a refused login is
    /// thrown as it is: it will not cure itself).
    func sqlStatus(_ instance: Instance) async throws -> InstanceStatus {
        do {
            return try await withConnection(instance) { try StatusProbe.run($0) }
        } catch let error as PGError where error.isConnectionFailure && !error.isLoginRefusal {
            throw SQLUnanswered(reason: error.message.split(separator: "\n").first.map(String.init) ?? "no answer")
        }
    }

    /// What a server that does not answer SQL is, by what its host says of its postmaster.
    static func unanswered(_ seen: PostmasterState, sql reason: String) -> InstanceStatus {
        var status = InstanceStatus.stopped
        switch seen {
        case .stopped: return .stopped
        case .running:
            status.running = true
            status.unreachableReason = reason
        case .unknown(let why):
            status.running = true
            status.unreachableReason = "\(why) and SQL does not answer (\(reason))"
        }
        return status
    }

    /// Whether a postmaster runs for `instance`'s data directory: true or false, or throws when its host
    /// cannot tell (unknown is never "stopped").
    func postmasterRuns(_ instance: Instance) async throws -> Bool {
        switch await transport.postmaster(of: paths(instance).dataDirectory, on: instance) {
        case .running: return true
        case .stopped: return false
        case .unknown(let why):
            throw FailoverError.failed("cannot tell whether \(instance.name)'s postmaster runs: \(why).")
        }
    }

    /// Reads pg_controldata (run as the OS user); nil when the data directory holds no cluster.
    public func controlData(of instance: Instance) async throws -> ControlData? {
        let dir = paths(instance).dataDirectory
        let r = try await transport.run([bin("pg_controldata"), "-D", dir], on: instance)
        if r.succeeded, let data = ControlData.parse(r.stdout) { return data }
        if r.unreachable { try r.checked() }
        // Asked only when pg_controldata could not read it: one round trip on the way that counts.
        guard try await hasData(instance) else { return nil }
        try r.checked()
        throw FailoverError.failed(
            "pg_controldata -D \(dir)\(on(instance)) printed no usable control data; is \(dir) a PostgreSQL 15 data directory?")
    }

    /// True when the data directory holds PG_VERSION; throws when its host cannot tell.
    public func hasData(_ instance: Instance) async throws -> Bool {
        try await transport.exists(paths(instance).pgVersion, on: instance)
    }

    /// The last lines of the instance's server log, for messages.
    func logTail(_ instance: Instance) async -> String {
        let r = try? await transport.run(["tail", "-n", "8", "--", paths(instance).logFile], on: instance)
        guard let r, r.succeeded else { return "(log unreadable)" }
        return r.stdout.split(separator: "\n").joined(separator: " | ")
    }

    // MARK: Promotion and SQL

    /// Promotes a running standby (`pg_ctl promote`), waits until it leaves recovery, and clears its fence marker.
    ///
    /// pg_ctl only asks for the promotion (`-W`); the wait is ``PromotionWait``'s, over SQL every 5 ms, so the
    /// promotion is seen within milliseconds rather than at pg_ctl's next 100 ms step. The fence marker is
    /// cleared only once the server itself says it left recovery.
    public func promote(_ instance: Instance) async throws {
        let before = try await status(of: instance)
        guard before.running else {
            throw FailoverError.failed("cannot promote \(instance.name): it is not running. Start it as a standby first.")
        }
        if !(before.reachable && !before.inRecovery) {
            let paths = paths(instance)
            let hint = "Is \(instance.name) a standby? See \(paths.logFile)\(on(instance))."
            let asked = try await transport.run(
                [bin("pg_ctl"), "promote", "-D", paths.dataDirectory, "-W", "-s"], on: instance, timeout: timeout + 15)
            // A refusal or an unknown outcome (the host cut off mid-command) stands unless the server itself
            // answers that it left recovery: a promotion asked before a crash of failoverd, finishing now.
            if !asked.succeeded, await !PromotionWait.finished(adminConnInfo(instance)) { try asked.checked(hint) }
            try await PromotionWait.wait(for: instance.name, adminConnInfo(instance), timeout: timeout, advice: hint)
        }
        // Promotion is the decision that this instance is the primary: a fence marker from an earlier
        // failover must not keep it from restarting as one.
        try await clearFenceMarker(instance)
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

    /// The end of the valid WAL in a stopped instance's pg_wal, found by reading it with pg_waldump from the
    /// last checkpoint's REDO location; nil when it cannot be read.
    ///
    /// A primary that died has no SQL left to ask, and pg_control only knows its last checkpoint: reading
    /// the WAL itself tells how far it really got, which is what a failover may lose.
    public func endOfWAL(_ instance: Instance) async throws -> LSN? {
        guard let control = try await controlData(of: instance) else { return nil }
        let r = try await transport.run(
            [
                bin("pg_waldump"), "--path", paths(instance).dataDirectory + "/pg_wal", "--timeline", String(control.timeline),
                "--start", control.redoLSN.description, "--quiet",
            ], on: instance)
        if r.unreachable { try r.checked() }
        // pg_waldump stops at the first invalid record: "error in WAL record at X/Y: invalid record length at A/B…".
        // The highest location it names is where valid WAL ends.
        let text = r.stderr + r.stdout
        let found = text.matches(of: try Regex("[0-9A-F]+/[0-9A-F]+")).compactMap { LSN(String(text[$0.range])) }
        return found.max() ?? (r.succeeded ? nil : control.checkpointLSN)
    }
}

/// SQL did not answer: the server is not reachable (why), as opposed to a query's or a login's error.
struct SQLUnanswered: Error {
    /// The first line of libpq's message.
    var reason: String
}

/// A flag that one of two racers takes.
final class ClaimOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false

    /// True for the first caller only.
    func claim() -> Bool {
        lock.withLock {
            defer { taken = true }
            return !taken
        }
    }
}

extension PGError {
    /// A refused login (bad password, no pg_hba entry, no passfile) will not cure itself by waiting.
    var isLoginRefusal: Bool {
        let text = message.lowercased()
        return ["authentication failed", "no pg_hba.conf entry", "password", "role \""].contains { text.contains($0) }
    }
}
