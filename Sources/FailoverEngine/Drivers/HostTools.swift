import Foundation

/// A program on failoverd's own host that a kind of site, or one of its steps, needs.
public enum HostTool: String, Sendable, CaseIterable, CustomStringConvertible {
    /// PostgreSQL 15's server programs (pg_ctl, pg_controldata, pg_rewind) in its bin directory.
    case postgresBinaries = "PostgreSQL binaries"
    /// pgBackRest.
    case pgBackRest = "pgbackrest"
    /// curl: Patroni's REST API and etcd are called with it.
    case curl
    /// The OpenSSH client.
    case openSSH = "ssh"

    /// The tool's name in messages.
    public var description: String { rawValue }
}

/// Where failoverd finds the programs of its host. A value, so that a test can give a run a host without
/// PostgreSQL or pgBackRest.
public struct HostTools: Sendable, Equatable {
    /// PostgreSQL's bin directory (pg_ctl, pg_controldata, pg_rewind).
    public var postgresBinDirectory: String
    /// Where pgbackrest is looked up: failoverd's own search path, never the caller's PATH.
    public var searchPath: String

    /// Tools found in `postgresBinDirectory` and `searchPath`.
    public init(postgresBinDirectory: String, searchPath: String = CommandRunner.searchPath) {
        self.postgresBinDirectory = postgresBinDirectory
        self.searchPath = searchPath
    }

    /// This host's: PostgreSQL's bin directory from `pg_config --bindir` (else /usr/lib/postgresql/15/bin),
    /// pgbackrest in failoverd's search path. Looked up once per process.
    public static let system = HostTools(postgresBinDirectory: LocalPostgresDriver.defaultBinDirectory())

    /// The path of `tool` on this host, nil when it is missing.
    public func locate(_ tool: HostTool) -> String? {
        let candidates: [String]
        switch tool {
        case .postgresBinaries: candidates = [postgresBinDirectory + "/pg_ctl"]
        case .pgBackRest: candidates = searchPath.split(separator: ":").map { "\($0)/pgbackrest" }
        case .curl: candidates = [PatroniREST.curl]
        case .openSSH: candidates = [RemoteShell.sshExecutable]
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Where `tool` was looked for, and how to install it.
    func missing(_ tool: HostTool) -> String {
        switch tool {
        case .postgresBinaries:
            "PostgreSQL binaries not found in \(postgresBinDirectory) (no pg_ctl): install PostgreSQL 15 (apt-get install postgresql-15)"
        case .pgBackRest: "pgbackrest was not found in \(searchPath): install it (apt-get install pgbackrest)"
        case .curl: "curl was not found at \(PatroniREST.curl): install it (apt-get install curl)"
        case .openSSH: "ssh was not found at \(RemoteShell.sshExecutable): install the OpenSSH client (apt-get install openssh-client)"
        }
    }
}
