import Foundation
import Logging

/// `failoverd lost`: lists the captures of a run, and captures on demand the former primaries a run fenced
/// that no capture holds yet (their WAL is intact until they are repaired, and the question "what did we
/// lose?" comes right after the failover).
public enum LostListing {
    /// The former primaries `run` fenced (instance, site), in step order.
    static func fenced(by run: RunRecord, journal: Journal) throws -> [(instance: Instance, site: String)] {
        let plan = try run.plan()
        var out: [(Instance, String)] = []
        for r in try journal.steps(of: run.id) where r.status.isFinished {
            switch r.step.operation {
            case .fence(let name):
                if let i = plan.allInstances.first(where: { $0.instance.name == name }), !out.contains(where: { $0.0 == i.instance }) {
                    out.append((i.instance, i.site.name))
                }
            case .fenceSite(let name):
                if let s = plan.site(named: name), !out.contains(where: { $0.0 == s.leader }) { out.append((s.leader, s.name)) }
            default: break
            }
        }
        // The site leader was the primary; its followers only streamed from it.
        return out.filter { entry in plan.sites.contains { $0.leader == entry.0 } }
    }

    /// The report of `run` (the latest run with a capture, or the latest run that fenced, when nil), with the
    /// former primaries it fenced and no capture holds named in `notCaptured`.
    public static func report(stateDirectory: String, run: String?, rows: Bool) async throws -> LostReport {
        var report = try await LostReport.load(stateDirectory: stateDirectory, run: run, rows: rows)
        guard let journal = try? Journal(existingStateDirectory: stateDirectory) else { return report }
        let chosen = try run.flatMap { try journal.run($0) } ?? latestFencingRun(journal)
        guard let record = chosen, report.run == nil || report.run == record.id else { return report }
        if run != nil, try journal.run(run!) == nil {
            throw FailoverError.invalid("no run \(run!) in state directory \(stateDirectory); list runs with `failoverd status`")
        }
        report.run = record.id
        let captured = Set(LostDirectory.sealed(stateDirectory).map(\.manifest.instance))
        for (instance, site) in try fenced(by: record, journal: journal) where !captured.contains(instance.name) {
            report.notCaptured.append(
                "\(instance.name) (site \(site)) was fenced by run \(record.id) and is not captured yet: `failoverd lost \(record.id) --capture --state \(stateDirectory)` captures it now; a rewind, rebuild or failback of it captures it first anyway."
            )
        }
        return report
    }

    /// The latest run that fenced a former primary.
    static func latestFencingRun(_ journal: Journal) throws -> RunRecord? {
        guard let last = try journal.lastRun() else { return nil }
        var candidate: RunRecord? = last
        while let r = candidate {
            if try !fenced(by: r, journal: journal).isEmpty { return r }
            candidate = try journal.runStarted(before: r.id)
        }
        return nil
    }

    /// Captures, now, the former primaries `run` fenced that no capture holds, under the run lock (exit 4 while
    /// a run holds it); each capture is written to the audit log.
    public static func captureNow(stateDirectory: String, run runID: String, simulate: Bool = false, logger: Logger) async throws
        -> [CaptureManifest]
    {
        let journal = try Journal(existingStateDirectory: stateDirectory)
        guard let run = try journal.run(runID) else {
            throw FailoverError.invalid("no run \(runID) in state directory \(stateDirectory); list runs with `failoverd status`")
        }
        let lock = RunLock(journal: journal)
        let holder = try lock.acquire(runID: "lost-capture")
        defer { try? lock.release(holder) }
        let plan = try run.plan()
        let drivers = StandardDrivers(stateDirectory: stateDirectory, simulate: simulate, logger: logger)
        let kind = DriverKind(rawValue: run.driver) ?? drivers.kind(plan: plan)
        let driver = try LostCapture.driver(plan: plan, runDriver: drivers.make(plan: plan, kind: kind), logger: logger)
        let roles = try journal.recordedRoles()
        let source = roles.first { $0.value == .primary }.flatMap { plan.site(named: $0.key)?.leader }
        let captured = Set(LostDirectory.sealed(stateDirectory).map(\.manifest.instance))
        var manifests: [CaptureManifest] = []
        for (instance, site) in try fenced(by: run, journal: journal) where !captured.contains(instance.name) {
            guard try journal.isFenced(instance: instance.name) else { continue }
            let capture = LostCapture(
                plan: plan, driver: driver, stateDirectory: stateDirectory, run: run.id, instance: instance, site: site, source: source,
                logger: logger)
            let m = try await capture.capture()
            var details = m.auditDetails(directory: capture.directory)
            details["verb"] = "lost --capture"
            try AuditLog(journal: journal).append(kind: .lostCapture, run: run.id, site: site, details: details)
            manifests.append(m)
        }
        return manifests
    }
}
