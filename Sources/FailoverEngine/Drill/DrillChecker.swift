import Foundation
import GRDB

/// Turns what a drill saw into checks and figures.
struct DrillChecker {
    let plan: Plan
    let options: DrillOptions
    let driver: LocalPostgresDriver
    let workload: Workload
    let clock: DrillClock
    let wallStart: Date
    let state: String

    func seconds(_ iso: String?) -> Double? {
        guard let iso, let d = Journal.date(iso) else { return nil }
        return d.timeIntervalSince(wallStart)
    }

    func report(runError: FailoverError?, faults: [DrillReport.FaultEvent]) async throws -> DrillReport {
        let journal = try Journal(stateDirectory: state)
        let (run, records) = try await Blocking.run { () throws -> (RunRecord?, [StepRecord]) in
            let run = try journal.lastRun()
            return (run, try run.map { try journal.steps(of: $0.id) } ?? [])
        }
        let ledger = workload.ledger.current
        var checks: [DrillReport.Check] = []

        // The run itself: it succeeds, or a cut receiver makes the switchover gate refuse as it must.
        let cut = options.faults.contains { if case .cutReceiver = $0 { true } else { false } }
        if cut && !options.allowDataLoss {
            let refused = runError?.code == .refused && (runError?.message.contains("not streaming") ?? false)
            checks.append(
                .init(
                    name: "switchover gate refuses a cut receiver", passed: refused, detail: runError?.message ?? "the run was not refused")
            )
        } else {
            checks.append(
                .init(
                    name: "plan completed", passed: runError == nil && run?.outcome == .succeeded,
                    detail: runError?.message ?? "run \(run?.id ?? "?") succeeded"))
        }

        // RPO: acknowledged commits missing from the primary at the end.
        var finalPrimary: Instance?
        for (_, i) in plan.allInstances where (try? await driver.status(of: i).isWritablePrimary) == true {
            finalPrimary = i
        }
        var present = Set<Int64>()
        if let p = finalPrimary {
            let ids = try await driver.withConnection(p) { c in
                try c.query("SELECT id FROM \(Workload.table)").compactMap { $0[0].flatMap { Int64($0) } }
            }
            present = Set(ids)
        }
        let lost = DrillMath.lost(ledger: ledger, present: present)
        let unknown = DrillMath.unknownOutcomeCommitted(ledger: ledger, present: present)
        let estimate = try records.compactMap { try $0.walLossEstimateBytes() }.reduce(0, +)
        let promisesNoLoss = !plan.transitions.contains { $0.action == .failover }
        if finalPrimary == nil {
            checks.append(
                .init(
                    name: "RPO", passed: false,
                    detail: "no instance accepts writes at the end: \(ledger.acknowledged.count) acknowledged commits are unreachable"))
        } else if promisesNoLoss {
            checks.append(
                .init(
                    name: "RPO: no acknowledged commit lost", passed: lost.isEmpty,
                    detail:
                        "\(lost.count) acknowledged commits lost of \(ledger.acknowledged.count); \(unknown) unknown-outcome commits found committed"
                ))
        } else {
            let consistent = lost.isEmpty || estimate > 0
            checks.append(
                .init(
                    name: "RPO: loss reported by the engine", passed: consistent,
                    detail:
                        "\(lost.count) acknowledged commits lost; the engine estimated \(estimate) bytes of WAL beyond the promoted position\(consistent ? "" : " — the engine did not see the loss")"
                ))
        }

        // What `failoverd lost` lists for a former primary the run fenced, checked against the ledger.
        let (lostChecks, lostList) = try await lostListChecks(run: run, ledger: ledger, present: present, lost: lost)
        checks += lostChecks

        // Split brain.
        let brains = workload.splitBrains()
        checks.append(
            .init(
                name: "never two writable primaries", passed: brains.isEmpty,
                detail: brains.isEmpty
                    ? "every instance sampled every 20 ms; never two accepted writes at once"
                    : brains.prefix(3).map { "\($0.0) and \($0.1) both accepted writes at \(String(format: "%.3f", $0.2)) s" }.joined(
                        separator: "; ")))

        // Roles.
        let expected = (try? Planner(plan: plan).finalRoles().get()) ?? [:]
        let recorded = try await Blocking.run { try journal.recordedRoles() }
        let rolesOK = runError == nil ? recorded == expected : true
        if runError == nil {
            checks.append(
                .init(
                    name: "final roles as planned", passed: rolesOK,
                    detail: recorded.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ", ")))
            // Every streaming standby streams on the final primary's timeline.
            if let p = finalPrimary {
                let pt = try await driver.status(of: p).timeline
                var bad: [String] = []
                var good: [String] = []
                for site in plan.sites where expected[site.name] == .streamingStandby {
                    for i in site.instances {
                        let s = try await driver.status(of: i)
                        if s.walReceiver?.status == "streaming", (s.walReceiver?.receivedTimeline ?? s.timeline) == pt {
                            good.append(i.name)
                        } else {
                            bad.append(
                                "\(i.name) (receiver \(s.walReceiver?.status ?? "none"), timeline \(s.walReceiver?.receivedTimeline ?? s.timeline))"
                            )
                        }
                    }
                }
                let detail =
                    !bad.isEmpty
                    ? bad.joined(separator: "; ")
                    : good.isEmpty
                        ? "no streaming standby in the final topology (primary on timeline \(pt))"
                        : "\(good.joined(separator: ", ")) on timeline \(pt)"
                checks.append(.init(name: "standbys stream on the final timeline", passed: bad.isEmpty, detail: detail))
            }
        }
        let verify = try await AuditLog(journal: journal).verify()
        checks.append(
            .init(
                name: "audit verify", passed: verify.intact,
                detail: verify.intact ? "\(verify.checked) events, chain intact" : verify.reason ?? "broken"))

        // Transitions.
        var transitions: [DrillReport.TransitionReport] = []
        var previousEnd = -Double.infinity
        for (index, t) in plan.transitions.enumerated() {
            let steps = records.filter { $0.step.transition == index + 1 }
            guard let start = steps.compactMap({ seconds($0.startedAt) }).min() else { continue }
            let end = steps.compactMap { seconds($0.endedAt) }.max() ?? start
            let promoted = steps.first { $0.step.kind == .promote }
            let newPort = promoted.flatMap { $0.step.instance }.flatMap { n in
                plan.allInstances.first { $0.instance.name == n }?.instance.port
            }
            let after = seconds(promoted?.endedAt) ?? start
            let lostHere = lost.filter { id in
                guard let e = ledger.entries.first(where: { $0.id == id }) else { return false }
                return e.at > previousEnd && (e.at <= end || index == plan.transitions.count - 1)
            }.count
            transitions.append(
                .init(
                    action: t.action.rawValue, summary: t.summary, startedAt: start, endedAt: end,
                    rtoSeconds: DrillMath.longestGap(ledger: ledger, from: start, to: end),
                    firstWriteSeconds: DrillMath.firstWrite(ledger: ledger, start: start, after: after, port: newPort),
                    acknowledgedLost: lostHere,
                    walLossEstimateBytes: try steps.compactMap { try $0.walLossEstimateBytes() }.first,
                    steps: steps.map { r in
                        let a = seconds(r.startedAt)
                        let b = seconds(r.endedAt)
                        return .init(
                            number: r.step.number, kind: r.step.kind.rawValue, summary: r.step.summary, status: r.status.rawValue,
                            startedAt: a, endedAt: b,
                            seconds: a.flatMap { x in b.map { $0 - x } })
                    }))
            previousEnd = end
        }
        let siteOf = Dictionary(uniqueKeysWithValues: plan.allInstances.map { ($0.instance.name, $0.site.name) })
        let duration = clock.now()
        let workloadTotals = DrillReport.Workload(
            writers: options.writers, attempted: ledger.entries.count, acknowledged: ledger.acknowledged.count,
            errors: ledger.entries.filter { !$0.acknowledged }.count, unknownOutcomeCommitted: unknown, lost: lost.count,
            lostIDs: Array(lost.prefix(100)))
        return DrillReport(
            plan: plan.name, passed: checks.allSatisfy(\.passed), checks: checks, transitions: transitions,
            lag: workload.lags(siteOf: siteOf),
            workload: workloadTotals, faults: faults, runID: run?.id, durationSeconds: duration,
            acknowledgedPer100ms: DrillMath.histogram(ledger: ledger, width: 0.1, end: duration), lost: lostList)
    }
}

extension StepRecord {
    /// The WAL-loss estimate a failover's record-roles step journaled; nil for any other step. Throws when
    /// the journaled evidence does not decode.
    func walLossEstimateBytes() throws -> UInt64? {
        step.kind == .recordRoles ? try evidence(as: RolesEvidence.self)?.walLossEstimateBytes : nil
    }
}
