import Crypto
import Foundation

/// What ran on a remote host: the remote command's own result, or the transport's failure.
public struct RemoteResult: Sendable {
    /// The ssh process's result (the remote command's exit status, or 255 when ssh itself failed).
    public var result: CommandResult
    /// The host it ran on, for messages.
    public var host: String

    /// True when ssh could not reach or log in to the host: the remote command's outcome is unknown.
    public var unreachable: Bool { result.exitCode == 255 }
    /// The remote command's exit status.
    public var exitCode: Int32 { result.exitCode }
    /// Standard output.
    public var stdout: String { result.stdout }
    /// The last lines of output, for messages.
    public var outputTail: String { result.outputTail.replacingOccurrences(of: "\r", with: "") }

    /// Returns self when the remote command succeeded; throws naming the host, the command and its output
    /// otherwise (an unreachable host says so: its state is unknown, never assumed).
    @discardableResult
    public func checked(_ hint: String = "") throws -> RemoteResult {
        if unreachable {
            throw FailoverError.failed(
                "cannot reach \(host) over SSH to run `\(result.commandLine)`: \(outputTail.isEmpty ? "(no output)" : outputTail). Check the network, sshd and the plan's ssh settings (user, identityFile, knownHostsFile)."
            )
        }
        guard result.succeeded else {
            throw FailoverError.failed(
                "`\(result.commandLine)` failed on \(host) with exit code \(exitCode): \(outputTail.isEmpty ? "(no output)" : outputTail).\(hint.isEmpty ? "" : " " + hint)"
            )
        }
        return self
    }
}

/// Runs argv on a remote host through OpenSSH, as the plan's OS user.
///
/// - Key authentication only (BatchMode, no password or keyboard-interactive), strict host key checking
///   against the plan's known_hosts file (or the user's own), no agent or X11 forwarding, no config file
///   (`-F none`): what runs does not depend on ~/.ssh/config.
/// - One multiplexed connection per host and login (ControlMaster), kept 60 s after its last use, so a
///   command costs a round trip instead of a handshake. The control sockets live in a directory of this
///   run's state directory's own (``controlDirectory(for:)``), 0700, owned by the user running failoverd.
/// - The remote command is built as argv and quoted once, as single-quoted words, for the login user's
///   POSIX shell (sshd hands the command line to that shell). When the login user is not the OS user, the
///   command runs through `sudo -n -u OSUSER --`; then `env -i` with a plain PATH and the C.UTF-8 locale,
///   and `sh -c 'cd "$1" && shift && exec "$@"'` to set the working directory: nothing else reads the words.
public struct RemoteShell: Sendable {
    /// The host to log in to.
    public var host: String
    /// The login settings.
    public var ssh: SSHSettings
    /// The OS user the commands run as.
    public var osUser: String
    /// Where the ControlMaster sockets live.
    public var controlDirectory: String
    /// The timeout of a command that gets none.
    public var defaultTimeout: Double

    /// The PATH of remote commands.
    public static let remotePath = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    /// The ssh client.
    static let sshExecutable = "/usr/bin/ssh"

    /// A shell for `host`.
    public init(host: String, ssh: SSHSettings, osUser: String, controlDirectory: String, defaultTimeout: Double = 60) {
        self.host = host
        self.ssh = ssh
        self.osUser = osUser
        self.controlDirectory = controlDirectory
        self.defaultTimeout = defaultTimeout
    }

    /// The directory of ControlMaster sockets for a run whose state directory is `stateDirectory`:
    /// `/tmp/failoverd-ssh-UID-HASH` (a unix socket path is at most 107 bytes, so not inside a long state path).
    /// Created 0700; refused when someone else owns it or could write it.
    public static func controlDirectory(for stateDirectory: String) throws -> String {
        let digest = SHA256.hash(data: Data(stateDirectory.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        let path = "/tmp/failoverd-ssh-\(geteuid())-\(digest)"
        try StateDirectory.prepare(path)
        return path
    }

    /// One word for a POSIX shell: single-quoted, with `'` written as `'\''`. Any byte string survives.
    public static func quote(_ word: String) -> String { ShellQuote.quote(word) }

    /// The command line sent to sshd for `argv`, run as the OS user in `workingDirectory`.
    public func remoteCommandLine(_ argv: [String], workingDirectory: String = "/", environment: [String: String] = [:]) -> String {
        var words: [String] = []
        if ssh.user != osUser { words += ["sudo", "-n", "-u", osUser, "--"] }
        words += ["env", "-i", "PATH=" + Self.remotePath, "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME=/", "USER=" + osUser]
        words += environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        words += ["sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", workingDirectory]
        words += argv
        return words.map(Self.quote).joined(separator: " ")
    }

    /// The ssh options: key authentication only, strict host keys, multiplexing, keep-alives, no forwarding.
    public var sshOptions: [String] {
        var options = [
            "-F", "none", "-T",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
            "-o", "HostbasedAuthentication=no",
            "-o", "GSSAPIAuthentication=no",
            "-o", "PubkeyAuthentication=yes",
            "-o", "PreferredAuthentications=publickey",
            "-o", "ForwardAgent=no",
            "-o", "ForwardX11=no",
            "-o", "ClearAllForwardings=yes",
            "-o", "ConnectTimeout=5",
            "-o", "ServerAliveInterval=2",
            "-o", "ServerAliveCountMax=2",
            "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto",
            "-o", "ControlPath=" + controlDirectory + "/%C",
            "-o", "ControlPersist=60",
            "-p", String(ssh.effectivePort),
            "-l", ssh.user,
        ]
        if let key = ssh.identityFile { options += ["-o", "IdentitiesOnly=yes", "-i", key] }
        if let known = ssh.knownHostsFile {
            options += ["-o", "UserKnownHostsFile=" + known, "-o", "GlobalKnownHostsFile=/dev/null"]
        }
        return options
    }

    /// Runs `argv` on the host as the OS user; the result carries the remote exit status (255: ssh failed).
    ///
    /// It goes through a long-lived shell on the host (``RemoteSession``) when one is idle or can be started,
    /// else as a one-shot ssh command; both run as the OS user with the same clean environment and give the
    /// same answers (255 when SSH cannot reach the host or the outcome is unknown). `FAILOVERD_SSH_SESSIONS=off`
    /// in failoverd's environment keeps to one-shot commands.
    public func run(_ argv: [String], workingDirectory: String = "/", environment: [String: String] = [:], timeout: Double? = nil)
        async throws -> RemoteResult
    {
        if Self.sessionsEnabled {
            do {
                if let session = try await RemoteSession.acquire(for: self) {
                    let limit = timeout ?? defaultTimeout
                    var (result, timedOut) = await session.run(
                        RemoteSession.requestLine(argv, workingDirectory: workingDirectory, environment: environment), timeout: limit)
                    result.commandLine = display(argv)
                    if timedOut {
                        throw FailoverError.failed(
                            "`\(result.commandLine)` did not finish within \(Int(limit)) s and its SSH session was ended. Raise policy.stepTimeoutSeconds or look at why it hangs on \(host)."
                        )
                    }
                    trace(result)
                    return RemoteResult(result: result, host: host)
                }
            } catch let unreachable as RemoteSession.Unreachable {
                var result = unreachable.result
                result.commandLine = display(argv)
                return RemoteResult(result: result, host: host)
            } catch is RemoteSession.Unavailable {
                // The one-shot path below reports why (sudo refused, say).
            }
        }
        return try await send(
            remoteCommandLine(argv, workingDirectory: workingDirectory, environment: environment), shown: argv, timeout: timeout)
    }

    /// Another failoverd process of the same state directory may have ended the masters and removed the
    /// control directory (closeAll); it is recreated, with the same checks, whenever it is missing.
    func ensureControlDirectory() throws {
        if !FileManager.default.fileExists(atPath: controlDirectory) { try StateDirectory.prepare(controlDirectory) }
    }

    /// False when `FAILOVERD_SSH_SESSIONS=off`: every command is a one-shot ssh.
    static let sessionsEnabled = ProcessInfo.processInfo.environment["FAILOVERD_SSH_SESSIONS"] != "off"

    /// The remote argv as messages show it: a script as its first line, not the whole text.
    func display(_ argv: [String]) -> String {
        var shown = argv
        if shown.count > 2, shown[0] == "sh", shown[1] == "-c" {
            let first = shown[2].split(separator: "\n").first.map(String.init) ?? ""
            shown[2] = shown[2].contains("\n") ? first + " …" : first
        }
        return "ssh \(ssh.user)@\(host) " + shown.map(CommandRunner.displayQuoted).joined(separator: " ")
    }

    func trace(_ result: CommandResult) {
        if ProcessInfo.processInfo.environment["FAILOVERD_SSH_TRACE"] != nil {
            FileHandle.standardError.write(
                Data(
                    "TRACE \(Date().timeIntervalSince1970) \(String(format: "%.4f", result.seconds)) \(host) \(result.commandLine.prefix(110))\n"
                        .utf8))
        }
    }

    /// Sends one command line to sshd; messages show `shown`.
    func send(_ line: String, shown argv: [String], timeout: Double?) async throws -> RemoteResult {
        try ensureControlDirectory()
        var result = try await CommandRunner(user: nil, defaultTimeout: defaultTimeout).run(
            Self.sshExecutable, sshOptions + ["--", host, line], timeout: timeout)
        // Messages show the remote argv, not the ssh options.
        result.commandLine = display(argv)
        trace(result)
        return RemoteResult(result: result, host: host)
    }

    /// The command line sent to sshd for a command that needs root on the host: `sudo -n -- ARGV` exactly
    /// (no environment or directory wrapper, so a sudoers rule can name the very command), or ARGV itself
    /// when the login user is root.
    public func privilegedCommandLine(_ argv: [String]) -> String {
        ((ssh.user == "root" ? [] : ["sudo", "-n", "--"]) + argv).map(Self.quote).joined(separator: " ")
    }

    /// Runs `argv` on the host as root (``privilegedCommandLine(_:)``).
    public func runPrivileged(_ argv: [String], timeout: Double? = nil) async throws -> RemoteResult {
        try await send(privilegedCommandLine(argv), shown: argv, timeout: timeout)
    }

    /// Runs a fixed POSIX shell script with `arguments` as its positional parameters ($1…); the script is a
    /// constant of failoverd's and every value reaches it as a parameter, never as script text.
    public func script(
        _ script: String, _ arguments: [String] = [], workingDirectory: String = "/", environment: [String: String] = [:],
        timeout: Double? = nil
    ) async throws -> RemoteResult {
        try await run(
            ["sh", "-c", script, "failoverd"] + arguments, workingDirectory: workingDirectory, environment: environment, timeout: timeout)
    }

    /// Ends every multiplexed connection of the run whose state directory is `stateDirectory`: the masters
    /// are found by their control path (by pid, from /proc), sent SIGTERM, and the directory is removed.
    /// A master whose host was cut off would not answer `ssh -O exit`; this does not ask it.
    public static func closeAll(stateDirectory: String) async {
        let digest = SHA256.hash(data: Data(stateDirectory.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        let directory = "/tmp/failoverd-ssh-\(geteuid())-\(digest)"
        RemoteSession.closeAll(controlDirectory: directory)
        guard FileManager.default.fileExists(atPath: directory) else { return }
        await ProcessTable.end {
            ProcessTable.pids(uid: geteuid()) { argv in
                argv.first?.hasSuffix("ssh") == true && argv.contains("ControlPath=" + directory + "/%C")
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Closes this host's multiplexed connection (`ssh -O exit`); nothing to do when none runs.
    public func closeMaster() async {
        _ = try? await CommandRunner(user: nil, defaultTimeout: 10).run(Self.sshExecutable, sshOptions + ["-O", "exit", "--", host])
    }
}
