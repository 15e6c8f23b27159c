import Foundation

/// What a drill of a coordinated plan with `crash-coordinator` proves: which coordinator ran each step, and
/// how long the second one took to act after the first was killed.
extension DrillChecker {
    /// Reads the audit chain of the second coordinator's journal (which holds the whole run, the first
    /// coordinator's events copied from etcd): each step's coordinator (the one whose event ended it), and the
    /// takeover time from the fault at `faultAt` to the second coordinator's first `step-start` (its first act).
    func coordination(_ coordinators: DrillSession.Coordinators, faultAt: Double) async throws -> (
        DrillReport.CoordinationReport, DrillReport.Check
    ) {
        let journal = try Journal(stateDirectory: coordinators.second)
        let events = try await Blocking.run { try AuditLog(journal: journal).query() }
        let run = try await Blocking.run { try journal.lastRun() }
        func details(_ e: AuditEvent) -> [String: String] {
            (try? JSONSerialization.jsonObject(with: Data(e.details.utf8)) as? [String: String]) ?? [:]
        }
        let ofRun = events.filter { $0.runID == run?.id }
        let first = ofRun.first { $0.kind == "run-start" }.flatMap { details($0)["coordinator"] }
        var byStep: [Int: (kind: String, coordinator: String)] = [:]
        var firstActOfSecond: Double?
        for e in ofRun where e.kind.hasPrefix("step-") {
            let d = details(e)
            guard let n = d["step"].flatMap(Int.init), let c = d["coordinator"] else { continue }
            byStep[n] = (d["kind"] ?? "?", c)
            if e.kind == "step-start", c != first, firstActOfSecond == nil { firstActOfSecond = seconds(e.at) }
        }
        let label = { (c: String) in c == first ? "first" : "second" }
        let steps = byStep.keys.sorted().map { n in
            DrillReport.StepCoordinator(
                number: n, kind: byStep[n]!.kind, coordinator: byStep[n]!.coordinator, which: label(byStep[n]!.coordinator))
        }
        let lastOfFirst = steps.filter { $0.which == "first" }.map(\.number).max() ?? 0
        let firstOfSecond = steps.filter { $0.which == "second" }.map(\.number).min()
        let report = DrillReport.CoordinationReport(
            first: first, second: steps.first { $0.which == "second" }?.coordinator, secondHost: coordinators.host,
            faultAt: faultAt, firstActOfSecondAt: firstActOfSecond, takeoverSeconds: firstActOfSecond.map { $0 - faultAt }, steps: steps)
        // One coordinator at a time: every step the first ended comes before every step the second ended.
        let ordered = first != nil && firstOfSecond != nil && lastOfFirst < firstOfSecond!
        let check = DrillReport.Check(
            name: "the second coordinator took the run over",
            passed: ordered && report.second != nil,
            detail: ordered
                ? "steps 1–\(lastOfFirst) by \(first ?? "?"), steps \(firstOfSecond!)–\(steps.last?.number ?? 0) by \(report.second ?? "?") (on \(coordinators.host)); first act \(DrillReport.f(report.takeoverSeconds)) s after the fault"
                : "steps by coordinator: \(steps.map { "\($0.number) \($0.which)" }.joined(separator: ", "))")
        return (report, check)
    }
}

/// What a drill with `isolate-coordinator` proves about the first coordinator, from the journals and the servers'
/// own logs rather than from its word.
extension DrillChecker {
    /// Three checks: the first coordinator ended with exit 4; no record of it was written after the cut, in its
    /// own journal nor in etcd's copy of the run (the second coordinator's journal); and no host's sshd started
    /// a session from its address between the cut and its end, while the second coordinator's sessions are there
    /// (so the logs were read at all).
    func isolatedCoordinatorChecks(
        _ isolated: DrillSession.IsolatedCoordinator, coordinators: DrillSession.Coordinators, first: String?,
        sshdLogs: [(path: String, offset: UInt64)], controlAddress: String
    ) async throws -> [DrillReport.Check] {
        var checks: [DrillReport.Check] = []
        let stopped = isolated.error?.code == .lockHeld
        checks.append(
            .init(
                name: "the cut-off coordinator stopped with exit 4", passed: stopped,
                detail: isolated.error.map { "exit \($0.code.rawValue): \($0.message.prefix(300))" } ?? "it finished the plan (exit 0)"))

        func lateEvents(in directory: String, by coordinator: String?) async throws -> [String] {
            let journal = try Journal(stateDirectory: directory)
            let events = try await Blocking.run { try AuditLog(journal: journal).query() }
            return events.compactMap { e in
                guard let at = seconds(e.at), at > isolated.cutAt else { return nil }
                if let coordinator {
                    let d = (try? JSONSerialization.jsonObject(with: Data(e.details.utf8)) as? [String: String]) ?? [:]
                    guard d["coordinator"] == coordinator else { return nil }
                }
                return "\(e.kind) at \(e.at)"
            }
        }
        let ownLate = try await lateEvents(in: coordinators.first, by: nil)
        let etcdLate = try await lateEvents(in: coordinators.second, by: first ?? "?")
        checks.append(
            .init(
                name: "the cut-off coordinator wrote nothing after the cut", passed: ownLate.isEmpty && etcdLate.isEmpty && first != nil,
                detail: ownLate.isEmpty && etcdLate.isEmpty
                    ? "no audit event after the cut in its journal (\(coordinators.first)) nor, under its name (\(first ?? "unknown")), in etcd's copy of the run (\(coordinators.second))"
                    : "its journal: \(ownLate.prefix(5)); etcd's copy: \(etcdLate.prefix(5))"))

        var fromCut: [String] = []
        var others = 0
        for log in sshdLogs {
            let end = isolated.sshdLogsAtEnd[log.path] ?? Lab.fileSize(log.path)
            let lines = Lab.lines(of: log.path, after: log.offset)
            var bytes = log.offset
            for line in lines {
                bytes += UInt64(line.utf8.count + 1)
                if bytes > end + 1 { break }
                guard line.contains("Accepted ") || line.contains("Starting session") else { continue }
                if line.contains(" from \(controlAddress) ") || line.contains(" from \(controlAddress):") {
                    fromCut.append(line)
                } else {
                    others += 1
                }
            }
        }
        checks.append(
            .init(
                name: "the servers saw no session from the cut-off coordinator after the cut",
                passed: fromCut.isEmpty && others > 0,
                detail: fromCut.isEmpty
                    ? "sshd logs of \(sshdLogs.count) hosts, from the cut to its end: no session from \(controlAddress); \(others) logins and sessions from elsewhere (the second coordinator)"
                    : "sessions from \(controlAddress) after the cut: \(fromCut.prefix(5).joined(separator: " | "))"))
        return checks
    }
}
