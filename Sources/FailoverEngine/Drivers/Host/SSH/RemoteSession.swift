import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A long-lived shell on a host, as the OS user, reached through the host's multiplexed SSH connection:
/// a command costs one fork on the host instead of an ssh client, an SSH session, a login shell and sudo
/// (about 17 ms on a LAN, most of it sudo and the session). Switchover and failover send a dozen commands
/// inside the write-unavailability window, so this is where a remote site's window is won.
///
/// The shell is `sh -c LOOP` started exactly like a one-shot command (`sudo -n -u OSUSER -- env -i … sh`):
/// same user, same clean environment. Each request is one line: the argv quoted for the shell (newlines
/// written as `"$nl"`), run in a subshell with stdin /dev/null; its stdout comes back as is, then a trailer
/// with the exit status and standard error, framed by a token failoverd chose for this session.
///
/// One request at a time per session; a busy host gets a second session, up to ``maximumPerHost``, and
/// beyond that the one-shot path. Fail closed: a session that dies or stops answering in the middle of a
/// request gives exit 255 (unreachable: the command's outcome is unknown), exactly as a one-shot ssh does;
/// one that cannot start because SSH cannot reach the host gives that same answer at once, without a
/// second attempt; one that cannot start for another reason (sudo refuses) leaves the one-shot path to
/// report why.
final class RemoteSession: @unchecked Sendable {
    /// Sessions kept per host and login.
    static let maximumPerHost = 3

    let key: String
    let host: String
    private let socket: Int32
    private let pid: pid_t
    private let stderrFile: Int32
    private let token: String
    private var buffer: [UInt8] = []
    private let lock = NSLock()
    private var busy = false
    private var dead = false

    private init(key: String, host: String, socket: Int32, pid: pid_t, stderrFile: Int32, token: String) {
        self.key = key
        self.host = host
        self.socket = socket
        self.pid = pid
        self.stderrFile = stderrFile
        self.token = token
    }

    /// The loop the host runs. `$nl` is a newline for request lines; fd 3 is the session's stdout.
    static let loop = #"""
        IFS= read -r tok || exit 0
        nl='
        '
        printf 'ready %s\n' "$tok"
        while IFS= read -r line; do
          e=$( (eval "$line") </dev/null 2>&1 1>&3 3>&- ); rc=$?
          printf '\n%s %s\n%s\n%s.\n' "$tok" "$rc" "$e" "$tok"
        done 3>&1
        """#

    /// The request line for `argv` run in `workingDirectory` with `environment` added: every word
    /// single-quoted, a newline inside one written as `'"$nl"'`, so the line holds no newline.
    static func requestLine(_ argv: [String], workingDirectory: String, environment: [String: String]) -> String {
        func word(_ text: String) -> String {
            RemoteShell.quote(text).replacingOccurrences(of: "\n", with: "'\"$nl\"'")
        }
        var parts = ["cd " + word(workingDirectory)]
        parts += environment.sorted { $0.key < $1.key }.map { "export \($0.key)=\(word($0.value))" }
        parts.append("exec " + argv.map(word).joined(separator: " "))
        return parts.joined(separator: " && ")
    }

    // MARK: Registry

    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var sessions: [String: [RemoteSession]] = [:]
    /// Sessions being started per key: they count against ``maximumPerHost`` from the moment they are decided.
    nonisolated(unsafe) private static var starting: [String: Int] = [:]

    /// An idle session of `shell`'s host, started when none is idle and fewer than ``maximumPerHost`` exist
    /// or are starting; nil when all are busy. A session this returns is claimed and alive: concurrent first
    /// commands each get a session of their own or nil (the one-shot path), never one closed under them.
    /// Throws ``Unreachable`` when SSH cannot reach the host, ``Unavailable`` when a session cannot start for
    /// another reason.
    static func acquire(for shell: RemoteShell) async throws -> RemoteSession? {
        let key = shell.controlDirectory + "|" + shell.ssh.user + "@" + shell.host + ":\(shell.ssh.effectivePort)|" + shell.osUser
        let claimed: RemoteSession?? = registryLock.withLock {
            sessions[key] = sessions[key]?.filter { !$0.isDead }
            if let idle = sessions[key]?.first(where: { $0.tryClaim() }) { return .some(idle) }
            // tryClaim drops the ones it found ended: they leave room for a new one.
            sessions[key] = sessions[key]?.filter { !$0.isDead }
            guard (sessions[key]?.count ?? 0) + starting[key, default: 0] < maximumPerHost else { return .some(nil) }
            starting[key, default: 0] += 1
            return .none
        }
        if let claimed { return claimed }
        let session: RemoteSession
        do {
            session = try await start(shell, key: key)
        } catch {
            registryLock.withLock { starting[key, default: 1] -= 1 }
            throw error
        }
        registryLock.withLock {
            starting[key, default: 1] -= 1
            sessions[key, default: []].append(session)
        }
        return session
    }

    /// Ends every session whose control directory is `controlDirectory` (their EOF ends the remote loops).
    static func closeAll(controlDirectory: String) {
        let ended = registryLock.withLock { () -> [RemoteSession] in
            let keys = sessions.keys.filter { $0.hasPrefix(controlDirectory + "|") }
            defer { keys.forEach { sessions[$0] = nil } }
            return keys.flatMap { sessions[$0] ?? [] }
        }
        ended.forEach { $0.markDeadAndClose() }
    }

    /// SSH could not reach or log in to the host (ssh exit 255).
    struct Unreachable: Error { let result: CommandResult }
    /// The session could not start for another reason; the one-shot path will say why.
    struct Unavailable: Error {}

    /// Starts a session: `ssh … HOST 'sudo -n -u OSUSER -- env -i … sh -c LOOP'`, then the token and its echo.
    private static func start(_ shell: RemoteShell, key: String) async throws -> RemoteSession {
        do { try shell.ensureControlDirectory() } catch { throw Unavailable() }
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { throw Unavailable() }
        var template = Array((NSTemporaryDirectory() + "/failoverd-session-XXXXXX").utf8CString)
        let stderrFile = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard stderrFile >= 0 else {
            close(pair[0])
            close(pair[1])
            throw Unavailable()
        }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let line = shell.remoteCommandLine(["sh", "-c", loop, "failoverd-session"])
        let argv = [RemoteShell.sshExecutable] + shell.sshOptions + ["--", shell.host, line]
        let env = ["PATH=" + CommandRunner.searchPath, "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME=" + OSUser.current.home]
        let pid: pid_t
        do {
            pid = try Spawner.spawn(
                RemoteShell.sshExecutable, argv, environment: env, workingDirectory: "/", stdin: pair[1], stdout: pair[1],
                stderr: stderrFile, commandLine: "ssh \(shell.host) (session)")
        } catch {
            close(pair[0])
            close(pair[1])
            close(stderrFile)
            throw Unavailable()
        }
        close(pair[1])
        let token = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let session = RemoteSession(key: key, host: shell.host, socket: pair[0], pid: pid, stderrFile: stderrFile, token: token)
        session.busy = true
        let started = ContinuousClock.now
        let ready = await session.blocking { () -> Bool in
            guard session.send(token + "\n") else { return false }
            return session.readUntil("ready \(token)\n", deadline: Date().addingTimeInterval(10)) != nil
        }
        if ready { return session }
        // It did not answer: its ssh exit status says whether the host could not be reached.
        let status = await session.blocking { session.closeAndReap(within: 2) }
        let stderr = session.stderrText()
        if status == 255 {
            throw Unreachable(
                result: CommandResult(
                    commandLine: "ssh \(shell.host)", exitCode: 255, stdout: "", stderr: stderr,
                    seconds: CommandRunner.seconds(since: started)))
        }
        throw Unavailable()
    }

    // MARK: One request

    /// Runs one request; the result carries the remote exit status, or 255 when the session died or did not
    /// answer within `timeout` (then it is ended; the command's outcome is unknown).
    func run(_ request: String, timeout: Double) async -> (CommandResult, timedOut: Bool) {
        let started = ContinuousClock.now
        let deadline = Date().addingTimeInterval(timeout)
        let reply = await blocking { () -> (stdout: [UInt8], status: Int32, stderr: [UInt8])? in
            guard self.send(request + "\n"), let out = self.readUntil("\n\(self.token) ", deadline: deadline),
                let statusLine = self.readUntil("\n", deadline: deadline),
                let status = Int32(String(decoding: statusLine, as: UTF8.self)),
                let err = self.readUntil("\n\(self.token).\n", deadline: deadline)
            else { return nil }
            return (out, status, err)
        }
        let seconds = CommandRunner.seconds(since: started)
        guard let reply else {
            let timedOut = Date() >= deadline
            markDeadAndClose()
            let stderr = timedOut ? "" : stderrText()
            return (
                CommandResult(
                    commandLine: "", exitCode: 255, stdout: "",
                    stderr: stderr.isEmpty ? "the SSH session to \(host) ended in the middle of the command" : stderr, seconds: seconds),
                timedOut
            )
        }
        release()
        return (
            CommandResult(
                commandLine: "", exitCode: reply.status, stdout: String(decoding: reply.stdout, as: UTF8.self),
                stderr: String(decoding: reply.stderr, as: UTF8.self), seconds: seconds), false
        )
    }

    // MARK: Plumbing

    private var isDead: Bool { lock.withLock { dead } }

    /// Claims an idle session that is still alive: an idle session has nothing to say, so a readable socket
    /// means it ended (EOF: its master was closed, by another failoverd process of the same state directory
    /// say) and it is dropped before any request is sent on it.
    private func tryClaim() -> Bool {
        let claimed = lock.withLock { () -> Bool in
            guard !dead, !busy else { return false }
            busy = true
            return true
        }
        guard claimed else { return false }
        var fds = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        if poll(&fds, 1, 0) != 0 {
            markDeadAndClose()
            return false
        }
        return true
    }

    private func release() { lock.withLock { busy = false } }

    /// Ends the session: the socket closed (EOF ends the remote loop and then ssh), ssh signalled and reaped.
    func markDeadAndClose() {
        let first = lock.withLock { () -> Bool in
            defer { dead = true }
            return !dead
        }
        guard first else { return }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
        kill(pid, SIGTERM)
        let pid = pid
        Blocking.start { _ = Spawner.reap(pid) }
    }

    /// Closes the socket and returns ssh's exit status, waiting up to `seconds` before SIGKILL; marks the
    /// session dead. For a session that never became ready (its status tells unreachable from refused).
    private func closeAndReap(within seconds: Double) -> Int32 {
        lock.withLock { dead = true }
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { return -1 }
            if Date() >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                break
            }
            usleep(5_000)
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private func stderrText() -> String {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = pread(stderrFile, &bytes, bytes.count, 0)
        return n > 0 ? String(decoding: bytes[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }

    deinit { close(stderrFile) }

    /// Runs blocking socket work through ``Blocking``, off Swift's cooperative pool.
    private func blocking<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await Blocking.run(work)
    }

    private func send(_ text: String) -> Bool {
        var bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(socket, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Reads until `marker` has arrived; returns what came before it (the marker is consumed), or nil at EOF,
    /// on an error, or at `deadline`.
    private func readUntil(_ marker: String, deadline: Date) -> [UInt8]? {
        let needle = Array(marker.utf8)
        var searchFrom = 0
        while true {
            if buffer.count >= needle.count {
                var i = max(0, searchFrom)
                while i + needle.count <= buffer.count {
                    if buffer[i] == needle[0] && Array(buffer[i..<(i + needle.count)]) == needle {
                        let before = Array(buffer[0..<i])
                        buffer.removeFirst(i + needle.count)
                        return before
                    }
                    i += 1
                }
                searchFrom = buffer.count - needle.count + 1
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { return nil }
            var fds = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fds, 1, Int32(min(remaining * 1000, 60_000)) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }
}
