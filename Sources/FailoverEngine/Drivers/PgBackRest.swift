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

    /// The settings for `plan`: its repository's config, or ``defaultConfigPath(for:)``.
    public init(plan: Plan, executable: String = "/usr/bin/pgbackrest") {
        self.executable = executable
        configPath = plan.repository.config ?? Self.defaultConfigPath(for: plan.repository)
        stanza = plan.repository.stanza
        repositoryPath = plan.repository.path
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
        [executable, "--config=" + configPath, "--stanza=" + stanza].map(Self.shellWord).joined(separator: " ")
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
        ["--config=" + configPath, "--stanza=" + stanza] + options + [command]
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
