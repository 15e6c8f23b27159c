import Foundation

/// Starting and stopping a server, by how it is started (its service): pg_ctl, Debian's pg_ctlcluster (its
/// configuration in /etc/postgresql, start.conf `disabled` while fenced), or a systemd unit (with failoverd's
/// fence drop-in). The plan allows the last two on ssh sites only.
extension PostgresInstanceDriver {
    /// pg_ctlcluster's settings when the instance is started that way (only where services apply:
    /// ``HostTransport/startsServices``).
    func cluster(_ instance: Instance) -> ServiceSettings? {
        Host.startsServices ? instance.service.flatMap { $0.isPgCtlCluster ? $0 : nil } : nil
    }

    /// The environment pg_ctlcluster needs: PG_CLUSTER_CONF_ROOT when the configurations are not in /etc/postgresql.
    func serviceEnvironment(_ instance: Instance) -> [String: String] {
        cluster(instance)?.configurationRoot.map { ["PG_CLUSTER_CONF_ROOT": $0] } ?? [:]
    }

    /// The systemd unit of `instance`, when one starts it (only where services apply).
    func systemd(_ instance: Instance) -> SystemdUnit? { Host.startsServices ? SystemdUnit(instance) : nil }

    /// Starts the server (pg_ctl start -w, pg_ctlcluster, or its systemd unit) and waits until it accepts
    /// connections; only waits when it already runs.
    ///
    /// Refuses (``FailoverError/Code/refused``) when the instance carries a fence marker (or its host cannot
    /// tell) and its data directory has no standby.signal: a fenced former primary never starts as a primary.
    /// The check and the start run in one script on the host (``startScript``), so nothing starts in between.
    public func start(_ instance: Instance) async throws {
        let paths = paths(instance)
        guard try await hasData(instance) else { throw startRefusal(instance, exitCode: 10) }
        try await transport.makeDirectory(paths.stateDirectory, mode: 0o700, on: instance)
        let clock = ContinuousClock.now
        if let unit = systemd(instance) {
            try await startUnit(instance, unit)
        } else {
            let r = try await transport.script(
                Self.startScript,
                [
                    bin("pg_ctl"), paths.dataDirectory, paths.stateDirectory, String(Int(timeout)), pgCtlOptions(instance),
                    cluster(instance) == nil ? "pg_ctl" : "pg_ctlcluster", cluster(instance)?.version.map(String.init) ?? "",
                    cluster(instance)?.cluster ?? "", paths.startConf, paths.savedStartConf,
                ], on: instance, environment: serviceEnvironment(instance), timeout: timeout + 45)
            switch r.exitCode {
            case _ where r.unreachable: try r.checked("Server log \(paths.logFile)\(on(instance)): \(await logTail(instance)).")
            case 0, 9: break
            case 10, 11: throw startRefusal(instance, exitCode: r.exitCode)
            default:
                // pg_ctl -w gave up while the server still starts (a long crash recovery): the wait below decides.
                if try await !postmasterRuns(instance) {
                    throw FailoverError.failed(
                        "could not start \(instance.name)\(on(instance)) (\(paths.dataDirectory), port \(instance.port)): \(r.outputTail); server log \(paths.logFile): \(await logTail(instance)). Fix the cause shown in the log and retry."
                    )
                }
            }
        }
        logger.info(
            "started",
            metadata: [
                "instance": "\(instance.name)", "host": "\(instance.host)",
                "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))",
            ])
        try await waitUntilAcceptingConnections(instance)
    }

    /// pg_ctl's `-o`: port, socket directory, listen address and cluster_name; with pg_ctlcluster only
    /// cluster_name, the rest being the cluster's own configuration (outside the data directory, so pg_rewind
    /// and restores do not copy it).
    func pgCtlOptions(_ instance: Instance) -> String {
        let paths = paths(instance)
        let options =
            cluster(instance) == nil
            ? ["-p", String(instance.port), "-k", paths.socketDirectory, "-h", instance.host, "-c", "cluster_name=" + instance.name]
            : ["-c", "cluster_name=" + instance.name]
        return options.map(PgBackRest.shellWord).joined(separator: " ")
    }

    /// The start, checked on the host in the same script: $1 pg_ctl, $2 the data directory, $3 failoverd's
    /// state directory, $4 the timeout, $5 pg_ctl's -o, $6 `pg_ctl`, `pg_ctlcluster` or `check` (check only),
    /// $7 and $8 pg_ctlcluster's version and cluster, $9 start.conf and ${10} its value saved by the fence.
    ///
    /// Exit 10: no cluster; 9: already running; 11: fenced (the marker exists, or cannot be proven absent)
    /// and no standby.signal. Otherwise pg_ctlcluster's or pg_ctl's own exit status.
    static var startScript: String {
        SSHHost.provenAbsent + startConfFunctions + #"""
            d="$2"; s="$3"
            [ -f "$d/PG_VERSION" ] || exit 10
            "$1" status -D "$d" >/dev/null 2>&1 && exit 9
            if ! absent "$s/fenced" && [ ! -e "$d/standby.signal" ]; then exit 11; fi
            [ "$6" = check ] && exit 0
            if [ "$6" = pg_ctlcluster ]; then
              # A standby may run again: undo what fencing did to start.conf.
              restore_start_conf "$9" "${10}" || exit 13
              exec pg_ctlcluster -o "$5" "$7" "$8" start
            fi
            exec "$1" start -D "$d" -l "$s/postgresql.log" -w -t "$4" -s -o "$5"
            """#
    }

    /// Stops the server (`pg_ctl stop -m fast|immediate`, pg_ctlcluster's stop, or its systemd unit's);
    /// nothing to do when it is not running.
    ///
    /// pg_ctl only sends the signal (`-W`); the transport waits for the postmaster to be gone, looking far more
    /// often than pg_ctl's `-w` (every 100 ms), which a switchover's write outage would pay.
    public func stop(_ instance: Instance, mode: StopMode) async throws {
        if let unit = systemd(instance) { return try await stopUnit(instance, unit, mode: mode) }
        let clock = ContinuousClock.now
        guard try await stopPostmaster(instance, mode: mode) else { return }
        logger.info(
            "stopped",
            metadata: [
                "instance": "\(instance.name)", "mode": "\(mode.rawValue)",
                "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))",
            ])
    }

    /// Asks the postmaster to stop in `mode` and waits until it is gone; false when none ran. Throws when it
    /// is still there, or when its host cannot tell.
    @discardableResult
    func stopPostmaster(_ instance: Instance, mode: StopMode) async throws -> Bool {
        let paths = paths(instance)
        let request =
            cluster(instance).map { ["pg_ctlcluster", "-m", mode.rawValue, $0.version.map(String.init) ?? "", $0.cluster ?? "", "stop"] }
            ?? [bin("pg_ctl"), "stop", "-D", paths.dataDirectory, "-m", mode.rawValue, "-W", "-s"]
        let advice = "Try mode immediate, or look at \(paths.logFile)\(on(instance))."
        switch try await transport.stopPostmaster(
            of: paths.dataDirectory, request: request, environment: serviceEnvironment(instance), timeout: timeout, on: instance)
        {
        case .notRunning: return false
        case .stopped: return true
        case .unknown(let why):
            throw FailoverError.failed("cannot stop \(instance.name): cannot tell whether its postmaster runs: \(why).")
        case .notStopped(let r, let seen):
            if r.unreachable { try r.checked(advice) }
            throw FailoverError.failed(
                "could not stop \(instance.name)\(on(instance)) (mode \(mode.rawValue)): \(r.outputTail.isEmpty ? "exit \(r.exitCode)" : r.outputTail)\(seen.unknownReason.map { "; \($0)" } ?? ""). \(advice)"
            )
        }
    }

    /// Stops a running server (fast, else immediate) and removes a stale postmaster.pid left by a crash,
    /// which pgbackrest restore would take for a running server.
    func ensureStopped(_ instance: Instance) async throws {
        do { try await stop(instance, mode: .fast) } catch { try await stop(instance, mode: .immediate) }
        if try await !postmasterRuns(instance) { try await transport.remove(paths(instance).postmasterPID, on: instance) }
    }

    /// Waits until `instance` answers `SELECT 1`; fails at once if its postmaster is gone (looked at before
    /// every attempt where that is free, else when SQL does not answer).
    func waitUntilAcceptingConnections(_ instance: Instance) async throws {
        let log = paths(instance).logFile
        let exited = { () async -> Poll.Abort in
            Poll.Abort(
                error: FailoverError.failed(
                    "\(instance.name) exited while starting; server log \(log)\(on(instance)): \(await logTail(instance))"))
        }
        _ = try await Poll.until(
            "\(instance.name) to accept connections on \(instance.host):\(instance.port)", timeout: timeout, interval: 0.02,
            advice: "See \(log)\(on(instance))."
        ) { () -> Bool? in
            if transport.postmasterCheck == .free, try await !postmasterRuns(instance) { throw await exited() }
            do {
                _ = try await withConnection(instance) { try $0.scalar("SELECT 1") }
            } catch let error as PGError where error.isLoginRefusal {
                throw Poll.Abort(error: error)
            } catch let error as PGError where error.isConnectionFailure && transport.postmasterCheck != .free {
                if try await !postmasterRuns(instance) { throw await exited() }
                throw error
            }
            return true
        }
    }

    // MARK: pg_ctlcluster's start.conf

    /// Shell functions for pg_ctlcluster's start.conf ($1) and its value before the fence ($2, in failoverd's
    /// state directory): `disable_start_conf` keeps the value (`auto` when there was none) and writes
    /// `disabled`, so that pg_ctlcluster refuses to start the cluster; `restore_start_conf` puts it back.
    static var startConfFunctions: String {
        #"""
        disable_start_conf() {
          if [ ! -e "$2" ]; then
            if [ -e "$1" ]; then cat -- "$1" > "$2" || return 1; else echo auto > "$2" || return 1; fi
          fi
          printf 'disabled\n' > "$1"
        }
        restore_start_conf() {
          [ -e "$2" ] || return 0
          cat -- "$2" > "$1" && rm -f -- "$2"
        }

        """#
    }

    /// Makes pg_ctlcluster refuse to start the fenced `instance`: start.conf says `disabled`.
    func disableStartConf(_ instance: Instance) async throws {
        let paths = paths(instance)
        try await transport.script(
            "umask 022\n" + Self.startConfFunctions + #"disable_start_conf "$1" "$2""#, [paths.startConf, paths.savedStartConf],
            on: instance
        ).checked("Check that \(transport.postgresUser) can write \(paths.startConf)\(on(instance)).")
    }

    /// Gives start.conf back its value from before the fence; nothing when none was kept.
    func restoreStartConf(_ instance: Instance) async throws {
        let paths = paths(instance)
        try await transport.script(
            Self.startConfFunctions + #"restore_start_conf "$1" "$2""#, [paths.startConf, paths.savedStartConf], on: instance
        )
        .checked("Check that \(transport.postgresUser) can write \(paths.startConf)\(on(instance)).")
    }

    // MARK: systemd

    /// Makes sure systemd enforces failoverd's fence drop-in for `instance`'s unit: for a user manager it is
    /// written (when missing or different) and the manager reloaded; then, for either scope, the unit's
    /// DropInPaths must list it, the unit must not wait for a daemon-reload, and its effective ExecStartPre
    /// (`systemctl show`) must hold the fence command, not ignoring its failure: proven by its effect, so a
    /// later drop-in that resets `ExecStartPre=` is caught. Refuses otherwise: without the check a fenced
    /// instance could be started by systemd as a primary.
    func ensureFenceDropIn(_ instance: Instance, _ unit: SystemdUnit) async throws {
        let text = unit.dropIn(for: instance)
        let r = try await transport.script(
            SystemdUnit.prologue + #"""

                unit="$3"; dir="$4"; text="$5"
                if [ -z "$dir" ]; then
                  home=$(getent passwd "$(id -un)" | cut -d: -f6)
                  dir="$home/.config/systemd/user/$unit.d"
                fi
                f="$dir/failoverd-fence.conf"
                echo "$f"
                if ! printf '%s' "$text" | cmp -s - "$f"; then
                  [ "$2" = user ] || exit 23
                  { mkdir -p -m 755 -- "$dir" && printf '%s' "$text" > "$f.failoverd-new" && chmod 644 "$f.failoverd-new" \
                    && mv -f -- "$f.failoverd-new" "$f"; } || exit 22
                  $sc daemon-reload || exit 24
                fi
                [ "$($sc show -p NeedDaemonReload --value -- "$unit")" = no ] || exit 25
                $sc show -p DropInPaths --value -- "$unit" | tr ' ' '\n' | grep -qxF -- "$f" || exit 21
                # Loaded is not enough: a later drop-in's `ExecStartPre=` empties the list. The unit's effective
                # ExecStartPre must hold the fence command itself, its failure failing the start job.
                entries=$($sc show -p ExecStartPre --value -- "$unit") || exit 24
                printf '%s\n' "$entries" | sed 's/\$\$/$/g' | grep -qF -- "$6" || { printf '%s\n' "$entries" >&2; exit 26; }
                """#, unit.prologueArguments + [unit.unit, unit.effectiveDropInDirectory, text, unit.fenceEntry(for: instance)],
            on: instance)
        let path = r.stdout.split(separator: "\n").first.map(String.init) ?? unit.effectiveDropInDirectory
        let scope = unit.userScope ? "systemctl --user" : "systemctl"
        switch (r.unreachable, r.exitCode) {
        case (false, 0): return
        case (false, 23):
            throw FailoverError.refused(
                "\(instance.name)\(on(instance)): the fence drop-in \(path) of unit \(unit.unit) is missing or differs; failoverd does not write the system manager's configuration. Install it (as root) with exactly this text, then run `systemctl daemon-reload`:\n\(text)"
            )
        case (false, 26):
            throw FailoverError.refused(
                "\(instance.name)\(on(instance)): unit \(unit.unit) loads failoverd's fence drop-in \(path), but its effective ExecStartPre (`\(scope) show -p ExecStartPre \(unit.unit)`) does not run the fence check: a drop-in read after it resets or replaces ExecStartPre=, so a fenced instance could be started as a primary. Remove that setting (see `\(scope) cat \(unit.unit)`), reload the manager, and retry. ExecStartPre is now: \(r.stderr.isEmpty ? "(empty)" : String(r.stderr.prefix(600)))"
            )
        case (false, 21), (false, 25):
            throw FailoverError.refused(
                "\(instance.name)\(on(instance)): \(scope) does not load failoverd's fence drop-in \(path) for unit \(unit.unit)\(r.exitCode == 25 ? " (the unit waits for a daemon-reload)" : ""): a fenced instance could be started as a primary. Name the unit's drop-in directory in systemd's unit path in service.dropInDirectory, and check `\(scope) show -p DropInPaths \(unit.unit)`."
            )
        default:
            try r.checked(
                "Check the unit \(unit.unit) and its manager (\(scope))\(on(instance)), and that \(transport.postgresUser) can write \(path)."
            )
        }
    }

    /// Runs `systemctl VERB UNIT` on the host: as the OS user for its own manager, as root (over SSH:
    /// `sudo -n` and the argv alone) for the system manager, so a sudoers rule for `/usr/bin/systemctl
    /// start|stop UNIT` is all it takes.
    func systemctl(_ instance: Instance, _ unit: SystemdUnit, _ verb: String, timeout: Double) async throws -> HostResult {
        if unit.userScope {
            return try await transport.script(
                SystemdUnit.prologue + "\n" + #"exec $sc "$3" -- "$4""#, unit.prologueArguments + [verb, unit.unit], on: instance,
                timeout: timeout)
        }
        return try await transport.run(
            [SystemdUnit.systemctl, verb, unit.unit], on: instance, as: .root, environment: [:], workingDirectory: "/", timeout: timeout)
    }

    /// Starts `instance` through its unit, after failoverd's own fence check (``startScript`` in its `check`
    /// mode) and with the drop-in in force; a start the drop-in refuses is reported as the fence refusing it.
    func startUnit(_ instance: Instance, _ unit: SystemdUnit) async throws {
        let paths = paths(instance)
        let pre = try await transport.script(
            Self.startScript, [bin("pg_ctl"), paths.dataDirectory, paths.stateDirectory, "", "", "check", "", "", "", ""], on: instance)
        switch (pre.unreachable, pre.exitCode) {
        case (false, 0): break
        case (false, 9): return
        case (false, 10), (false, 11): throw startRefusal(instance, exitCode: pre.exitCode)
        default: try pre.checked()
        }
        try await ensureFenceDropIn(instance, unit)
        let r = try await systemctl(instance, unit, "start", timeout: timeout + 45)
        guard r.exitCode == 0 else {
            if !r.unreachable, try await hasFenceMarker(instance), try await !transport.exists(paths.standbySignal, on: instance) {
                throw fencedRefusal(instance)
            }
            try r.checked("Unit \(unit.unit)\(on(instance)); server log \(paths.logFile): \(await logTail(instance)).")
            return
        }
    }

    /// Stops `instance` with `pg_ctl stop -m MODE` (the mode is exactly the one asked for, whatever the unit's
    /// KillSignal), then `systemctl stop` so that the unit is inactive and no `Restart=` brings it back.
    func stopUnit(_ instance: Instance, _ unit: SystemdUnit, mode: StopMode) async throws {
        try await stopPostmaster(instance, mode: mode)
        let stopped = try await systemctl(instance, unit, "stop", timeout: timeout + 15)
        if try await postmasterRuns(instance) {
            try stopped.checked()
            throw FailoverError.failed(
                "\(instance.name)\(on(instance)) still runs after pg_ctl stop -m \(mode.rawValue) and systemctl stop \(unit.unit)."
            )
        }
        if stopped.exitCode != 0 {
            logger.warning(
                "systemctl stop failed after the server stopped",
                metadata: ["instance": "\(instance.name)", "output": "\(stopped.outputTail)"])
        }
    }

    // MARK: Refusals

    /// Why ``startScript`` stopped before starting: exit 10, no cluster in the data directory; exit 11,
    /// fenced and not a standby.
    func startRefusal(_ instance: Instance, exitCode: Int32) -> FailoverError {
        let paths = paths(instance)
        guard exitCode == 11 else {
            return FailoverError.failed(
                "cannot start \(instance.name): \(paths.dataDirectory)\(on(instance)) holds no cluster (no PG_VERSION). Restore it first (bootstrap-standby or rebuild)."
            )
        }
        return fencedRefusal(instance)
    }

    /// The refusal to start a fenced instance that is not a standby.
    func fencedRefusal(_ instance: Instance) -> FailoverError {
        let paths = paths(instance)
        return FailoverError.refused(
            "\(instance.name) is fenced (\(paths.fenceMarker)\(on(instance))) and \(paths.dataDirectory) has no standby.signal: failoverd will not start it as a primary. Repair it with rewind or rebuild, which make it a standby."
        )
    }
}
