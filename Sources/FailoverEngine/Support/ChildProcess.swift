import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A child process started with posix_spawn (``Spawner``), its standard output and error going to files.
///
/// It can be awaited without holding a thread of the cooperative pool (``wait()``), read while it runs
/// (``outputSoFar()``), and signalled (``signal(_:)``, ``terminate(grace:)``) only while it has not been
/// reaped, so a signal never reaches another process that got its pid. Files, not pipes: no reader can block
/// on a descriptor that a daemon the child started still holds. The files are removed with this object.
final class ChildProcess: Sendable {
    /// The child's pid (and process group: the child leads a group of its own).
    let pid: pid_t
    /// The command line as shown in messages.
    let commandLine: String
    /// The file receiving its standard output.
    let stdoutPath: String
    /// The file receiving its standard error.
    let stderrPath: String
    /// Set, under its lock, right before the child is reaped (a signal sent while it is unset reaches the
    /// child); then how it ended, and the tasks waiting for that.
    private let exit = Locked(Exit())

    private struct Exit {
        var reaped = false
        var termination: Spawner.Termination?
        var waiting: [CheckedContinuation<Spawner.Termination, Never>] = []
    }

    /// Starts `path` with `argv` (argv[0] included), `environment` (`KEY=value`) and standard input /dev/null;
    /// with `executable`, the file open at that descriptor instead of `path` (see ``Spawner/spawn``); with
    /// `standardOutput`, a descriptor that receives standard output instead of ``outputSoFar()``.
    ///
    /// - Throws: ``FailoverError`` when the output files cannot be created or the program cannot be launched.
    static func start(
        _ path: String, _ argv: [String], environment: [String], workingDirectory: String, commandLine: String,
        executable: Int32? = nil, standardOutput: Int32? = nil
    ) throws -> ChildProcess {
        // Standard output to `standardOutput` when given (its file then stays empty), else to the file.
        let (stdoutPath, stdout) = try temporaryFile()
        defer { close(stdout) }
        let stderrPath: String
        let stderr: Int32
        do {
            (stderrPath, stderr) = try temporaryFile()
        } catch {
            unlink(stdoutPath)
            throw error
        }
        defer { close(stderr) }
        do {
            let pid = try Spawner.spawn(
                path, argv, environment: environment, workingDirectory: workingDirectory, stdout: standardOutput ?? stdout,
                stderr: stderr, commandLine: commandLine, executable: executable)
            return ChildProcess(pid: pid, commandLine: commandLine, stdoutPath: stdoutPath, stderrPath: stderrPath)
        } catch {
            unlink(stdoutPath)
            unlink(stderrPath)
            throw error
        }
    }

    private init(pid: pid_t, commandLine: String, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.commandLine = commandLine
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        // Reaped as soon as it exits, whether anyone waits or not (no zombie is left behind), by a thread of
        // Blocking started now: neither the reaping nor a timeout's view of it waits for the cooperative pool.
        Blocking.start { [exit] in
            let termination = Spawner.reap(pid) { exit.withLock { $0.reaped = true } }
            let waiting = exit.withLock { e in
                e.termination = termination
                defer { e.waiting = [] }
                return e.waiting
            }
            for continuation in waiting { continuation.resume(returning: termination) }
        }
    }

    deinit {
        unlink(stdoutPath)
        unlink(stderrPath)
    }

    /// Waits until the child exits (reaped by a thread of ``Blocking``, never one of the cooperative pool); how
    /// it ended.
    func wait() async -> Spawner.Termination {
        await withCheckedContinuation { continuation in
            let ended = exit.withLock { e in
                if e.termination == nil { e.waiting.append(continuation) }
                return e.termination
            }
            if let ended { continuation.resume(returning: ended) }
        }
    }

    /// True until the child has exited.
    var isRunning: Bool { !exit.current.reaped }

    /// Sends `signal` to the child (to its whole process group with `group`); false when it has already exited.
    @discardableResult
    func signal(_ signal: Int32, group: Bool = false) -> Bool {
        exit.withLock { e in
            guard !e.reaped else { return false }
            kill(group ? -pid : pid, signal)
            return true
        }
    }

    /// SIGTERM to the child's process group now, SIGKILL `grace` seconds later if the child is still there;
    /// false when it has already exited.
    @discardableResult
    func terminate(grace: Double = 2) -> Bool {
        guard signal(SIGTERM, group: true) else { return false }
        DispatchQueue.global().asyncAfter(deadline: .now() + grace) { [self] in signal(SIGKILL, group: true) }
        return true
    }

    /// What the child has written to standard output so far (all of it once it has exited).
    func outputSoFar() -> String { Self.read(stdoutPath) }

    /// What the child has written to standard error so far (all of it once it has exited).
    func errorSoFar() -> String { Self.read(stderrPath) }

    private static func read(_ path: String) -> String {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// A new empty file, readable and writable by this process only; its path and an open descriptor.
    private static func temporaryFile() throws -> (String, Int32) {
        var template = Array((NSTemporaryDirectory() + "/failoverd-cmd-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw FailoverError.failed(
                "could not create a temporary file in \(NSTemporaryDirectory()): \(String(cString: strerror(errno)))")
        }
        return (template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, fd)
    }
}
