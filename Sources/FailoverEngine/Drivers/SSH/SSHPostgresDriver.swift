import Foundation
import Logging

/// The driver for PostgreSQL 15 servers on other hosts, reached over OpenSSH: the PostgreSQL-level
/// operations of ``LocalPostgresDriver`` (pg_ctl, pg_controldata, pg_rewind, pgBackRest), run on each
/// instance's host as the plan's OS user through ``RemoteShell``; SQL goes over libpq straight to the
/// instance's host and port with the plan's passfile.
///
/// Fail closed: a host that SSH cannot reach is never "stopped". ``status(of:)`` reports it running and
/// unreachable, with the reason, unless SQL proves what it is.
public struct SSHPostgresDriver: InstanceDriver {
    /// The plan.
    public let plan: Plan
    /// PostgreSQL's bin directory on the hosts.
    public let binDirectory: String
    /// How pgBackRest is called on the hosts (the repository is shared, as an NFS mount or an object store).
    public let backrest: PgBackRest
    /// The OS user that runs PostgreSQL on the hosts.
    public let osUser: String
    /// Where the ControlMaster sockets live.
    public let controlDirectory: String
    let logger: Logger

    /// A driver for `plan`'s ssh sites, its multiplexed connections kept in `stateDirectory`'s control directory.
    public init(
        plan: Plan, stateDirectory: String, binDirectory: String = "/usr/lib/postgresql/15/bin",
        logger: Logger = Logger(label: "failoverd.ssh-driver")
    ) throws {
        for site in plan.sites where site.driver == .ssh && site.ssh == nil {
            throw FailoverError.invalid(
                "site \"\(site.name)\": driver ssh needs its \"ssh\" settings (user, identityFile, knownHostsFile).")
        }
        for (site, instance) in plan.allInstances where site.driver == .ssh {
            if let service = instance.service, service.manager != "pg_ctl" && !service.isPgCtlCluster && !service.isSystemd {
                throw FailoverError.invalid(
                    "site \"\(site.name)\": instance \(instance.name) is started by \(service.manager) without its settings; this failoverd's ssh driver starts servers with pg_ctl, pg_ctlcluster VERSION CLUSTER or a systemd unit."
                )
            }
        }
        self.plan = plan
        self.binDirectory = binDirectory
        self.backrest = PgBackRest(plan: plan, executable: "/usr/bin/pgbackrest")
        self.osUser = plan.osUser ?? "failoverd"
        // Created at the first command (RemoteShell.ensureControlDirectory), not by merely building a driver.
        self.controlDirectory = try RemoteShell.controlDirectoryPath(for: stateDirectory)
        self.logger = logger
    }

    var timeout: Double { max(plan.policy.stepTimeoutSeconds, 1) }
    var bulkTimeout: Double { max(timeout, 6 * 3600) }
    func bin(_ tool: String) -> String { binDirectory + "/" + tool }

    /// The site `instance` belongs to.
    func site(of instance: Instance) throws -> Site {
        guard let site = plan.allInstances.first(where: { $0.instance.name == instance.name })?.site else {
            throw FailoverError.invalid("instance \(instance.name) is not in plan \"\(plan.name)\"")
        }
        return site
    }

    /// The shell on `instance`'s host.
    public func shell(_ instance: Instance) throws -> RemoteShell {
        let site = try site(of: instance)
        guard let ssh = site.ssh else {
            throw FailoverError.invalid("site \"\(site.name)\" has no ssh settings; the ssh driver reaches only ssh sites.")
        }
        return RemoteShell(host: instance.host, ssh: ssh, osUser: osUser, controlDirectory: controlDirectory, defaultTimeout: timeout + 15)
    }

    /// Opens the multiplexed connection to every host of the plan in the background, so that the first
    /// command a step sends to a host (a promotion, inside the write-unavailability window) does not pay for
    /// the SSH handshake. Failures are left for the steps to meet.
    public func warmUp() {
        var hosts: [String: Instance] = [:]
        for (site, instance) in plan.allInstances where site.driver == .ssh && hosts[instance.host] == nil {
            hosts[instance.host] = instance
        }
        for instance in hosts.values {
            Task { _ = try? await shell(instance).run(["true"], timeout: 10) }
        }
    }

    /// Closes the multiplexed connection to every host of the plan.
    public func closeConnections() async {
        RemoteSession.closeAll(controlDirectory: controlDirectory)
        for (site, instance) in plan.allInstances where site.driver == .ssh {
            if let shell = try? shell(instance) { await shell.closeMaster() }
        }
    }

    // MARK: Connections

    /// How failoverd connects to `instance` (``Plan/adminConnInfo(_:)``).
    public func adminConnInfo(_ instance: Instance) -> ConnInfo { plan.adminConnInfo(instance) }

    /// primary_conninfo for `instance` streaming from `upstream` (``Plan/replicationConnInfo(from:for:)``).
    public func replicationConnInfo(from upstream: Instance, for instance: Instance) -> ConnInfo {
        plan.replicationConnInfo(from: upstream, for: instance)
    }

    /// pg_rewind's --source-server (``Plan/rewindConnInfo(_:)``).
    public func rewindConnInfo(_ source: Instance) -> ConnInfo { plan.rewindConnInfo(source) }

    /// Runs `body` on a fresh admin connection to `instance`.
    public func withConnection<T: Sendable>(_ instance: Instance, _ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T
    {
        try await PGConnection.with(adminConnInfo(instance), body)
    }

    // MARK: Remote primitives

    /// pg_ctlcluster's settings when the instance is started that way.
    func cluster(_ instance: Instance) -> ServiceSettings? { instance.service.flatMap { $0.isPgCtlCluster ? $0 : nil } }

    /// The environment pg_ctlcluster needs: PG_CLUSTER_CONF_ROOT when the configurations are not in /etc/postgresql.
    func serviceEnvironment(_ instance: Instance) -> [String: String] {
        cluster(instance)?.configurationRoot.map { ["PG_CLUSTER_CONF_ROOT": $0] } ?? [:]
    }

    /// `pg_ctl status` on the host: true when a postmaster runs for the data directory, false when none
    /// does; throws when the host cannot be reached (unknown is never "stopped").
    func postmasterRuns(_ instance: Instance) async throws -> Bool {
        let r = try await pgCtlStatus(instance)
        switch r.exitCode {
        case 0: return true
        case 3, 4: return false
        default:
            try r.checked()
            return true
        }
    }

    /// `pg_ctl status` on the host: 0 running, 3 not running, 4 no data directory. pg_ctl also says 4 for a
    /// data directory it cannot reach (a parent the OS user cannot search: EACCES) or that holds no cluster;
    /// those are turned into 5 (unknown), never "not running": 4 stands only when ``provenAbsent`` proves
    /// the directory is not there.
    func pgCtlStatus(_ instance: Instance) async throws -> RemoteResult {
        try await shell(instance).script(
            Self.provenAbsent + #"""
                "$1" status -D "$2" >/dev/null 2>&1; rc=$?
                [ "$rc" -eq 4 ] || exit "$rc"
                absent "$2" && exit 4
                exit 5
                """#, [bin("pg_ctl"), RemotePaths(instance).dataDirectory])
    }

    /// A shell function, `absent PATH`: true only when PATH is proven not to exist, that is when the first
    /// missing component of the absolute PATH lies in a directory the user can search. `test -e` alone is
    /// false for a path behind a directory the user cannot search (EACCES) as well: unknown is not absent.
    static let provenAbsent = #"""
        absent() {
          p=; rest=${1#/}
          while :; do
            c=${rest%%/*}
            { [ -d "${p:-/}" ] && [ -x "${p:-/}" ]; } || return 1
            if [ ! -e "$p/$c" ] && [ ! -L "$p/$c" ]; then return 0; fi
            p="$p/$c"
            case $rest in */*) rest=${rest#*/} ;; *) return 1 ;; esac
          done
        }

        """#

    /// The text of a remote file, or nil when it does not exist; a file the OS user cannot reach is an error.
    func readFile(_ instance: Instance, _ path: String) async throws -> String? {
        let r = try await shell(instance).script(
            Self.provenAbsent + #"if [ ! -e "$1" ]; then absent "$1" && exit 3; echo "cannot reach $1" >&2; exit 5; fi; exec cat -- "$1""#,
            [path])
        if r.exitCode == 3 && !r.unreachable { return nil }
        try r.checked()
        return r.stdout
    }

    /// Replaces a remote file atomically (a new file renamed over it), with `mode`.
    func writeFile(_ instance: Instance, _ path: String, _ text: String, mode: String = "600") async throws {
        try await shell(instance).script(
            #"umask 077; t="$1.failoverd-new"; printf '%s' "$2" > "$t" && chmod "$3" "$t" && mv -f -- "$t" "$1""#, [path, text, mode]
        ).checked()
    }

    /// True when a remote path exists, false when it is proven not to (``provenAbsent``); throws when the OS
    /// user cannot tell (a parent it cannot search), as when the host cannot be reached.
    func exists(_ instance: Instance, _ path: String) async throws -> Bool {
        let r = try await shell(instance).script(
            Self.provenAbsent + #"[ -e "$1" ] && exit 0; absent "$1" && exit 3; echo "cannot tell whether $1 exists" >&2; exit 5"#, [path])
        switch (r.unreachable, r.exitCode) {
        case (false, 0): return true
        case (false, 3): return false
        default:
            try r.checked("Give \(osUser) search permission on every directory above \(path) on \(instance.host).")
            return false
        }
    }

    /// Creates a remote directory (and its parents) with `mode`.
    func makeDirectory(_ instance: Instance, _ path: String, mode: String = "700") async throws {
        try await shell(instance).run(["mkdir", "-p", "-m", mode, "--", path]).checked()
    }

    /// Removes a remote file; nothing to do when it does not exist.
    func removeFile(_ instance: Instance, _ path: String) async throws {
        try await shell(instance).run(["rm", "-f", "--", path]).checked()
    }

    /// The last lines of the instance's server log, for messages.
    func logTail(_ instance: Instance) async -> String {
        let r = try? await shell(instance).run(["tail", "-n", "8", RemotePaths(instance).logFile])
        return r.map { $0.stdout.split(separator: "\n").joined(separator: " | ") } ?? "(log unreadable)"
    }

    // MARK: InstanceDriver

    /// Probes `instance`: over SQL first (an answer proves it runs), else `pg_ctl status` on its host.
    ///
    /// A postmaster that runs but does not answer SQL, and a host SSH cannot reach, are reported running
    /// and unreachable with the reason: their recovery state is unknown, never assumed.
    ///
    /// When SQL has not answered within ``hedgeDelay`` the SSH probe starts alongside it, so a host that
    /// answers neither (cut off) costs one timeout, not libpq's and then ssh's one after the other.
    public func status(of instance: Instance) async throws -> InstanceStatus {
        let once = ClaimOnce()
        let hedge = Task { () throws -> RemoteResult? in
            try await Task.sleep(for: Self.hedgeDelay)
            return once.claim() ? try await pgCtlStatus(instance) : nil
        }
        let sqlFailure: String
        do {
            let status = try await withConnection(instance) { try StatusProbe.run($0) }
            hedge.cancel()
            return status
        } catch let error as PGError where error.isConnectionFailure && !LocalPostgresDriver.isLoginRefusal(error) {
            sqlFailure = error.message.split(separator: "\n").first.map(String.init) ?? "no answer"
        } catch {
            hedge.cancel()
            throw error
        }
        // SQL failed: the SSH probe that already started, else one now (a stopped server refuses at once).
        let r: RemoteResult
        if once.claim() {
            hedge.cancel()
            r = try await pgCtlStatus(instance)
        } else if let hedged = try await hedge.value {
            r = hedged
        } else {
            r = try await pgCtlStatus(instance)
        }
        var status = InstanceStatus.stopped
        switch (r.unreachable, r.exitCode) {
        case (false, 3), (false, 4):
            return .stopped
        case (false, 0):
            status.running = true
            status.unreachableReason = sqlFailure
        case (false, _):
            // SSH answers but the probe fails (sudo refused, data directory unreadable): unknown, not stopped.
            status.running = true
            status.unreachableReason =
                "`pg_ctl status` on \(instance.host) failed with exit \(r.exitCode) (\(r.outputTail.isEmpty ? "no output" : r.outputTail)) and SQL does not answer (\(sqlFailure))"
        default:
            // Neither SQL nor SSH answers: the host may be cut off with a primary still running behind the cut.
            status.running = true
            status.unreachableReason =
                "host \(instance.host) cannot be reached over SSH (\(r.outputTail.isEmpty ? "exit \(r.exitCode)" : r.outputTail)) and SQL does not answer (\(sqlFailure))"
        }
        return status
    }

    /// How long SQL may take before ``status(of:)`` asks the host over SSH as well.
    static let hedgeDelay = Duration.milliseconds(250)

    /// Reads pg_controldata on the host; nil when the data directory holds no cluster.
    public func controlData(of instance: Instance) async throws -> ControlData? {
        let dir = RemotePaths(instance).dataDirectory
        let r = try await shell(instance).script(
            Self.provenAbsent
                + #"if [ ! -f "$2/PG_VERSION" ]; then absent "$2/PG_VERSION" && exit 3; echo "cannot reach $2" >&2; exit 5; fi; exec "$1" -D "$2""#,
            [bin("pg_controldata"), dir])
        if r.exitCode == 3 && !r.unreachable { return nil }
        try r.checked()
        guard let data = ControlData.parse(r.stdout) else {
            throw FailoverError.failed("pg_controldata -D \(dir) on \(instance.host) printed no usable control data")
        }
        return data
    }

    /// True when the data directory on the host holds PG_VERSION.
    public func hasData(_ instance: Instance) async throws -> Bool {
        try await exists(instance, RemotePaths(instance).pgVersion)
    }

    /// Starts the server with `pg_ctl start -w` on its host and waits until it accepts connections.
    ///
    /// Refuses (``FailoverError/Code/refused``) when the instance carries a fence marker and no
    /// standby.signal; the check and the start run in one remote script, so nothing starts in between.
    public func start(_ instance: Instance) async throws {
        if let unit = systemd(instance) {
            let clock = ContinuousClock.now
            try await startUnit(instance, unit)
            logger.info(
                "started",
                metadata: [
                    "instance": "\(instance.name)", "host": "\(instance.host)", "unit": "\(unit.unit)",
                    "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))",
                ])
            return try await waitUntilAcceptingConnections(instance)
        }
        let paths = RemotePaths(instance)
        let cluster = cluster(instance)
        // With pg_ctlcluster, port, listen address and socket directory are the cluster's own configuration
        // (outside the data directory, so pg_rewind and restores do not copy them).
        let options =
            (cluster == nil
            ? ["-p", String(instance.port), "-k", paths.local.socketDirectory, "-h", instance.host, "-c", "cluster_name=" + instance.name]
            : ["-c", "cluster_name=" + instance.name]).map(PgBackRest.shellWord).joined(separator: " ")
        let clock = ContinuousClock.now
        let r = try await shell(instance).script(
            """
            d="$2"; s="$3"
            [ -f "$d/PG_VERSION" ] || exit 10
            "$1" status -D "$d" >/dev/null 2>&1 && exit 0
            if [ -e "$s/fenced" ] && [ ! -e "$d/standby.signal" ]; then exit 11; fi
            mkdir -p -m 700 -- "$s" || exit 12
            if [ "$6" = pg_ctlcluster ]; then
              # A standby may run again: undo what fencing did to start.conf.
              if [ -e "${10}" ]; then { cat -- "${10}" > "$9" && rm -f -- "${10}"; } || exit 13; fi
              exec pg_ctlcluster -o "$5" "$7" "$8" start
            fi
            exec "$1" start -D "$d" -l "$s/postgresql.log" -w -t "$4" -s -o "$5"
            """,
            [
                bin("pg_ctl"), paths.dataDirectory, paths.stateDirectory, String(Int(timeout)), options,
                cluster == nil ? "pg_ctl" : "pg_ctlcluster",
                cluster?.version.map(String.init) ?? "", cluster?.cluster ?? "", paths.startConf, paths.savedStartConf,
            ], environment: serviceEnvironment(instance), timeout: timeout + 45)
        switch (r.unreachable, r.exitCode) {
        case (false, 0): break
        case (false, 10), (false, 11):
            throw startRefusal(instance, exitCode: r.exitCode)
        default:
            try r.checked("Server log \(paths.logFile) on \(instance.host): \(await logTail(instance)).")
        }
        logger.info(
            "started",
            metadata: [
                "instance": "\(instance.name)", "host": "\(instance.host)",
                "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))",
            ])
        try await waitUntilAcceptingConnections(instance)
    }

    /// Stops the server with `pg_ctl stop -m fast|immediate -w` on its host; nothing to do when it is not running.
    public func stop(_ instance: Instance, mode: StopMode) async throws {
        if let unit = systemd(instance) { return try await stopUnit(instance, unit, mode: mode) }
        let paths = RemotePaths(instance)
        let cluster = cluster(instance)
        let r = try await shell(instance).script(
            """
            "$1" status -D "$2" >/dev/null 2>&1 || exit 0
            if [ "$5" = pg_ctlcluster ]; then pg_ctlcluster -m "$3" "$6" "$7" stop; rc=$?
            else
            \(Self.stopAndWait)
            fi
            "$1" status -D "$2" >/dev/null 2>&1 || exit 0
            [ "$rc" -eq 0 ] && exit 20
            exit "$rc"
            """,
            [
                bin("pg_ctl"), paths.dataDirectory, mode.rawValue, String(Int(timeout)), cluster == nil ? "pg_ctl" : "pg_ctlcluster",
                cluster?.version.map(String.init) ?? "", cluster?.cluster ?? "",
            ], environment: serviceEnvironment(instance), timeout: timeout + 15)
        try r.checked("Try mode immediate, or look at \(paths.logFile) on \(instance.host).")
        logger.info(
            "stopped",
            metadata: [
                "instance": "\(instance.name)", "mode": "\(mode.rawValue)", "seconds": "\(String(format: "%.2f", r.result.seconds))",
            ])
    }

    /// Promotes a running standby with `pg_ctl promote` on its host, waits until it leaves recovery, and
    /// clears its fence marker.
    ///
    /// pg_ctl only asks for the promotion (`-W`); the wait is ``PromotionWait``'s, over SQL every 5 ms, so the
    /// promotion is seen within milliseconds rather than at pg_ctl's next 100 ms step. The fence marker is
    /// cleared only once the server itself says it left recovery.
    public func promote(_ instance: Instance) async throws {
        let before = try await status(of: instance)
        guard before.running else {
            throw FailoverError.failed("cannot promote \(instance.name): it is not running. Start it as a standby first.")
        }
        let paths = RemotePaths(instance)
        if !(before.reachable && !before.inRecovery) {
            let hint = "Is \(instance.name) a standby? See \(paths.logFile) on \(instance.host)."
            let asked = try await shell(instance).run(
                [bin("pg_ctl"), "promote", "-D", paths.dataDirectory, "-W", "-s"], timeout: timeout + 15)
            // A refusal or an unknown outcome (the host cut off mid-command) stands unless the server itself
            // answers that it left recovery: a promotion asked before a crash of failoverd, finishing now.
            if asked.exitCode != 0, await !PromotionWait.finished(adminConnInfo(instance)) { try asked.checked(hint) }
            try await PromotionWait.wait(for: instance.name, adminConnInfo(instance), timeout: timeout, advice: hint)
        }
        try await shell(instance).script(
            #"rm -f -- "$1"; if [ -e "$3" ]; then cat -- "$3" > "$2" && rm -f -- "$3"; fi"#,
            [paths.fenceMarker, paths.startConf, paths.savedStartConf]
        ).checked()
    }

    /// `pg_ctl stop -D "$2" -m "$3" -W` ("$1" is pg_ctl, "$4" the timeout in seconds), then a wait every 10 ms
    /// until postmaster.pid is gone or names a process that is (the test pg_ctl's own `-w` makes, every
    /// 100 ms); pg_ctl's exit status is left in rc. The caller proves the outcome with `pg_ctl status`.
    static let stopAndWait = """
        pid=$(head -n 1 -- "$2/postmaster.pid" 2>/dev/null)
        "$1" stop -D "$2" -m "$3" -W -s; rc=$?
        n=$(( $4 * 100 ))
        while [ "$rc" -eq 0 ] && [ -f "$2/postmaster.pid" ] && { [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null; } && [ "$n" -gt 0 ]; do
            sleep 0.01 2>/dev/null || sleep 1
            n=$((n - 1))
        done
        """

    /// Runs CHECKPOINT.
    public func checkpoint(_ instance: Instance) async throws {
        try await withConnection(instance) { _ = try $0.query("CHECKPOINT") }
    }

    /// Runs pg_switch_wal() and returns the segment it closed.
    public func switchWAL(_ instance: Instance) async throws -> String {
        let segment = try await withConnection(instance) { try $0.scalar("SELECT pg_walfile_name(pg_switch_wal())") }
        guard let segment else { throw FailoverError.failed("pg_switch_wal() on \(instance.name) returned no segment") }
        return segment
    }

    /// Commits a transaction that is assigned an xid and returns pg_current_wal_lsn().
    public func writeProbe(_ instance: Instance) async throws -> LSN {
        try await PGConnection.writeProbe(adminConnInfo(instance), instance: instance.name)
    }

    /// Writes the fence marker on the host: from then on ``start(_:)`` refuses to start `instance` without standby.signal.
    public func setFenceMarker(_ instance: Instance, reason: String) async throws {
        let paths = RemotePaths(instance)
        let stamp = ISO8601DateFormatter().string(from: Date())
        // pg_ctlcluster refuses a cluster whose start.conf says `disabled`: so does a DBA's or an init
        // script's pg_ctlcluster start while the instance is fenced. The value before is kept to restore it.
        try await shell(instance).script(
            """
            umask 022; mkdir -p -m 700 -- "$1" || exit 1
            printf '%s' "$3" > "$2.failoverd-new" && mv -f -- "$2.failoverd-new" "$2" || exit 1
            [ "$4" = pg_ctlcluster ] || exit 0
            if [ ! -e "$6" ]; then
              if [ -e "$5" ]; then cat -- "$5" > "$6" || exit 1; else echo auto > "$6" || exit 1; fi
            fi
            printf 'disabled\n' > "$5"
            """,
            [
                paths.stateDirectory, paths.fenceMarker, "\(stamp) \(reason)\n", cluster(instance) == nil ? "pg_ctl" : "pg_ctlcluster",
                paths.startConf,
                paths.savedStartConf,
            ]
        ).checked()
        // A systemd unit must refuse to start it too: the drop-in is checked (for a user manager, written).
        if let unit = systemd(instance) { try await ensureFenceDropIn(instance, unit) }
    }

    /// True when `instance` carries a fence marker on its host.
    public func hasFenceMarker(_ instance: Instance) async throws -> Bool {
        try await exists(instance, RemotePaths(instance).fenceMarker)
    }

    /// Where the valid WAL of a stopped instance ends, read with pg_waldump on its host.
    public func endOfWAL(_ instance: Instance) async throws -> LSN? {
        guard let control = try await controlData(of: instance) else { return nil }
        let r = try await shell(instance).run([
            bin("pg_waldump"), "--path", RemotePaths(instance).dataDirectory + "/pg_wal", "--timeline", String(control.timeline),
            "--start", control.redoLSN.description, "--quiet",
        ])
        if r.unreachable { try r.checked() }
        let text = r.result.stderr + r.result.stdout
        let found = text.matches(of: try Regex("[0-9A-F]+/[0-9A-F]+")).compactMap { LSN(String(text[$0.range])) }
        return found.max() ?? (r.result.succeeded ? nil : control.checkpointLSN)
    }

    /// Waits until `instance` answers `SELECT 1`; fails at once if its postmaster is gone.
    func waitUntilAcceptingConnections(_ instance: Instance) async throws {
        _ = try await Poll.until(
            "\(instance.name) to accept connections on \(instance.host):\(instance.port)", timeout: timeout, interval: 0.02,
            advice: "See \(RemotePaths(instance).logFile) on \(instance.host)."
        ) { () -> Bool? in
            do {
                _ = try await withConnection(instance) { try $0.scalar("SELECT 1") }
            } catch let error as PGError where LocalPostgresDriver.isLoginRefusal(error) {
                throw Poll.Abort(error: error)
            } catch let error as PGError where error.isConnectionFailure {
                if try await !postmasterRuns(instance) {
                    throw Poll.Abort(
                        error: FailoverError.failed("\(instance.name) exited while starting; server log: \(await logTail(instance))"))
                }
                throw error
            }
            return true
        }
    }
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
