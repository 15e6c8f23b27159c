import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The postmaster of a data directory, found by its postmaster.pid and proven in /proc.
///
/// A pid is trusted only together with who the process is: a live postgres whose working directory is the
/// data directory (the postmaster changes into it at start), or, where /proc does not show another user's
/// working directory, whose start time matches the one postmaster.pid records. After a crash or a reboot
/// the recorded pid may belong to another program or to another cluster's server: it is then not this
/// postmaster, and it is never signalled.
@_spi(Benchmarks) public enum Postmaster {
    /// What postmaster.pid records: pid, data directory and start time (lines 1 to 3).
    struct Recorded: Sendable, Equatable {
        var pid: pid_t
        var dataDirectory: String
        var startTime: Double?
    }

    /// The contents of `dataDirectory`/postmaster.pid, live or not.
    static func recorded(in dataDirectory: String) -> Recorded? {
        guard let text = Files.read(dataDirectory + "/postmaster.pid") else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = lines.first, let pid = pid_t(first), pid > 0 else { return nil }
        return Recorded(
            pid: pid, dataDirectory: lines.count > 1 ? lines[1] : "", startTime: lines.count > 2 ? Double(lines[2]) : nil)
    }

    /// The pid recorded in `dataDirectory`/postmaster.pid, live or not.
    static func recordedPID(in dataDirectory: String) -> pid_t? { recorded(in: dataDirectory)?.pid }

    /// The pid of the postmaster running for `dataDirectory`, or nil when none runs.
    ///
    /// The pid file's pid counts only when ``isPostmaster(_:of:recordedStart:)`` proves it. When it does
    /// not (no file, a stale one, a pid reused by another program), /proc is searched for a postmaster
    /// working in the data directory, so a server whose pid file was removed or rewritten is still seen.
    @_spi(Benchmarks) public static func livePID(in dataDirectory: String) -> pid_t? {
        if let r = recorded(in: dataDirectory), isPostmaster(r.pid, of: dataDirectory, recordedStart: r.startTime) {
            return r.pid
        }
        return search(dataDirectory)
    }

    /// The pid of the postmaster of `dataDirectory` only when every fact agrees, for signalling it: the pid
    /// file (read as `user`, never through a link) names this data directory; the process is a live postgres
    /// of `user` (this process's user when nil) whose start time matches the recorded one and whose working
    /// directory is the data directory itself (same device and inode). Nil otherwise: none runs, or the
    /// pid file names a process that is not that postmaster.
    static func verifiedPID(in dataDirectory: String, user: OSUser?) -> pid_t? {
        guard let text = try? Files.readText(dataDirectory + "/postmaster.pid", owner: user) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count >= 3, let pid = pid_t(lines[0]), pid > 1, lines[1] == dataDirectory, let recorded = Double(lines[2]),
            isAlive(pid), ProcessIdentity.matches(pid: pid, startTime: recorded, tolerance: 2),
            ProcessIdentity.realUID(pid) == (user?.uid ?? geteuid())
        else { return nil }
        var cwd = stat()
        var data = stat()
        guard stat("/proc/\(pid)/cwd", &cwd) == 0, lstat(dataDirectory, &data) == 0, cwd.st_dev == data.st_dev, cwd.st_ino == data.st_ino
        else { return nil }
        return pid
    }

    /// The identity (pid and start time) of the live postmaster of `dataDirectory`, to signal it safely later.
    static func liveIdentity(in dataDirectory: String) -> ProcessIdentity? {
        livePID(in: dataDirectory).flatMap(ProcessIdentity.of)
    }

    /// True when `pid` is a live postgres process that is the postmaster of `dataDirectory`.
    static func isPostmaster(_ pid: pid_t, of dataDirectory: String, recordedStart: Double?) -> Bool {
        guard isAlive(pid) else { return false }
        if let cwd = ProcessIdentity.workingDirectory(pid) {
            return cwd == canonical(dataDirectory) && !isPostgresChild(pid, of: dataDirectory)
        }
        // Another user's process, seen by an unprivileged failoverd: the recorded start time must match.
        guard let recordedStart else { return false }
        return ProcessIdentity.matches(pid: pid, startTime: recordedStart, tolerance: 2)
    }

    /// A live postgres process working in `dataDirectory` whose parent is not one: the postmaster.
    static func search(_ dataDirectory: String) -> pid_t? {
        let target = canonical(dataDirectory)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for pid in entries.compactMap({ pid_t($0) }) {
            guard ProcessIdentity.workingDirectory(pid) == target, isAlive(pid), !isPostgresChild(pid, of: dataDirectory) else { continue }
            return pid
        }
        return nil
    }

    /// True when `pid`'s parent is itself a postgres process working in `dataDirectory` (a backend).
    static func isPostgresChild(_ pid: pid_t, of dataDirectory: String) -> Bool {
        guard let parent = ProcessIdentity.parent(pid), parent > 1, isAlive(parent) else { return false }
        return ProcessIdentity.workingDirectory(parent) == canonical(dataDirectory)
    }

    /// The data directory with symbolic links resolved, as /proc shows a working directory.
    static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// True when `pid` exists, is not a zombie, and (where /proc tells) runs postgres.
    static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let comm = ProcessIdentity.commandName(pid) else { return true }
        guard ProcessIdentity.of(pid) != nil else { return false }
        return comm == "postgres" || comm == "postmaster"
    }

    /// The live children of `pid`, from /proc.
    static func children(of pid: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { pid_t($0) }.filter { child in
            guard let stat = Files.read("/proc/\(child)/stat"), let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == pid
        }
    }

    /// Stops the postmaster `pid` by signals, each with its own deadline: SIGTERM (smart), SIGINT (fast),
    /// SIGQUIT (immediate), then SIGKILL for it and its children. Returns the signal that ended it.
    ///
    /// Before every signal the process must still be the one identified at the start (same start time):
    /// a pid that was reused meanwhile is left alone.
    @discardableResult
    static func shutDown(_ pid: pid_t, secondsPerSignal: Double = 5) async -> String {
        guard let identity = ProcessIdentity.of(pid), isAlive(pid) else { return "none: not running" }
        func same() -> Bool { isAlive(pid) && ProcessIdentity.matches(pid: pid, startTime: identity.startTime, tolerance: 0.01) }
        for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGQUIT, "SIGQUIT")] {
            guard same() else { return name }
            kill(pid, signal)
            if await waitForExit(pid, seconds: secondsPerSignal) { return name }
        }
        guard same() else { return "SIGQUIT" }
        let children = Self.children(of: pid)
        kill(pid, SIGKILL)
        children.forEach { kill($0, SIGKILL) }
        _ = await waitForExit(pid, seconds: secondsPerSignal)
        return "SIGKILL"
    }

    /// Waits until `pid` is gone; false at the deadline.
    static func waitForExit(_ pid: pid_t, seconds: Double) async -> Bool {
        (try? await Poll.until("postmaster \(pid) to exit", timeout: seconds, interval: 0.005) { isAlive(pid) ? nil : true }) ?? false
    }
}
