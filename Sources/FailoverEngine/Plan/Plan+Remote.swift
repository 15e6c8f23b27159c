import Foundation

/// How failoverd logs in to a site's hosts over OpenSSH: key authentication only, host keys checked.
///
/// Secrets stay out of the plan: the private key is a file the plan names (or the user's default key), and
/// host keys are checked against a known_hosts file (the plan's, else the user's own).
public struct SSHSettings: Codable, Sendable, Equatable {
    /// The login user on the hosts; commands run as the plan's OS user through `sudo -n -u` when it differs.
    public var user: String
    /// The port sshd listens on (default 22).
    public var port: Int?
    /// The private key to log in with (`-i`, with IdentitiesOnly); default: the user's own keys.
    public var identityFile: String?
    /// The known_hosts file the hosts' keys are checked against; default: the user's own (~/.ssh/known_hosts).
    public var knownHostsFile: String?

    /// Settings for `user`.
    public init(user: String, port: Int? = nil, identityFile: String? = nil, knownHostsFile: String? = nil) {
        self.user = user
        self.port = port
        self.identityFile = identityFile
        self.knownHostsFile = knownHostsFile
    }

    /// The port with its default.
    public var effectivePort: Int { port ?? 22 }
}

/// How a server is started and stopped on its host.
public struct ServiceSettings: Codable, Sendable, Hashable {
    /// `pg_ctl` (the default), `pg_ctlcluster` (Debian's postgresql-common) or `systemd`.
    public var manager: String
    /// For `pg_ctlcluster`: the PostgreSQL major version (`15`).
    public var version: Int?
    /// For `pg_ctlcluster`: the cluster name (`main`); its configuration lives in /etc/postgresql/VERSION/NAME.
    public var cluster: String?
    /// For `systemd`: the unit (`postgresql@15-main.service`).
    public var unit: String?
    /// For `pg_ctlcluster`: where cluster configurations live instead of /etc/postgresql
    /// (postgresql-common's PG_CLUSTER_CONF_ROOT).
    public var configurationRoot: String?
    /// For `systemd`: `system` (the default: the host's service manager, `sudo -n systemctl`) or `user`
    /// (the OS user's own manager, `systemctl --user`).
    public var scope: String?
    /// For `systemd` scope `user`: the manager's XDG_RUNTIME_DIR (default `/run/user/UID` of the OS user).
    public var runtimeDirectory: String?
    /// For `systemd`: the drop-in directory where failoverd's fence drop-in lives (default
    /// `/etc/systemd/system/UNIT.d`, or `~/.config/systemd/user/UNIT.d` of the OS user for scope `user`).
    public var dropInDirectory: String?

    /// Settings for `manager`.
    public init(
        manager: String, version: Int? = nil, cluster: String? = nil, unit: String? = nil, configurationRoot: String? = nil,
        scope: String? = nil, runtimeDirectory: String? = nil, dropInDirectory: String? = nil
    ) {
        self.manager = manager
        self.version = version
        self.cluster = cluster
        self.unit = unit
        self.configurationRoot = configurationRoot
        self.scope = scope
        self.runtimeDirectory = runtimeDirectory
        self.dropInDirectory = dropInDirectory
    }

    /// True for Debian's pg_ctlcluster with its version and cluster.
    public var isPgCtlCluster: Bool { manager == "pg_ctlcluster" && version != nil && cluster != nil }

    /// True for a systemd unit.
    public var isSystemd: Bool { manager == "systemd" && unit != nil }
    /// True for a unit of the OS user's own systemd manager (`systemctl --user`).
    public var isUserScope: Bool { scope == "user" }

    /// The scopes of a systemd unit.
    public static let scopes = ["system", "user"]
    /// The managers failoverd knows.
    public static let managers = ["pg_ctl", "pg_ctlcluster", "systemd"]
}

/// A fencing hook: a command failoverd runs to fence an old primary it cannot reach, with the site and the
/// instance names as its last two arguments; exit status 0 means fenced.
public struct FencingHook: Codable, Sendable, Equatable {
    /// The command as argv: an absolute executable path, then fixed arguments. No shell reads it.
    public var command: [String]

    /// A hook running `command`.
    public init(command: [String]) { self.command = command }
}
