import Foundation

/// An instance started and stopped by a systemd unit, and failoverd's fence drop-in for that unit.
///
/// The fence must hold whichever way the server is started: failoverd's own start checks its marker, and
/// the drop-in makes systemd check the same thing in the unit's start job (`ExecStartPre=`), so a DBA's
/// `systemctl start`, a reboot with the unit enabled, or a `Restart=` cannot start a fenced instance as a
/// primary either. The check is the one failoverd makes: the fence marker exists and the data directory has
/// no standby.signal. So the drop-in can stay installed for good; fencing writes the marker, promotion
/// removes it.
///
/// Scope `system` is the host's manager: `systemctl start|stop` through `sudo -n` (a sudoers rule for those
/// exact commands is enough), and the drop-in lives in /etc/systemd/system/UNIT.d, installed by the DBA
/// (failoverd checks it and refuses to start or fence without it; it never writes /etc). Scope `user` is the
/// OS user's own manager (`systemctl --user`): failoverd writes the drop-in itself, in the user's
/// configuration directory, and reloads the manager.
public struct SystemdUnit: Sendable, Equatable {
    /// The unit (`postgresql-15.service`).
    public var unit: String
    /// True for the OS user's own manager (`systemctl --user`).
    public var userScope: Bool
    /// The user manager's XDG_RUNTIME_DIR; nil means `/run/user/UID` of the OS user.
    public var runtimeDirectory: String?
    /// The drop-in directory the plan names; nil means the scope's default.
    public var dropInDirectory: String?

    /// The drop-in's file name.
    public static let dropInName = "failoverd-fence.conf"
    /// systemctl on the hosts (Debian 12 and every merged-/usr distribution).
    public static let systemctl = "/usr/bin/systemctl"

    /// The unit of `instance`, when a systemd unit starts it.
    public init?(_ instance: Instance) {
        guard let service = instance.service, service.isSystemd, let unit = service.unit else { return nil }
        self.unit = unit
        userScope = service.isUserScope
        runtimeDirectory = service.runtimeDirectory
        dropInDirectory = service.dropInDirectory
    }

    /// The drop-in directory: the plan's, else /etc/systemd/system/UNIT.d for the system manager. For a user
    /// manager without one, empty: the remote script uses ~/.config/systemd/user/UNIT.d of the OS user.
    public var effectiveDropInDirectory: String {
        dropInDirectory ?? (userScope ? "" : "/etc/systemd/system/\(unit).d")
    }

    /// One word for a unit file's command line: double-quoted, with `\`, `"`, `$` and `%` escaped, so
    /// systemd neither splits it nor expands a variable or a specifier in it.
    public static func word(_ text: String) -> String {
        var out = "\""
        for ch in text {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "$": out += "$$"
            case "%": out += "%%"
            default: out.append(ch)
            }
        }
        return out + "\""
    }

    /// The shell check the drop-in's ExecStartPre runs: fails while the fence marker ($1) exists and the
    /// data directory ($2) has no standby.signal, saying why and what repairs it.
    static let fenceCheck =
        #"if [ -e "$1" ] && [ ! -e "$2/standby.signal" ]; then echo "failoverd: $3 is fenced ($1) and has no standby.signal: it must not start as a primary. Repair it with failoverd rewind or rebuild." >&2; exit 1; fi"#

    /// The drop-in for `instance`: its start job fails while the fence marker exists and the data directory
    /// has no standby.signal, with a message saying why and what repairs it.
    public func dropIn(for instance: Instance) -> String {
        let paths = RemotePaths(instance)
        return """
            # Written by failoverd for instance \(instance.name). While failoverd has fenced the instance
            # (\(paths.fenceMarker) exists) and it is not a standby (no standby.signal in its data directory),
            # this unit refuses to start. Leave it installed: failoverd checks that systemd loads it and that the
            # unit's effective ExecStartPre runs it (no later drop-in may reset ExecStartPre=).
            [Service]
            ExecStartPre=/bin/sh -c \(Self.word(Self.fenceCheck)) failoverd-fence \(Self.word(paths.fenceMarker)) \(Self.word(paths.dataDirectory)) \(Self.word(instance.name))

            """
    }

    /// The fence command's argv as systemd holds it once it has parsed the drop-in.
    public func fenceCommand(for instance: Instance) -> [String] {
        let paths = RemotePaths(instance)
        return ["/bin/sh", "-c", Self.fenceCheck, "failoverd-fence", paths.fenceMarker, paths.dataDirectory, instance.name]
    }

    /// The entry `systemctl show -p ExecStartPre --value` prints for the fence command when systemd will run
    /// it and fail the start job on its failure: `{ path=/bin/sh ; argv[]=ARGV ; ignore_errors=no ; …`, the
    /// argv words joined by spaces. systemd keeps a `$$` as written until it runs the command; the remote
    /// check reads every `$$` of the output as `$` before comparing.
    public func fenceEntry(for instance: Instance) -> String {
        "{ path=/bin/sh ; argv[]=" + fenceCommand(for: instance).joined(separator: " ") + " ; ignore_errors=no ;"
    }

    /// The prologue of a remote script that talks to this unit's manager: sets XDG_RUNTIME_DIR for a user
    /// manager (from `$1`, else /run/user/UID) and `sc` to the systemctl command line.
    static let prologue = #"""
        if [ "$2" = user ]; then
          XDG_RUNTIME_DIR="${1:-/run/user/$(id -u)}"; export XDG_RUNTIME_DIR; sc="/usr/bin/systemctl --user"
        else
          sc=/usr/bin/systemctl
        fi
        """#

    /// The first arguments of every script that starts with ``prologue``.
    var prologueArguments: [String] { [runtimeDirectory ?? "", userScope ? "user" : "system"] }
}

/// Instances under systemd: start and stop through their unit, and the fence drop-in.
extension SSHPostgresDriver {
    /// The systemd unit of `instance`, when one starts it.
    func systemd(_ instance: Instance) -> SystemdUnit? { SystemdUnit(instance) }

    /// Makes sure systemd enforces failoverd's fence drop-in for `instance`'s unit: for a user manager it is
    /// written (when missing or different) and the manager reloaded; then, for either scope, the unit's
    /// DropInPaths must list it, the unit must not wait for a daemon-reload, and its effective ExecStartPre
    /// (`systemctl show`) must hold the fence command, not ignoring its failure: proven by its effect, so a
    /// later drop-in that resets `ExecStartPre=` is caught. Refuses otherwise: without the check a fenced
    /// instance could be started by systemd as a primary.
    func ensureFenceDropIn(_ instance: Instance, _ unit: SystemdUnit) async throws {
        let text = unit.dropIn(for: instance)
        let r = try await shell(instance).script(
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
                """#, unit.prologueArguments + [unit.unit, unit.effectiveDropInDirectory, text, unit.fenceEntry(for: instance)])
        let path = r.stdout.split(separator: "\n").first.map(String.init) ?? unit.effectiveDropInDirectory
        let scope = unit.userScope ? "systemctl --user" : "systemctl"
        switch (r.unreachable, r.exitCode) {
        case (false, 0): return
        case (false, 23):
            throw FailoverError.refused(
                "\(instance.name) on \(instance.host): the fence drop-in \(path) of unit \(unit.unit) is missing or differs; failoverd does not write the system manager's configuration. Install it (as root) with exactly this text, then run `systemctl daemon-reload`:\n\(text)"
            )
        case (false, 26):
            throw FailoverError.refused(
                "\(instance.name) on \(instance.host): unit \(unit.unit) loads failoverd's fence drop-in \(path), but its effective ExecStartPre (`\(scope) show -p ExecStartPre \(unit.unit)`) does not run the fence check: a drop-in read after it resets or replaces ExecStartPre=, so a fenced instance could be started as a primary. Remove that setting (see `\(scope) cat \(unit.unit)`), reload the manager, and retry. ExecStartPre is now: \(r.result.stderr.isEmpty ? "(empty)" : String(r.result.stderr.prefix(600)))"
            )
        case (false, 21), (false, 25):
            throw FailoverError.refused(
                "\(instance.name) on \(instance.host): \(scope) does not load failoverd's fence drop-in \(path) for unit \(unit.unit)\(r.exitCode == 25 ? " (the unit waits for a daemon-reload)" : ""): a fenced instance could be started as a primary. Name the unit's drop-in directory in systemd's unit path in service.dropInDirectory, and check `\(scope) show -p DropInPaths \(unit.unit)`."
            )
        default:
            try r.checked(
                "Check the unit \(unit.unit) and its manager (\(scope)) on \(instance.host), and that \(osUser) can write \(path).")
        }
    }

    /// Runs `systemctl VERB UNIT` on the host: as the OS user for its own manager, through `sudo -n` for the
    /// system manager (a sudoers rule for `/usr/bin/systemctl start|stop UNIT` is all it takes).
    func systemctl(_ instance: Instance, _ unit: SystemdUnit, _ verb: String, timeout: Double) async throws -> RemoteResult {
        let shell = try shell(instance)
        if unit.userScope {
            return try await shell.script(
                SystemdUnit.prologue + "\n" + #"exec $sc "$3" -- "$4""#, unit.prologueArguments + [verb, unit.unit], timeout: timeout)
        }
        return try await shell.runPrivileged([SystemdUnit.systemctl, verb, unit.unit], timeout: timeout)
    }

    /// Starts `instance` through its unit, after failoverd's own fence check and with the drop-in in force;
    /// a start the drop-in refuses is reported as the fence refusing it.
    func startUnit(_ instance: Instance, _ unit: SystemdUnit) async throws {
        let paths = RemotePaths(instance)
        let pre = try await shell(instance).script(
            """
            d="$2"; s="$3"
            [ -f "$d/PG_VERSION" ] || exit 10
            "$1" status -D "$d" >/dev/null 2>&1 && exit 9
            if [ -e "$s/fenced" ] && [ ! -e "$d/standby.signal" ]; then exit 11; fi
            mkdir -p -m 700 -- "$s" || exit 12
            """, [bin("pg_ctl"), paths.dataDirectory, paths.stateDirectory])
        switch (pre.unreachable, pre.exitCode) {
        case (false, 0): break
        case (false, 9): return
        case (false, 10), (false, 11): throw startRefusal(instance, exitCode: pre.exitCode)
        default: try pre.checked()
        }
        try await ensureFenceDropIn(instance, unit)
        let r = try await systemctl(instance, unit, "start", timeout: timeout + 45)
        guard r.exitCode == 0 else {
            if !r.unreachable, try await hasFenceMarker(instance), try await !exists(instance, paths.standbySignal) {
                throw fencedRefusal(instance)
            }
            try r.checked("Unit \(unit.unit) on \(instance.host); server log \(paths.logFile): \(await logTail(instance)).")
            return
        }
    }

    /// Stops `instance` with `pg_ctl stop -m MODE` (the mode is exactly the one asked for, whatever the unit's
    /// KillSignal), then `systemctl stop` so that the unit is inactive and no `Restart=` brings it back.
    func stopUnit(_ instance: Instance, _ unit: SystemdUnit, mode: StopMode) async throws {
        let paths = RemotePaths(instance)
        let r = try await shell(instance).script(
            """
            "$1" status -D "$2" >/dev/null 2>&1 || exit 0
            \(Self.stopAndWait)
            exit "$rc"
            """, [bin("pg_ctl"), paths.dataDirectory, mode.rawValue, String(Int(timeout))], timeout: timeout + 15)
        try r.checked("Try mode immediate, or look at \(paths.logFile) on \(instance.host).")
        let stopped = try await systemctl(instance, unit, "stop", timeout: timeout + 15)
        if try await postmasterRuns(instance) {
            try stopped.checked()
            throw FailoverError.failed(
                "\(instance.name) on \(instance.host) still runs after pg_ctl stop -m \(mode.rawValue) and systemctl stop \(unit.unit)."
            )
        }
        if stopped.exitCode != 0 {
            logger.warning(
                "systemctl stop failed after the server stopped",
                metadata: ["instance": "\(instance.name)", "output": "\(stopped.outputTail)"])
        }
    }

    /// Why a start script's precondition stopped it: exit 10, no cluster in the data directory; exit 11,
    /// fenced and not a standby (both start paths check the same way before starting anything).
    func startRefusal(_ instance: Instance, exitCode: Int32) -> FailoverError {
        let paths = RemotePaths(instance)
        guard exitCode == 11 else {
            return FailoverError.failed(
                "cannot start \(instance.name): \(paths.dataDirectory) on \(instance.host) holds no cluster (no PG_VERSION). Restore it first."
            )
        }
        return fencedRefusal(instance)
    }

    /// The refusal to start a fenced instance that is not a standby.
    func fencedRefusal(_ instance: Instance) -> FailoverError {
        let paths = RemotePaths(instance)
        return FailoverError.refused(
            "\(instance.name) is fenced (\(paths.fenceMarker) on \(instance.host)) and \(paths.dataDirectory) has no standby.signal: failoverd will not start it as a primary. Repair it with rewind or rebuild, which make it a standby."
        )
    }
}
