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
