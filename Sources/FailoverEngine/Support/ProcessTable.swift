import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Finding processes by their argument vector, and ending them by signals with deadlines.
///
/// Only for processes failoverd itself caused to exist (ssh masters of its control directory, pgBackRest
/// children of a sandbox's own configuration): a caller names them by an argument no other process has,
/// and, where it runs as root, by the uid they run as, so that nothing another user starts can make root
/// signal a process of anyone else.
enum ProcessTable {
    /// The live processes (not this one, not zombies) whose argument vector satisfies `matches`, owned by
    /// `uid` when one is given.
    static func pids(uid: uid_t? = nil, where matches: ([String]) -> Bool) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), pid != getpid(), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                !data.isEmpty, ProcessIdentity.of(pid) != nil
            else { return nil }
            if let uid, ProcessIdentity.realUID(pid) != uid { return nil }
            return matches(data.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) })
                ? pid : nil
        }
    }

    /// Waits up to `grace` seconds for the processes `find` returns to end by themselves, then sends SIGTERM
    /// and waits `seconds` more, then SIGKILL. Returns the pids that had to be signalled.
    @discardableResult
    static func end(grace: Double = 0, seconds: Double = 5, _ find: () -> [pid_t]) async -> [pid_t] {
        if grace > 0 { _ = try? await Wait.until(timeout: grace, interval: 0.05) { find().isEmpty ? true : nil } }
        let stragglers = find()
        guard !stragglers.isEmpty else { return [] }
        for pid in stragglers { kill(pid, SIGTERM) }
        _ = try? await Wait.until(timeout: seconds, interval: 0.02) { find().isEmpty ? true : nil }
        for pid in find() { kill(pid, SIGKILL) }
        _ = try? await Wait.until(timeout: seconds, interval: 0.02) { find().isEmpty ? true : nil }
        return stragglers
    }
}
