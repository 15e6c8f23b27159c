import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// This host, as a ``HostTransport``: commands through ``CommandRunner`` as the PostgreSQL OS user
/// (posix_spawn, `setpriv` when failoverd runs as root), files through ``Files`` (walked from `/` without
/// following a link the OS user could have planted, written as that user where it can write), and the
/// postmaster found by its pid file and proven in /proc (``Postmaster``).
public struct LocalHost: HostTransport {
    /// Sites of driver `local` live here.
    public static let driverKind = DriverKind.local
    /// pg_ctl only, in the data directory's layout: an instance's `service` does not apply here.
    public static let startsServices = false

    /// The OS user that runs PostgreSQL: the plan's when failoverd runs as root, else failoverd's own.
    public let osUser: OSUser
    /// Runs commands as ``osUser``, pgBackRest's `PGBACKREST_*` settings passed on (the PostgreSQL tools
    /// and the servers whose archive_command and restore_command run pgBackRest need them).
    public let runner: CommandRunner

    /// This host, its PostgreSQL run by `osUser`; commands without a timeout of their own get `defaultTimeout`.
    public init(osUser: OSUser, defaultTimeout: Double) {
        self.osUser = osUser
        runner = CommandRunner(user: osUser, defaultTimeout: defaultTimeout, forwardsRepositoryEnvironment: true)
    }

    public var postgresUser: String { osUser.name }

    /// Messages about this host's files name no host.
    public func onHost(_ instance: Instance) -> String { "" }

    public func run(
        _ argv: [String], on instance: Instance, as user: HostUser, environment: [String: String], workingDirectory: String,
        timeout: Double?
    ) async throws -> HostResult {
        guard let executable = argv.first else { throw FailoverError.invalid("no command to run on this host") }
        let runner = user == .postgres ? runner : CommandRunner(user: nil, defaultTimeout: runner.defaultTimeout)
        return HostResult(
            result: try await runner.run(
                executable, Array(argv.dropFirst()), environment: environment, workingDirectory: workingDirectory, timeout: timeout))
    }

    public func stream(_ argv: [String], on instance: Instance, to fd: Int32, timeout: Double?) async throws -> HostResult {
        guard let executable = argv.first else { throw FailoverError.invalid("no command to run on this host") }
        return HostResult(result: try await runner.run(executable, Array(argv.dropFirst()), timeout: timeout, standardOutput: fd))
    }

    public func read(_ paths: [String], on instance: Instance) async throws -> [String?] {
        try paths.map { try Files.readText($0, owner: osUser) }
    }

    public func write(_ files: [HostFile], on instance: Instance) async throws {
        for file in files { try Files.write(file.text, to: file.path, mode: mode_t(file.mode), owner: osUser) }
    }

    public func append(_ text: String, to path: String, on instance: Instance) async throws {
        try Files.append(text, to: path, owner: osUser)
    }

    public func remove(_ path: String, on instance: Instance) async throws {
        try Files.removeFile(path, owner: osUser)
    }

    public func makeDirectory(_ path: String, mode: Int, on instance: Instance) async throws {
        try Files.makeDirectory(path, mode: mode_t(mode), owner: osUser)
    }

    /// lstat(2): a symbolic link counts; ENOENT and ENOTDIR prove absence; any other error is "cannot tell".
    public func exists(_ path: String, on instance: Instance) async throws -> Bool {
        var status = stat()
        if lstat(path, &status) == 0 { return true }
        let code = errno
        if code == ENOENT || code == ENOTDIR { return false }
        throw FailoverError.failed(
            "cannot tell whether \(path) exists: \(String(cString: strerror(code))). Check the directories above it.")
    }

    /// Free: /proc is read in process.
    public var postmasterCheck: PostmasterCheckCost { .free }

    /// Running only when /proc proves a postgres of that data directory (``Postmaster/livePID(in:)``).
    public func postmaster(of dataDirectory: String, on instance: Instance) async -> PostmasterState {
        Postmaster.livePID(in: dataDirectory) == nil ? .stopped : .running
    }

    /// The request runs as the OS user; the wait is for the proven postmaster's own pid, looked at every 5 ms
    /// (pg_ctl's `-w` looks every 100 ms, which a switchover's write outage would pay).
    public func stopPostmaster(
        of dataDirectory: String, request: [String], environment: [String: String], timeout: Double, on instance: Instance
    ) async throws -> PostmasterStop {
        guard let pid = Postmaster.livePID(in: dataDirectory) else { return .notRunning }
        let result = try await run(request, on: instance, environment: environment, timeout: timeout + 15)
        if await Postmaster.waitForExit(pid, seconds: result.succeeded ? timeout : 1) { return .stopped(result) }
        return .notStopped(result, seen: .running)
    }
}
