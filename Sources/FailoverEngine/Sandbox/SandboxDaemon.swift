import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A long-running process the sandbox starts as its OS user (etcd, Patroni): its pid and start time are
/// kept in an identity file in a directory that user owns, and `stop()` signals only a process that still
/// matches them and runs as that user.
@_spi(Benchmarks) public struct SandboxDaemon: Sendable {
    /// What it is, for messages (`etcd on 127.0.0.1:2379`).
    let name: String
    /// The pid and start time file.
    let identityFile: String
    /// Where its stdout and stderr go.
    @_spi(Benchmarks) public let logFile: String
    /// Runs it (as its OS user).
    let runner: CommandRunner

    /// A daemon named `name` (for messages), recorded in `identityFile`, logging to `logFile`, started through `runner`.
    @_spi(Benchmarks) public init(name: String, identityFile: String, logFile: String, runner: CommandRunner) {
        self.name = name
        self.identityFile = identityFile
        self.logFile = logFile
        self.runner = runner
    }

    /// The recorded process, when it still runs with the same start time and as the runner's user.
    @_spi(Benchmarks) public var live: ProcessIdentity? {
        guard let parts = Files.read(identityFile)?.split(separator: " "), parts.count == 2, let pid = pid_t(parts[0]),
            let start = Double(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)),
            ProcessIdentity.matches(pid: pid, startTime: start, tolerance: 0.01),
            ProcessIdentity.realUID(pid) == (runner.user?.uid ?? geteuid())
        else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// Starts `argv` in the background unless it already runs; returns at once (the caller waits for
    /// readiness by condition).
    @_spi(Benchmarks) public func start(_ argv: [String], environment: [String: String] = [:]) async throws {
        if live != nil { return }
        let identity = try await Self.launch(argv, name: "sandbox: " + name, logFile: logFile, runner: runner, environment: environment)
        try Files.write("\(identity.pid) \(identity.startTime)\n", to: identityFile, mode: 0o600, owner: runner.user)
    }

    /// Starts `argv` in the background through `runner`, its output appended to `logFile`, stdin /dev/null;
    /// returns its pid and start time at once. `name` says what it is in messages.
    static func launch(
        _ argv: [String], name: String, logFile: String, runner: CommandRunner, environment: [String: String] = [:]
    ) async throws -> ProcessIdentity {
        let command = argv.map(ShellQuote.quote).joined(separator: " ")
        let launch = try await runner.run(
            "/bin/sh", ["-c", "\(command) >>\(ShellQuote.quote(logFile)) 2>&1 </dev/null & echo $!"], environment: environment
        ).checked()
        guard let pid = pid_t(launch.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), let identity = ProcessIdentity.of(pid) else {
            throw FailoverError.failed("\(name) did not start: \(launch.outputTail); see \(logFile).")
        }
        return identity
    }

    /// Records `pid` (a process that daemonized itself and wrote its own pid file) as this daemon.
    func record(_ pid: pid_t) throws {
        guard let identity = ProcessIdentity.of(pid) else {
            throw FailoverError.failed("sandbox: \(name) (pid \(pid)) exited right after it started")
        }
        try Files.write("\(pid) \(identity.startTime)\n", to: identityFile, mode: 0o600, owner: runner.user)
    }

    /// Stops it: SIGTERM, then SIGKILL after `grace` seconds.
    @_spi(Benchmarks) public func stop(grace: Double = 30) async {
        guard let identity = live else {
            unlink(identityFile)
            return
        }
        kill(identity.pid, SIGTERM)
        let gone =
            (try? await Poll.until("\(name) (pid \(identity.pid)) to exit", timeout: grace, interval: 0.05) {
                ProcessIdentity.matches(pid: identity.pid, startTime: identity.startTime, tolerance: 0.01) ? nil : true
            }) ?? false
        if !gone && ProcessIdentity.matches(pid: identity.pid, startTime: identity.startTime, tolerance: 0.01) {
            kill(identity.pid, SIGKILL)
            _ = try? await Poll.until("\(name) (pid \(identity.pid)) to exit after SIGKILL", timeout: 10, interval: 0.05) {
                ProcessIdentity.matches(pid: identity.pid, startTime: identity.startTime, tolerance: 0.01) ? nil : true
            }
        }
        unlink(identityFile)
    }
}
