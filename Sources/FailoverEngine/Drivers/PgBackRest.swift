import Foundation

/// How failoverd calls pgBackRest for a plan: one configuration file, one stanza, and the commands
/// that PostgreSQL itself runs (archive_command, restore_command).
///
/// The configuration file holds only repository-wide settings. Everything about a PostgreSQL instance
/// (pg1-path, port, socket) is passed on the command line, so one file serves every instance whatever
/// its current role. `--config` is passed on every call (Debian's /etc/pgbackrest.conf is not readable
/// by the PostgreSQL OS user), inside archive_command and restore_command too.
public struct PgBackRest: Sendable, Equatable {
    /// The pgbackrest executable.
    public var executable: String
    /// The configuration file passed as --config.
    public var configPath: String
    /// The stanza.
    public var stanza: String
    /// The repository path (repo1-path).
    public var repositoryPath: String
    /// The repository options from the plan (type, path, and the non-secret settings of an object store),
    /// passed on every call and inside archive_command and restore_command, so that pgBackRest uses the
    /// repository the plan names whatever else its configuration file says.
    public var repositoryOptions: [String]

    /// The settings for `plan`: its repository's config, or ``defaultConfigPath(for:)``.
    public init(plan: Plan, executable: String = "/usr/bin/pgbackrest") {
        self.executable = executable
        configPath = plan.repository.config ?? Self.defaultConfigPath(for: plan.repository)
        stanza = plan.repository.stanza
        repositoryPath = plan.repository.path
        repositoryOptions = Self.options(for: plan.repository)
    }

    /// `--repo1-type`, `--repo1-path` and the type's settings (`--repo1-s3-bucket`…); never a credential.
    public static func options(for repository: Repository) -> [String] {
        var options = ["--repo1-type=" + repository.type, "--repo1-path=" + repository.path]
        switch repository.type {
        case "s3":
            if let s3 = repository.s3 {
                options += ["--repo1-s3-bucket=" + s3.bucket, "--repo1-s3-endpoint=" + s3.endpoint, "--repo1-s3-region=" + s3.region]
                if let style = s3.uriStyle { options.append("--repo1-s3-uri-style=" + style) }
                if let port = s3.port { options.append("--repo1-storage-port=\(port)") }
                if let ca = s3.caFile { options.append("--repo1-storage-ca-file=" + ca) }
                if let verify = s3.verifyTLS { options.append("--repo1-storage-verify-tls=" + verify) }
            }
        case "gcs":
            if let gcs = repository.gcs {
                options.append("--repo1-gcs-bucket=" + gcs.bucket)
                if let endpoint = gcs.endpoint { options.append("--repo1-gcs-endpoint=" + endpoint) }
            }
        case "azure":
            if let azure = repository.azure {
                options += ["--repo1-azure-account=" + azure.account, "--repo1-azure-container=" + azure.container]
            }
        default:
            break
        }
        return options
    }

    /// The configuration file failoverd generates when the plan names none: `pgbackrest-<stanza>.conf`
    /// next to the repository directory.
    public static func defaultConfigPath(for repository: Repository) -> String {
        var path = repository.path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        let parent = (path as NSString).deletingLastPathComponent
        return (parent.isEmpty ? "." : parent) + "/pgbackrest-\(repository.stanza).conf"
    }

    /// `pgbackrest --config=… --stanza=…` as a shell string, the common head of the commands PostgreSQL runs.
    private var shellHead: String {
        ([executable, "--config=" + configPath, "--stanza=" + stanza] + repositoryOptions).map(Self.shellWord).joined(separator: " ")
    }

    /// archive_command for postgresql.conf. `--pg1-path="$(pwd)"` works on every instance: PostgreSQL runs
    /// it with the data directory as working directory and %p relative to it.
    public var archiveCommand: String {
        shellHead + " --pg1-path=\"$(pwd)\" archive-push \"%p\""
    }

    /// restore_command for failoverd's standby settings; as ``archiveCommand``, right on every instance.
    public var restoreCommand: String {
        shellHead + " --pg1-path=\"$(pwd)\" archive-get %f \"%p\""
    }

    /// Arguments for `pgbackrest <command>`: --config and --stanza, then `options`, then the command.
    public func arguments(_ command: String, _ options: [String] = []) -> [String] {
        ["--config=" + configPath, "--stanza=" + stanza] + repositoryOptions + options + [command]
    }

    /// The options that point pgBackRest at a local instance: its data directory, port and socket.
    public func instanceOptions(_ instance: Instance, user: String? = nil) -> [String] {
        let paths = InstancePaths(instance)
        var options = ["--pg1-path=" + paths.dataDirectory, "--pg1-port=\(instance.port)", "--pg1-socket-path=" + paths.socketDirectory]
        if let user { options.append("--pg1-user=" + user) }
        return options
    }

    /// A word for /bin/sh: as it is when plain, else single-quoted.
    static func shellWord(_ word: String) -> String {
        let plain = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_=./:,@%+"))
        return !word.isEmpty && word.unicodeScalars.allSatisfy(plain.contains) ? word : ShellQuote.quote(word)
    }
}
