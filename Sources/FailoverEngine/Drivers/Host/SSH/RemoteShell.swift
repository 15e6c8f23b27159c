import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs argv on a remote host through OpenSSH, as the plan's OS user.
///
/// - Key authentication only (BatchMode, no password or keyboard-interactive), strict host key checking
///   against the plan's known_hosts file (or the user's own), no agent or X11 forwarding, no config file
///   (`-F none`): what runs does not depend on ~/.ssh/config.
/// - One multiplexed connection per host and login (ControlMaster), kept 60 s after its last use, so a
///   command costs a round trip instead of a handshake. The control sockets live in the state directory
///   (`STATE/ssh`, ``controlDirectoryPath(for:)``), 0700, owned by the user running failoverd.
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

    /// The directory of ControlMaster sockets for a run whose state directory is `stateDirectory`, created
    /// (0700, owned by the user running failoverd; refused when someone else owns it or could write it).
    /// See ``controlDirectoryPath(for:)``.
    public static func controlDirectory(for stateDirectory: String) throws -> String {
        let path = try controlDirectoryPath(for: stateDirectory)
        try prepareControlDirectory(path)
        return path
    }

    /// Where the ControlMaster sockets of `stateDirectory` live, somewhere only failoverd's user can create
    /// anything: `STATE/ssh`, in failoverd's own 0700 state directory; when that path is too long for a unix
    /// socket (at most 107 bytes, with ssh's temporary suffix), `/run/failoverd/ssh-HASH` as root (only root
    /// creates in /run), else `$XDG_RUNTIME_DIR/failoverd-ssh-HASH` when the runtime directory is the user's
    /// own; otherwise it refuses, asking for a shorter state directory.
    public static func controlDirectoryPath(for stateDirectory: String) throws -> String {
        let own = (stateDirectory.hasSuffix("/") ? String(stateDirectory.dropLast()) : stateDirectory) + "/ssh"
        if own.utf8.count <= maximumControlDirectoryLength { return own }
        let digest = SHA256.hash(data: Data(stateDirectory.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        if OSUser.isRoot { return "/run/failoverd/ssh-" + digest }
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], runtime.hasPrefix("/") {
            var status = stat()
            let path = runtime + "/failoverd-ssh-" + digest
            if lstat(runtime, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, status.st_uid == geteuid(), status.st_mode & 0o077 == 0,
                path.utf8.count <= maximumControlDirectoryLength
            {
                return path
            }
        }
        throw FailoverError.invalid(
            "state directory \(stateDirectory) is too long for the SSH driver's control sockets (\(own) may have at most \(maximumControlDirectoryLength) bytes: a unix socket path has at most 107). Use a shorter --state, or set XDG_RUNTIME_DIR to a directory of your own."
        )
    }

    /// The longest control directory: ControlPath is DIR/ + 16 hex digits, and ssh binds DIR/NAME.XXXXXXXXXXXXXXXX
    /// (17 more bytes) before renaming it; a unix socket path has at most 107 bytes.
    static let maximumControlDirectoryLength = 107 - 1 - 16 - 17

    /// Creates the control directory (0700) or checks the one there: owned by the user running failoverd,
    /// writable by no one else, not a symbolic link. `STATE/ssh`'s state directory is prepared first, so that
    /// it is never created with a parent's mode.
    static func prepareControlDirectory(_ path: String) throws {
        if (path as NSString).lastPathComponent == "ssh" { try StateDirectory.prepare((path as NSString).deletingLastPathComponent) }
        try StateDirectory.prepare(path)
    }

    /// The ControlPath of this host and login: a short name of its own (not `%C`, 40 digits), so that the
    /// socket path stays within the limit.
    public var controlPath: String {
        let name = SHA256.hash(data: Data("\(ssh.user)@\(host):\(ssh.effectivePort)".utf8)).prefix(8).map { String(format: "%02x", $0) }
            .joined()
        return controlDirectory + "/" + name
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
            "-o", "ControlPath=" + controlPath,
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
        async throws -> HostResult
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
                    return HostResult(result: result, host: host)
                }
            } catch let unreachable as RemoteSession.Unreachable {
                var result = unreachable.result
                result.commandLine = display(argv)
                return HostResult(result: result, host: host)
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
        if !Files.exists(controlDirectory) { try Self.prepareControlDirectory(controlDirectory) }
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
    func send(_ line: String, shown argv: [String], timeout: Double?) async throws -> HostResult {
        try ensureControlDirectory()
        var result = try await CommandRunner(user: nil, defaultTimeout: defaultTimeout).run(
            Self.sshExecutable, sshOptions + ["--", host, line], timeout: timeout)
        // Messages show the remote argv, not the ssh options.
        result.commandLine = display(argv)
        trace(result)
        return HostResult(result: result, host: host)
    }

    /// The command line sent to sshd for a command that needs root on the host: `sudo -n -- ARGV` exactly
    /// (no environment or directory wrapper, so a sudoers rule can name the very command), or ARGV itself
    /// when the login user is root.
    public func privilegedCommandLine(_ argv: [String]) -> String {
        ((ssh.user == "root" ? [] : ["sudo", "-n", "--"]) + argv).map(Self.quote).joined(separator: " ")
    }

    /// Runs `argv` on the host as root (``privilegedCommandLine(_:)``).
    public func runPrivileged(_ argv: [String], timeout: Double? = nil) async throws -> HostResult {
        try await send(privilegedCommandLine(argv), shown: argv, timeout: timeout)
    }

    /// Runs a fixed POSIX shell script with `arguments` as its positional parameters ($1…); the script is a
    /// constant of failoverd's and every value reaches it as a parameter, never as script text.
    public func script(
        _ script: String, _ arguments: [String] = [], workingDirectory: String = "/", environment: [String: String] = [:],
        timeout: Double? = nil
    ) async throws -> HostResult {
        try await run(
            ["sh", "-c", script, "failoverd"] + arguments, workingDirectory: workingDirectory, environment: environment, timeout: timeout)
    }

    /// Ends every multiplexed connection of the run whose state directory is `stateDirectory`: the masters
    /// are found by their control path (by pid, from /proc), sent SIGTERM, and their sockets removed, then the
    /// directory if nothing else is left in it. A master whose host was cut off would not answer
    /// `ssh -O exit`; this does not ask it. Only what failoverd made is removed, and no link is followed:
    /// a control directory that is a symbolic link, or is not failoverd's user's own, is left alone.
    public static func closeAll(stateDirectory: String) async {
        guard let directory = try? controlDirectoryPath(for: stateDirectory) else { return }
        RemoteSession.closeAll(controlDirectory: directory)
        var status = stat()
        guard lstat(directory, &status) == 0, status.st_mode & S_IFMT == S_IFDIR, status.st_uid == geteuid() else { return }
        await ProcessTable.end {
            ProcessTable.pids(uid: geteuid()) { argv in
                argv.first?.hasSuffix("ssh") == true && argv.contains { $0.hasPrefix("ControlPath=" + directory + "/") }
            }
        }
        removeControlDirectory(directory)
    }

    /// Removes the sockets in `directory` that belong to the user running failoverd, then the directory when
    /// that left it empty; opened without following a link, anything else in it is left where it is.
    static func removeControlDirectory(_ directory: String) {
        guard let parent = try? Directory.open((directory as NSString).deletingLastPathComponent) else { return }
        defer { close(parent.fd) }
        let name = (directory as NSString).lastPathComponent
        let fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_uid == geteuid(), let stream = fdopendir(dup(fd)) else {
            close(fd)
            return
        }
        var names: [String] = []
        while let entry = readdir(stream) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if entryName != "." && entryName != ".." { names.append(entryName) }
        }
        closedir(stream)
        for entryName in names {
            var entry = stat()
            if fstatat(fd, entryName, &entry, AT_SYMLINK_NOFOLLOW) == 0, entry.st_mode & S_IFMT == S_IFSOCK, entry.st_uid == geteuid() {
                unlinkat(fd, entryName, 0)
            }
        }
        close(fd)
        unlinkat(parent.fd, name, AT_REMOVEDIR)
    }

    /// Closes this host's multiplexed connection (`ssh -O exit`); nothing to do when none runs.
    public func closeMaster() async {
        _ = try? await CommandRunner(user: nil, defaultTimeout: 10).run(Self.sshExecutable, sshOptions + ["-O", "exit", "--", host])
    }
}
