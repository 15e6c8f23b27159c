import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The postmaster of a data directory, found by its postmaster.pid and checked in /proc.
enum Postmaster {
    /// The pid recorded in `dataDirectory`/postmaster.pid, live or not.
    static func recordedPID(in dataDirectory: String) -> pid_t? {
        guard let text = Files.read(dataDirectory + "/postmaster.pid"),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)), pid > 0
        else { return nil }
        return pid
    }

    /// The pid of the postmaster running for `dataDirectory`, or nil when none runs (no pid file, a stale one,
    /// or a pid that now belongs to another program).
    static func livePID(in dataDirectory: String) -> pid_t? {
        guard let pid = recordedPID(in: dataDirectory), isAlive(pid) else { return nil }
        return pid
    }

    /// True when `pid` exists, is not a zombie, and (where /proc tells) runs postgres.
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = Files.read("/proc/\(pid)/stat") else { return true }
        // pid (comm) state ...: comm may hold spaces, so read around the last ')'.
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return true }
        let comm = stat[stat.index(after: open)..<close]
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
        return state != "Z" && state != "X" && (comm == "postgres" || comm == "postmaster")
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
    @discardableResult
    static func shutDown(_ pid: pid_t, secondsPerSignal: Double = 5) async -> String {
        for (signal, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT"), (SIGQUIT, "SIGQUIT")] {
            guard isAlive(pid) else { return name }
            kill(pid, signal)
            if await waitForExit(pid, seconds: secondsPerSignal) { return name }
        }
        let children = Self.children(of: pid)
        kill(pid, SIGKILL)
        children.forEach { kill($0, SIGKILL) }
        _ = await waitForExit(pid, seconds: secondsPerSignal)
        return "SIGKILL"
    }

    /// Waits until `pid` is gone; false at the deadline.
    static func waitForExit(_ pid: pid_t, seconds: Double) async -> Bool {
        (try? await Poll.until("postmaster \(pid) to exit", timeout: seconds, interval: 0.02) { isAlive(pid) ? nil : true }) ?? false
    }
}
