@_spi(Benchmarks) import FailoverEngine
import Foundation

/// Write unavailability of a coordinated switchover (the journal through the lab's three etcd members)
/// against the same switchover with `coordination` removed, in one lab, under the same two writers. Rounds
/// alternate which goes first, so each variant switches over in both directions and sees the same machine.
/// Each run has a fresh state directory; the lab goes down on every path.
struct CoordinatedSwitchoverBenchmark {
    /// The coordinated plan (a copy of plans/dc-switchover-coordinated.json with its own name and paths).
    let plan: Plan
    /// Rounds: each is one coordinated and one uncoordinated switchover.
    let rounds: Int
    /// The lab's state directory; each run's own state directories go under it.
    let stateDirectory: String
    /// Progress lines.
    let say: (String) -> Void

    /// One switchover: its write unavailability and its command-to-done time.
    struct Sample {
        /// The longest gap between acknowledged writes, up to the first write on the new primary.
        var window: Double
        /// From the run's start to its end.
        var total: Double
    }

    /// `shipped` renamed to `name`, with every path under `root`; the second site's instance moves to port
    /// 5434, so that the writers' ledger (which tells servers apart by port) tells the new primary's writes
    /// from the old one's.
    static func plan(from shipped: Plan, name: String, root: String) throws -> Plan {
        let old = (shipped.repository.path as NSString).deletingLastPathComponent
        func moved(_ path: String) -> String { path.hasPrefix(old + "/") ? root + path.dropFirst(old.count) : path }
        var p = shipped
        p.name = name
        p.repository.path = moved(p.repository.path)
        p.replication.passfile = moved(p.replication.passfile)
        for i in p.sites.indices {
            if let f = p.sites[i].ssh?.identityFile { p.sites[i].ssh?.identityFile = moved(f) }
            if let f = p.sites[i].ssh?.knownHostsFile { p.sites[i].ssh?.knownHostsFile = moved(f) }
            for j in p.sites[i].instances.indices {
                p.sites[i].instances[j].dataDirectory = moved(p.sites[i].instances[j].dataDirectory)
                if i > 0 { p.sites[i].instances[j].port += i }
            }
        }
        guard p.coordination?.etcd != nil, p.sites.allSatisfy({ $0.instances.allSatisfy { $0.dataDirectory.hasPrefix(root + "/") } }) else {
            throw FailoverError.invalid("coord-switchover: \(shipped.name) needs coordination.etcd and every path under \(old)")
        }
        return p
    }

    /// The samples of each variant, round by round.
    func run() async throws -> (coordinated: [Sample], plain: [Sample]) {
        try StateDirectory.prepare(stateDirectory)
        let lab = Lab(plan: plan, stateDirectory: stateDirectory)
        do {
            if lab.exists { _ = try await lab.down() }
            try await lab.up()
            let result = try await measure()
            _ = try await lab.down()
            return result
        } catch {
            _ = try? await lab.down()
            throw error
        }
    }

    func measure() async throws -> (coordinated: [Sample], plain: [Sample]) {
        var plain = plan
        plain.coordination = nil
        guard var primary = plan.declaredPrimary, var standby = plan.sites.first(where: { $0.role == .streamingStandby }) else {
            throw FailoverError.invalid("coord-switchover: \(plan.name) needs a primary site and a streaming-standby site")
        }
        let clock = DrillClock()
        // The observer reads both servers through the local driver: in the lab every host shares this file
        // system and process table, and SQL goes to 198.18.x as it would to any host.
        let driver = try LocalPostgresDriver(plan: plain)
        let workload = Workload(instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 2, clock: clock) {
            driver.adminConnInfo($0)
        }
        let observer = SwitchoverBenchmark(plan: plain, rounds: rounds, stateDirectory: stateDirectory) { _ in }
        try await workload.prepare(primary: primary.leader)
        workload.start()
        var results: (coordinated: [Sample], plain: [Sample]) = ([], [])
        do {
            for round in 1...rounds {
                var line: [String] = []
                for coordinated in round % 2 == 1 ? [true, false] : [false, true] {
                    try await observer.caughtUp(standby.leader, behind: primary.leader, driver)
                    var p = coordinated ? plan : plain
                    for i in p.sites.indices {
                        p.sites[i].role =
                            p.sites[i].name == primary.name
                            ? .primary : p.sites[i].name == standby.name ? .streamingStandby : p.sites[i].role
                    }
                    p.transitions = [Transition(action: .switchover, to: standby.name)]
                    let state = stateDirectory + "/run-\(round)-\(coordinated ? "coordinated" : "plain")"
                    try? FileManager.default.removeItem(atPath: state)
                    let t0 = clock.now()
                    _ = try await Executor(options: RunOptions(stateDirectory: state)).run(p)
                    let total = clock.now() - t0
                    let window = try await observer.unavailability(since: t0, on: standby.leader, workload)
                    await RemoteShell.closeAll(stateDirectory: state)
                    try? FileManager.default.removeItem(atPath: state)
                    let sample = Sample(window: window, total: total)
                    if coordinated { results.coordinated.append(sample) } else { results.plain.append(sample) }
                    line.append(
                        String(
                            format: "%@ %@→%@ window %.3f s (run %.3f s)", coordinated ? "coordinated" : "plain", primary.name,
                            standby.name,
                            window, total))
                    swap(&primary, &standby)
                }
                say("round \(round): " + line.joined(separator: ", "))
            }
        } catch {
            await workload.stop()
            throw error
        }
        await workload.stop()
        return results
    }
}

/// `failoverd-bench coord-switchover [--rounds N]`: the coordinated switchover's write unavailability against
/// the uncoordinated one in the same lab (issue #21's target: at most 1.15×). Run it under
/// `flock /work/.lab.lock`: the lab exists once per machine.
func benchCoordinatedSwitchover(rounds: Int) async throws {
    let root = "/tmp/failoverd-bench-coord"
    let plan = try CoordinatedSwitchoverBenchmark.plan(
        from: try PlanLoader.load("plans/dc-switchover-coordinated.json"), name: "bench-coord-switchover", root: root)
    let state = root + "-state"
    let (c, p) = try await CoordinatedSwitchoverBenchmark(plan: plan, rounds: rounds, stateDirectory: state) {
        print("  " + $0)
        fflush(nil)
    }.run()
    try? FileManager.default.removeItem(atPath: state)
    let cw = DrillMath.summary(c.map(\.window))!
    let pw = DrillMath.summary(p.map(\.window))!
    report("coordinated switchover (median of \(rounds))", cw.median, unit: "s", baselineName: "same plan without coordination", pw.median)
    let ct = DrillMath.summary(c.map(\.total))!.median
    let pt = DrillMath.summary(p.map(\.total))!.median
    report("  command to done (median of \(rounds))", ct, unit: "s", baselineName: "same plan without coordination", pt)
    let ratios = zip(c, p).map { $0.window / $1.window }.sorted()
    print(
        String(
            format: "  write unavailability ratio %.2fx (target: at most 1.15x: %@); per round %@", cw.median / pw.median,
            cw.median / pw.median <= 1.15 ? "met" : "NOT met", ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
}
