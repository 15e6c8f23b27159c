import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a finished command left behind.
public struct CommandResult: Sendable {
    /// The command line as shown in messages (arguments never carry secrets).
    public var commandLine: String
    /// The exit status (or the terminating signal number + 128).
    public var exitCode: Int32
    /// Everything the command wrote to standard output.
    public var stdout: String
    /// Everything the command wrote to standard error.
    public var stderr: String
    /// Wall-clock seconds from launch to exit.
    public var seconds: Double

    /// True when the command exited with status 0.
    public var succeeded: Bool { exitCode == 0 }

    /// The last lines of standard error (or of standard output when standard error is empty), for messages.
    public var outputTail: String {
        let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? stdout : stderr
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).suffix(6)
        let tail = lines.joined(separator: " | ")
        return tail.count > 900 ? "…" + String(tail.suffix(900)) : tail
    }

    /// Returns self when the command succeeded; otherwise throws an error naming the command and its output tail.
    @discardableResult
    public func checked(_ hint: String = "") throws -> CommandResult {
        guard succeeded else {
            let advice = hint.isEmpty ? "" : " " + hint
            throw FailoverError.failed(
                "`\(commandLine)` failed with exit code \(exitCode) after \(String(format: "%.1f", seconds)) s: \(outputTail.isEmpty ? "(no output)" : outputTail).\(advice)"
            )
        }
        return self
    }
}

/// Runs executables with arguments, environment, working directory and a timeout, capturing their output.
///
/// Commands are started with posix_spawn (``Spawner``) rather than Foundation.Process: on Linux,
/// Foundation.Process learns that a child exited when a socket the child inherits is closed, so a daemon
/// the child starts (`pg_ctl start` leaves a postmaster behind) keeps that socket open and the Process
/// never reports termination: `pg_ctl start` hung forever. Here the child keeps no descriptor but 0, 1, 2,
/// and exit is learnt from waitpid.
///
/// When this process runs as root and ``user`` is set, the command runs as that unprivileged user
/// (through `setpriv --reuid --regid --init-groups`). Every command gets a clean environment: HOME, USER,
/// LOGNAME, a plain PATH and the C.UTF-8 locale, plus what the caller adds. Nothing of the caller's
/// environment (PGPASSWORD included) leaks into the command; pgBackRest's `PGBACKREST_*` settings (cloud
/// credentials among them) reach only the runners that ask for them (``forwardsRepositoryEnvironment``:
/// the PostgreSQL tools and the servers they start), never a fencing hook, ssh or curl. Passwords never
/// travel as arguments: PostgreSQL tools read them from a libpq passfile.
public struct CommandRunner: Sendable {
    /// The account commands run as when this process is root; nil runs them as this process's user.
    public var user: OSUser?
    /// The timeout applied when ``run(_:_:environment:workingDirectory:timeout:)`` gets none.
    public var defaultTimeout: Double
    /// True when commands get the `PGBACKREST_*` variables of ``inheritedEnvironment``: for pgBackRest and
    /// the PostgreSQL servers whose archive_command and restore_command run it; false for everything else.
    public var forwardsRepositoryEnvironment: Bool
    /// The environment the `PGBACKREST_*` variables are taken from (this process's own by default).
    public var inheritedEnvironment: [String: String]

    /// The PATH given to every command.
    public static let searchPath = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

    /// Creates a runner that runs commands as `user` when this process is root, passing on pgBackRest's
    /// settings only with `forwardsRepositoryEnvironment`.
    public init(
        user: OSUser? = nil, defaultTimeout: Double = 120, forwardsRepositoryEnvironment: Bool = false,
        inheritedEnvironment: [String: String] = ProcessInfo.processInfo.environment
    ) {
        self.user = user
        self.defaultTimeout = defaultTimeout
        self.forwardsRepositoryEnvironment = forwardsRepositoryEnvironment
        self.inheritedEnvironment = inheritedEnvironment
    }

    /// Runs `executable` (a path, or a name looked up in ``searchPath``) and waits for it to exit.
    ///
    /// - Returns: the result, whatever the exit code; call ``CommandResult/checked(_:)`` to require success.
    /// - Throws: ``FailoverError`` when the command cannot be launched or runs past `timeout` (it is then
    ///   sent SIGTERM, and SIGKILL two seconds later).
    /// - Parameter standardOutput: a descriptor that receives the command's standard output instead of the
    ///   result (binary copies, long listings); the result's `stdout` is then empty.
    public func run(
        _ executable: String, _ arguments: [String] = [], environment: [String: String] = [:],
        workingDirectory: String? = nil, timeout: Double? = nil, standardOutput: Int32? = nil
    ) async throws -> CommandResult {
        try await run(
            executable, arguments, opened: nil, environment: environment, workingDirectory: workingDirectory, timeout: timeout,
            standardOutput: standardOutput)
    }

    /// Runs the file open at `descriptor` (from ``TrustedPath/openExecutable(_:)``), shown as `executable`:
    /// the checked file itself, never its path looked up again. As this process's user only.
    func run(
        opened descriptor: Int32, shownAs executable: String, _ arguments: [String], timeout: Double? = nil
    ) async throws -> CommandResult {
        precondition(user == nil, "a descriptor is run as failoverd's own user")
        return try await run(
            executable, arguments, opened: descriptor, environment: [:], workingDirectory: nil, timeout: timeout, standardOutput: nil)
    }

    /// The environment a command gets: the clean base for `account`, `PGBACKREST_*` when this runner
    /// forwards them, then `extra`.
    func environment(for account: OSUser, adding extra: [String: String]) -> [String: String] {
        var env = [
            "HOME": account.home, "USER": account.name, "LOGNAME": account.name, "PATH": Self.searchPath,
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        ]
        // pgBackRest reads repository settings (cloud credentials among them) from PGBACKREST_* variables:
        // they pass through to the runners that need them; nothing else of the caller's environment does.
        if forwardsRepositoryEnvironment {
            for (key, value) in inheritedEnvironment where key.hasPrefix("PGBACKREST_") { env[key] = value }
        }
        env.merge(extra) { _, new in new }
        return env
    }

    private func run(
        _ executable: String, _ arguments: [String], opened descriptor: Int32?, environment: [String: String],
        workingDirectory: String?, timeout: Double?, standardOutput: Int32?
    ) async throws -> CommandResult {
        let path = descriptor == nil ? try Self.resolve(executable) : executable
        let commandLine = ([(executable as NSString).lastPathComponent] + arguments).map(Self.displayQuoted).joined(separator: " ")
        let limit = timeout ?? defaultTimeout
        let runAs = OSUser.isRoot ? user.flatMap { $0.uid == 0 ? nil : $0 } : nil
        let launchPath = runAs == nil ? path : "/usr/bin/setpriv"
        let argv =
            runAs.map { ["setpriv", "--reuid=\($0.uid)", "--regid=\($0.gid)", "--init-groups", "--", path] + arguments } ?? [path]
            + arguments
        let env = self.environment(for: runAs ?? OSUser.current, adding: environment)

        let started = ContinuousClock.now
        let child = try ChildProcess.start(
            launchPath, argv, environment: env.map { "\($0.key)=\($0.value)" }, workingDirectory: workingDirectory ?? "/",
            commandLine: commandLine, executable: descriptor, standardOutput: standardOutput)
        // At the deadline: SIGTERM to the child's process group, SIGKILL two seconds later. Set under its own
        // lock, so once the child is reaped `expired` says whether the deadline, not the command, ended it.
        let expired = Locked(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) { [weak child] in
            guard let child else { return }
            expired.withLock { $0 = child.terminate() }
        }
        let termination = await withTaskCancellationHandler {
            await child.wait()
        } onCancel: {
            child.terminate()
        }
        let result = CommandResult(
            commandLine: commandLine, exitCode: termination.status, stdout: child.outputSoFar(), stderr: child.errorSoFar(),
            seconds: Self.seconds(since: started))
        if expired.current {
            throw FailoverError.failed(
                "`\(commandLine)` did not finish within \(Int(limit)) s and was killed: \(result.outputTail.isEmpty ? "(no output)" : result.outputTail). Raise policy.stepTimeoutSeconds or look at why it hangs."
            )
        }
        return result
    }

    /// Resolves a bare command name against ``searchPath``.
    static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") { return executable }
        for dir in searchPath.split(separator: ":") {
            let candidate = "\(dir)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw FailoverError.invalid("\(executable) was not found in \(searchPath): install it (e.g. apt-get install \(executable)).")
    }

    /// An argument as shown in messages: quoted when it holds spaces or shell characters.
    static func displayQuoted(_ argument: String) -> String {
        let plain = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_=./:,@%+"))
        if !argument.isEmpty, argument.unicodeScalars.allSatisfy(plain.contains) { return argument }
        return ShellQuote.quote(argument)
    }

    /// Seconds from `start` until now.
    @_spi(Benchmarks) public static func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// Quoting for /bin/sh, used where PostgreSQL hands a string to the shell (pg_ctl -o, archive_command).
public enum ShellQuote {
    /// `text` in single quotes, safe as one shell word.
    public static func quote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
