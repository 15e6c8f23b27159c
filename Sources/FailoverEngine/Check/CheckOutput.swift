import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How `failoverd check` prints its report: a terminal table, and the Prometheus text format.
public enum CheckOutput {
    /// The report as a table for people.
    public static func table(_ r: TopologyCheck.Report) -> String {
        var lines = ["plan \"\(r.plan)\" checked at \(r.checkedAt)"]
        let header = [
            "INSTANCE", "SITE", "SEEN", "TLI", "LSN", "LAG BYTES", "LAG S", "RECEIVER", "LAST ARCHIVED (AGE S, FAILURES)", "SETTINGS",
        ]
        var rows = [header]
        for i in r.instances {
            var seen = i.seen.replacingOccurrences(of: "-", with: " ")
            if let up = i.upstream { seen += " of \(up)" }
            if let reason = i.reason { seen += ": \(reason)" }
            let archived =
                i.lastArchivedWAL.map { wal in
                    "\(wal) (\(i.lastArchivedAgeSeconds.map { String(format: "%.1f", $0) } ?? "?"), \(i.archiveFailures ?? 0))"
                } ?? "-"
            rows.append([
                i.instance, i.site, seen, i.timeline.map(String.init) ?? "-", i.currentLSN ?? i.replayLSN ?? "-",
                i.lagBytes.map(String.init) ?? "-", i.lagSeconds.map { String(format: "%.3f", $0) } ?? "-", i.walReceiver ?? "-", archived,
                i.recoverySettings,
            ])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        for row in rows {
            lines.append(
                row.enumerated().map { c, v in c == row.count - 1 ? v : v.padding(toLength: widths[c] + 2, withPad: " ", startingAt: 0) }
                    .joined())
        }
        lines.append("sites:")
        for s in r.sites {
            lines.append(
                "  \(s.site): declared \(s.declared), seen \(s.seen), journaled \(s.journaled ?? "-")"
                    + (s.paused == true ? ", Patroni paused" : "") + (s.mismatch == nil ? "" : "   MISMATCH"))
            if let m = s.mismatch { lines.append("    " + m) }
        }
        lines.append("transitions:")
        for g in r.gates {
            lines.append("  \(g.transition). \(g.summary): \(g.provisional ? "(after the transitions before it) " : "")\(g.message)")
        }
        lines.append("coordination: " + r.coordination)
        lines.append(r.exitCode == 0 ? "ready" : "not ready (exit \(r.exitCode)): " + r.problems.joined(separator: "; "))
        return lines.joined(separator: "\n")
    }

    /// The report's figures in the Prometheus text exposition format.
    public static func prometheus(_ r: TopologyCheck.Report) -> String {
        var out: [String] = []
        func family(_ name: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out.append("# HELP \(name) \(help)")
            out.append("# TYPE \(name) gauge")
            for s in samples {
                let labels = ([("plan", r.plan)] + s.labels).map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
                out.append("\(name){\(labels)} \(format(s.value))")
            }
        }
        let standbys = r.instances.filter { $0.lagBytes != nil }
        family(
            "failoverd_standby_lag_bytes", "WAL bytes between a standby's replay position and its upstream (or the primary).",
            standbys.map { ([("site", $0.site), ("instance", $0.instance), ("upstream", $0.lagTo ?? "")], Double($0.lagBytes ?? 0)) })
        family(
            "failoverd_standby_lag_seconds",
            "Replay delay of a standby in seconds: 0 when caught up, else the age of its last replayed transaction.",
            standbys.compactMap { i in i.lagSeconds.map { ([("site", i.site), ("instance", i.instance)], $0) } })
        family(
            "failoverd_instance_role", "1 for the role each instance is seen in now.",
            r.instances.map { ([("site", $0.site), ("instance", $0.instance), ("role", $0.seen)], 1) })
        family(
            "failoverd_archive_last_age_seconds", "Seconds since the instance's archiver last archived a WAL segment.",
            r.instances.compactMap { i in i.lastArchivedAgeSeconds.map { ([("site", i.site), ("instance", i.instance)], $0) } })
        family(
            "failoverd_gate_ready", "1 when the transition's gates would let it proceed now, 0 when they would refuse or cannot tell.",
            r.gates.map { g in
                ([("transition", String(g.transition)), ("summary", g.summary)], g.verdict == "proceed" || g.verdict == "no-gate" ? 1 : 0)
            })
        return out.joined(separator: "\n") + "\n"
    }

    /// Writes ``prometheus(_:)`` to `path` atomically: a new file beside it (never following a link),
    /// fsynced, then renamed over the old one, so a collector never reads half a file.
    public static func writePrometheus(_ r: TopologyCheck.Report, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/." + (path as NSString).lastPathComponent + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FailoverError.invalid(
                "--prometheus: cannot create \(temporary): \(String(cString: strerror(errno))); check that the directory exists and is writable"
            )
        }
        let bytes = Array(prometheus(r).utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FailoverError.failed("--prometheus: cannot write \(path): \(reason)")
        }
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(
            of: "\n", with: "\\n")
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(format: "%.6f", value)
    }
}
