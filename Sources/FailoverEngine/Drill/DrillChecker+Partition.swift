import Foundation

/// The checks of a drill that cut a site off (partition@STEP:SITE).
extension DrillChecker {
    /// While a site was cut off, nothing promoted a second primary unless that site was fenced by this run
    /// (its fence steps done) or the operator overrode (--assume-fenced, --allow-data-loss); and once healed,
    /// the site's old primary does not come back writable.
    func partitionChecks(cut: [String: Double]) async throws -> [DrillReport.Check] {
        let journal = try Journal(stateDirectory: state)
        let records = try await Blocking.run { try journal.lastRun().map { try journal.steps(of: $0.id) } ?? [] }
        var checks: [DrillReport.Check] = []
        for (site, at) in cut.sorted(by: { $0.key < $1.key }) {
            guard let cutSite = plan.site(named: site) else { continue }
            let members = Set(cutSite.instances.map(\.name))
            let promotions = records.filter { r in
                r.step.kind == .promote && r.status == .done && !members.contains(r.step.instance ?? "")
                    && (seconds(r.endedAt) ?? 0) >= at
            }
            let fenced = cutSite.instances.allSatisfy { i in
                records.contains { $0.step.kind == .fence && $0.step.instance == i.name && $0.status == .done }
            }
            let override = options.assumeFenced.contains(site) || options.allowDataLoss
            let promoted = promotions.compactMap(\.step.instance).joined(separator: ", ")
            checks.append(
                .init(
                    name: "no second primary while \(site) is cut off", passed: promotions.isEmpty || fenced || override,
                    detail: promotions.isEmpty
                        ? "nothing was promoted while \(site) was cut off"
                        : fenced
                            ? "\(promoted) promoted after \(site) was fenced by the run"
                            : override
                                ? "\(promoted) promoted on the operator's override"
                                : "\(promoted) promoted while \(site) was neither fenced nor overridden"))
            // After heal: seen again, the cut site's servers must not take writes while another site does.
            var lines: [String] = []
            var writable: [String] = []
            for i in cutSite.instances {
                let seen = try await Wait.until(timeout: 15, interval: 0.1) { () -> InstanceStatus? in
                    let s = try? await driver.status(of: i)
                    return s.flatMap { $0.isWritablePrimary || $0.isProvenNotWritable ? $0 : nil }
                }
                lines.append("\(i.name): \(seen?.seen ?? "still unknown after heal")")
                if seen?.isWritablePrimary ?? false { writable.append(i.name) }
            }
            let otherPrimary = promotions.isEmpty == false
            checks.append(
                .init(
                    name: "after heal the old primary of \(site) is not writable", passed: !(otherPrimary && !writable.isEmpty),
                    detail: lines.joined(separator: "; ")))
        }
        return checks
    }

    /// With isolate-control: the run did not complete, and no step that changes a server (stop, promote,
    /// fence, rewind, restore, start) finished after failoverd lost every site.
    func isolationCheck(at: Double, runError: FailoverError?) throws -> DrillReport.Check {
        let journal = try Journal(stateDirectory: state)
        let records = try journal.lastRun().map { try journal.steps(of: $0.id) } ?? []
        let acting: Set<StepKind> = [.stop, .promote, .fence, .rewind, .restore, .start]
        let blind = records.filter { acting.contains($0.step.kind) && $0.status == .done && (seconds($0.endedAt) ?? 0) > at }
        let passed = runError != nil && blind.isEmpty
        return .init(
            name: "the run stops when failoverd loses every site", passed: passed,
            detail: runError.map {
                "exit \($0.code.rawValue): \($0.message.prefix(300))" + (blind.isEmpty ? "" : "; but acted: \(blind.map(\.step.summary))")
            }
                ?? "the run completed although failoverd could reach no site")
    }
}
