import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The driver for PostgreSQL 15 servers on this host: ``PostgresInstanceDriver`` over ``LocalHost``.
///
/// Every server runs as the plan's unprivileged OS user (``OSUser/postgresUser(for:)``); when failoverd runs
/// as root, commands switch to that user and files are written as that user wherever it can write
/// (``Files``). Liveness comes from /proc (``Postmaster``): a reused pid is never trusted or signalled.
public typealias LocalPostgresDriver = PostgresInstanceDriver<LocalHost>

extension PostgresInstanceDriver where Host == LocalHost {
    /// Creates a driver for `plan`'s local sites.
    ///
    /// - Parameter binDirectory: PostgreSQL's bin directory; default from `pg_config --bindir`, else
    ///   /usr/lib/postgresql/15/bin.
    /// - Throws: ``FailoverError`` when an instance of a local site is on another host or started by a
    ///   service manager, or when the binaries, pgbackrest or the OS user are missing.
    public init(plan: Plan, binDirectory: String? = nil, logger: Logger = Logger(label: "failoverd.local-driver")) throws {
        // Liveness, fencing and the two-primaries check read postmaster.pid and signal pids: they mean
        // something only for servers on this host. A remote server would look stopped while taking writes.
        for (site, instance) in plan.allInstances where site.driver == LocalHost.driverKind {
            guard HostAddress.isLocal(instance.host) else {
                throw FailoverError.invalid(
                    "site \"\(site.name)\": instance \(instance.name) is on \(instance.host), which is not this host; the local driver manages servers on this host only (use a loopback address or one of this host's addresses)."
                )
            }
            if let service = instance.service, service.manager != "pg_ctl" {
                throw FailoverError.invalid(
                    "site \"\(site.name)\": instance \(instance.name): service manager \(service.manager) applies to driver ssh only; the local driver starts servers with pg_ctl."
                )
            }
        }
        let bin = binDirectory ?? Self.defaultBinDirectory()
        guard FileManager.default.isExecutableFile(atPath: bin + "/pg_ctl") else {
            throw FailoverError.invalid(
                "PostgreSQL binaries not found in \(bin) (no pg_ctl): install PostgreSQL 15 (apt-get install postgresql-15) or pass its bin directory."
            )
        }
        let transport = LocalHost(osUser: try OSUser.postgresUser(for: plan), defaultTimeout: max(plan.policy.stepTimeoutSeconds, 10))
        try self.init(
            plan: plan, transport: transport, binDirectory: bin,
            backrest: PgBackRest(plan: plan, executable: try CommandRunner.resolve("pgbackrest")), logger: logger)
    }

    /// `pg_config --bindir` when it names a directory with pg_ctl, else /usr/lib/postgresql/15/bin.
    public static func defaultBinDirectory() -> String { pgConfigBinDirectory }

    /// Asked once per process: the answer does not change while it runs, and a driver is created (in a
    /// synchronous initializer, often from async code) for every command and test.
    private static let pgConfigBinDirectory: String = {
        let fallback = "/usr/lib/postgresql/15/bin"
        guard let pgConfig = try? CommandRunner.resolve("pg_config") else { return fallback }
        var pipe: [Int32] = [0, 0]
        let null = open("/dev/null", O_WRONLY)
        guard null >= 0, Glibc.pipe(&pipe) == 0 else { return fallback }
        let pid = try? Spawner.spawn(
            pgConfig, ["pg_config", "--bindir"], environment: ["PATH=" + CommandRunner.searchPath], workingDirectory: "/",
            stdout: pipe[1], stderr: null, commandLine: "pg_config --bindir")
        close(pipe[1])
        close(null)
        defer { close(pipe[0]) }
        guard let pid else { return fallback }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += chunk[0..<n]
        }
        let dir = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return Spawner.reap(pid) == .exited(0) && FileManager.default.isExecutableFile(atPath: dir + "/pg_ctl") ? dir : fallback
    }()

    /// The OS user that runs PostgreSQL on this host.
    public var osUser: OSUser { transport.osUser }

    /// Runs commands as ``osUser`` (pgBackRest's `PGBACKREST_*` settings passed on): for the sandbox and
    /// tests that run PostgreSQL tools themselves.
    public var runner: CommandRunner { transport.runner }
}
