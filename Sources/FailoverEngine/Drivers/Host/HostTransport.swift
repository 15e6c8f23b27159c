import Foundation

/// What differs between running PostgreSQL on this host and on a host reached over SSH: how a command
/// runs, how a file is read or written, and how a postmaster is seen. ``PostgresInstanceDriver`` writes
/// the PostgreSQL logic once over it; ``LocalHost`` and ``SSHHost`` implement it.
///
/// Every operation names the instance whose host it acts on (``LocalHost`` has one host; ``SSHHost``
/// reaches each instance's own). Commands and file work run as the plan's PostgreSQL OS user, so nothing
/// reaches further than that user could alone. Fail closed throughout: a file or a postmaster the transport
/// cannot see is an error or ``PostmasterState/unknown(_:)``, never "absent" or "stopped".
public protocol HostTransport: Sendable {
    /// The driver of the sites this transport reaches (`local`, `ssh`).
    static var driverKind: DriverKind { get }
    /// Whether an instance's `service` (Debian's pg_ctlcluster, a systemd unit) decides how it is started and
    /// where its configuration lives on this transport's hosts. False on this host: local sites are started
    /// with pg_ctl (``LocalPostgresDriver`` refuses another manager), and the sandbox builds every instance,
    /// a lab's Debian and systemd ones included, in pg_ctl's layout before the lab hands it to its service.
    static var startsServices: Bool { get }
    /// The OS user that runs PostgreSQL on the hosts, by name (for messages).
    var postgresUser: String { get }
    /// ` on HOST` for messages about `instance`'s files and commands; empty on this host.
    func onHost(_ instance: Instance) -> String

    /// Runs `argv` on `instance`'s host as `user` (the OS user with the clean environment plus
    /// `environment`, in `workingDirectory`; or root, argv alone) and returns its result whatever its exit
    /// status. ``HostResult/unreachable`` says when the outcome is unknown (SSH could not reach the host).
    ///
    /// - Throws: when the command cannot be started, or runs past `timeout` (it is then ended).
    func run(
        _ argv: [String], on instance: Instance, as user: HostUser, environment: [String: String], workingDirectory: String,
        timeout: Double?
    ) async throws -> HostResult

    /// Runs `argv` on `instance`'s host as the OS user with its standard output written to `fd` on this host
    /// (bytes, for binary copies); the result carries no standard output.
    func stream(_ argv: [String], on instance: Instance, to fd: Int32, timeout: Double?) async throws -> HostResult

    /// The texts of `paths` on `instance`'s host, in order, read as the OS user: nil for a file proven not
    /// to exist; throws when one cannot be read or its existence cannot be told (one round trip for all).
    func read(_ paths: [String], on instance: Instance) async throws -> [String?]
    /// Replaces each file atomically (a new file in the same directory, renamed over it) with its text and
    /// mode, owned by the OS user, in order (one round trip for all).
    func write(_ files: [HostFile], on instance: Instance) async throws
    /// Appends `text` to the existing file at `path`, keeping its owner and mode.
    func append(_ text: String, to path: String, on instance: Instance) async throws
    /// Removes the file at `path`; nothing to do when it does not exist.
    func remove(_ path: String, on instance: Instance) async throws
    /// Creates the directory `path` (and missing parents) with `mode`, owned by the OS user.
    func makeDirectory(_ path: String, mode: Int, on instance: Instance) async throws
    /// True when something (a symbolic link included) is at `path`, false when it is proven not to be;
    /// throws when the host cannot tell (a directory above it that cannot be searched, a host cut off).
    func exists(_ path: String, on instance: Instance) async throws -> Bool

    /// What asking about a postmaster costs here, which decides when the driver asks.
    var postmasterCheck: PostmasterCheckCost { get }
    /// Whether a postmaster runs for `dataDirectory` on `instance`'s host.
    func postmaster(of dataDirectory: String, on instance: Instance) async -> PostmasterState
    /// When a postmaster runs for `dataDirectory`, runs `request` (the driver's `pg_ctl stop -W` or
    /// `pg_ctlcluster stop`) as the OS user and waits, up to `timeout` (a second after a failed request),
    /// until that postmaster is gone: the check, the request and the wait in one round trip.
    func stopPostmaster(
        of dataDirectory: String, request: [String], environment: [String: String], timeout: Double, on instance: Instance
    ) async throws -> PostmasterStop
}

extension HostTransport {
    /// Runs `argv` as the OS user in `/` with the clean environment plus `environment`.
    public func run(
        _ argv: [String], on instance: Instance, environment: [String: String] = [:], workingDirectory: String = "/",
        timeout: Double? = nil
    ) async throws -> HostResult {
        try await run(argv, on: instance, as: .postgres, environment: environment, workingDirectory: workingDirectory, timeout: timeout)
    }

    /// Runs a fixed POSIX shell script as the OS user with `arguments` as its positional parameters ($1…):
    /// the script is a constant of failoverd's and every value reaches it as a parameter, never as script text.
    public func script(
        _ script: String, _ arguments: [String] = [], on instance: Instance, environment: [String: String] = [:],
        timeout: Double? = nil
    ) async throws -> HostResult {
        try await run(["sh", "-c", script, "failoverd"] + arguments, on: instance, environment: environment, timeout: timeout)
    }

    /// The text of one file, or nil when it is proven not to exist.
    public func read(_ path: String, on instance: Instance) async throws -> String? {
        try await read([path], on: instance)[0]
    }
}

/// Who a command runs as on a host.
public enum HostUser: Sendable, Equatable {
    /// The plan's PostgreSQL OS user: every PostgreSQL tool and every file of an instance.
    case postgres
    /// root, for what only root may do there (the system manager's `systemctl start`): through `sudo -n --`
    /// and the argv alone over SSH, so that a sudoers rule can name the very command.
    case root
}

/// A file to write on a host.
public struct HostFile: Sendable, Equatable {
    /// Its absolute path.
    public var path: String
    /// Its whole text.
    public var text: String
    /// Its permission bits (0o600, 0o644…).
    public var mode: Int

    /// A file at `path` with `text` and `mode`.
    public init(_ path: String, _ text: String, mode: Int = 0o600) {
        self.path = path
        self.text = text
        self.mode = mode
    }
}

/// What a transport can tell of the postmaster of a data directory without SQL.
public enum PostmasterState: Sendable, Equatable {
    /// A postmaster runs for the data directory.
    case running
    /// Proven: none runs (or there is no data directory).
    case stopped
    /// The transport cannot tell (the host cannot be reached, the data directory cannot be looked at): why.
    case unknown(String)
}

/// What asking a transport about a postmaster costs.
public enum PostmasterCheckCost: Sendable, Equatable {
    /// Nothing worth counting (this host's /proc): asked first, before any SQL.
    case free
    /// A round trip to the host: asked when SQL does not answer, or alongside it once SQL is slow.
    case roundTrip
}

/// How a stop through ``HostTransport/stopPostmaster(of:request:environment:timeout:on:)`` went.
public enum PostmasterStop: Sendable {
    /// No postmaster ran: nothing was asked.
    case notRunning
    /// The request ran (its result) and the postmaster is gone.
    case stopped(HostResult)
    /// The request ran (its result) and the postmaster is still there, or whether it is cannot be told.
    case notStopped(HostResult, seen: PostmasterState)
    /// Whether a postmaster runs could not be told: nothing was asked.
    case unknown(String)
}
