import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Who a pid is, from /proc: its command name, state, start time and working directory.
///
/// A pid alone names a process only until it exits: after a crash or a reboot the same number may belong
/// to anything. failoverd trusts a pid only together with its start time (and, for a postmaster, its data
/// directory), and never signals a pid it could not identify.
@_spi(Benchmarks) public struct ProcessIdentity: Sendable, Equatable {
    /// The process id.
    @_spi(Benchmarks) public var pid: pid_t
    /// When the process started, in seconds since the epoch (boot time plus its start in clock ticks).
    var startTime: Double

    /// The identity of the live process `pid`, or nil when it is gone, a zombie, or /proc does not say.
    static func of(_ pid: pid_t) -> ProcessIdentity? {
        guard pid > 0, let fields = statFields(pid), fields.state != "Z", fields.state != "X",
            let ticks = Double(fields.rest.count > 18 ? String(fields.rest[18]) : ""), let boot = bootTime
        else { return nil }
        return ProcessIdentity(pid: pid, startTime: boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK))))
    }

    /// This process.
    static var current: ProcessIdentity? { of(getpid()) }

    /// True when `pid` is live and started at `startTime` (within `tolerance` seconds: boot time is
    /// rounded to the second in /proc/stat).
    static func matches(pid: pid_t, startTime: Double, tolerance: Double = 1.5) -> Bool {
        guard let now = of(pid) else { return false }
        return abs(now.startTime - startTime) <= tolerance
    }

    /// The command name (comm) of `pid`.
    static func commandName(_ pid: pid_t) -> String? { statFields(pid)?.comm }

    /// The parent pid of `pid`.
    static func parent(_ pid: pid_t) -> pid_t? {
        guard let rest = statFields(pid)?.rest, let first = rest.first else { return nil }
        return pid_t(first)
    }

    /// The real uid of `pid` (/proc/PID/status).
    @_spi(Benchmarks) public static func realUID(_ pid: pid_t) -> uid_t? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
            let real = line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first
        else { return nil }
        return uid_t(real)
    }

    /// The working directory of `pid` (readlink /proc/PID/cwd); nil when it cannot be read (another
    /// user's process, for a process that is not root).
    static func workingDirectory(_ pid: pid_t) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/\(pid)/cwd", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The fields of /proc/PID/stat: comm, state, and those after state (ppid first, field 4 of proc(5);
    /// starttime, field 22, at index 18).
    private static func statFields(_ pid: pid_t) -> (comm: String, state: String, rest: [Substring])? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { return nil }
        // comm may hold spaces and parentheses: read around the last ')'.
        let comm = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard let state = fields.first else { return nil }
        return (comm, String(state), Array(fields.dropFirst()))
    }

    /// The boot time from /proc/stat (btime), in seconds since the epoch.
    private static var bootTime: Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
        else { return nil }
        return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
    }
}
