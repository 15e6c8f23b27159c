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
        let paths = ServerPaths(instance)
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
        let paths = ServerPaths(instance)
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
