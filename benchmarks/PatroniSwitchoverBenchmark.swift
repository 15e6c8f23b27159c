@_spi(Benchmarks) import FailoverEngine
import Foundation

/// Write unavailability of failoverd's cross-site switchover of Patroni sites against the same two
/// `PATCH /config` calls made by hand in the same order (curl; the promotion sent once the old leader is
/// Patroni's standby leader; no token check), in one run, on one sandbox, under the same writers.
struct PatroniSwitchoverBenchmark: Sendable {
    /// A plan of two Patroni sites: a primary and a streaming standby (plans/patroni-switchover.json).
    let plan: Plan
    /// Rounds: each is one hand-made switchover and one failoverd switchover.
    let rounds: Int
    /// failoverd's state directory, where the sandbox's manifest lives.
    let stateDirectory: String
    /// Where progress lines go.
    let say: @Sendable (String) -> Void

    /// Creates the benchmark.
    init(
        plan: Plan, rounds: Int, stateDirectory: String = RunOptions.defaultStateDirectory, say: @escaping @Sendable (String) -> Void
    ) {
        self.plan = plan
        self.rounds = rounds
        self.stateDirectory = stateDirectory
        self.say = say
    }

    /// Seconds of write unavailability for each hand-made and each failoverd switchover.
    func run() async throws -> (hand: [Double], engine: [Double]) {
        guard let primarySite = plan.declaredPrimary, let standbySite = plan.sites.first(where: { $0.role == .streamingStandby }),
            plan.sites.allSatisfy({ $0.driver == .patroni })
        else {
            throw FailoverError.invalid("the Patroni switchover benchmark needs two Patroni sites: a primary and a streaming standby")
        }
        return try await Sandbox(plan: plan, stateDirectory: stateDirectory).withFresh {
            try await measure(primarySite: primarySite, standbySite: standbySite)
        }
    }

    func measure(primarySite: Site, standbySite: Site) async throws -> (hand: [Double], engine: [Double]) {
        let patroni = PatroniSite(plan: plan, timeout: 60, pollInterval: 0.05)
        let switchover = SwitchoverBenchmark(plan: plan, rounds: 1, stateDirectory: stateDirectory, say: say)
        let clock = DrillClock()
        let workload = Workload(instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 2, clock: clock) {
            patroni.adminConnInfo($0)
        }
        try await workload.prepare(primary: primarySite.leader)
        workload.start()
        var hand: [Double] = []
        var engine: [Double] = []
        var a = primarySite
        var b = standbySite
        do {
            for round in 1...rounds {
                try await caughtUp(b, behind: a, patroni)
                // By hand: demote a (standby_cluster pointing at b), wait for Patroni to report it standby
                // leader, promote b (standby_cluster: null). The calls a DBA makes with curl.
                let t0 = clock.now()
                let rest = try patroni.api(a)
                let demote = try await rest.patch(
                    try patroni.url(a.leader), "/config", json: ["standby_cluster": ["host": b.leader.host, "port": b.leader.port]])
                guard demote.status == 200 else { throw FailoverError.failed("PATCH /config answered \(demote.status)") }
                _ = try await Poll.until("\(a.leader.name) to be standby leader", timeout: 60, interval: 0.05) { () async throws -> Bool? in
                    try await patroni.memberInfo(a, a.leader)["role"] as? String == "standby_leader" ? true : nil
                }
                let promote = try await patroni.api(b).patch(try patroni.url(b.leader), "/config", json: ["standby_cluster": NSNull()])
                guard promote.status == 200 else { throw FailoverError.failed("PATCH /config answered \(promote.status)") }
                hand.append(try await switchover.unavailability(since: t0, on: b.leader, workload))
                swap(&a, &b)
                // failoverd: the same switchover through the engine, gates and journal included.
                try await caughtUp(b, behind: a, patroni)
                let target = b.leader
                engine.append(
                    try await SwitchoverBenchmark.throughEngine(plan, from: a.name, to: b.name, clock: clock) {
                        try await switchover.unavailability(since: $0, on: target, workload)
                    })
                swap(&a, &b)
                say(String(format: "round %d: by hand %.3f s, failoverd %.3f s", round, hand.last!, engine.last!))
            }
        } catch {
            await workload.stop()
            throw error
        }
        await workload.stop()
        return (hand, engine)
    }

    /// Waits until `standby`'s leader streams from `primary`'s and has replayed nearly all it had.
    func caughtUp(_ standby: Site, behind primary: Site, _ patroni: PatroniSite) async throws {
        _ = try await Poll.until("\(standby.leader.name) to catch up", timeout: 120, interval: 0.05) { () async throws -> Bool? in
            let p = try await patroni.memberStatus(primary, primary.leader)
            let s = try await patroni.memberStatus(standby, standby.leader)
            guard s.walReceiver?.isStreaming(from: primary.leader) == true, let top = p.currentLSN, let r = s.replayLSN else { return nil }
            return top.bytes(after: r) < 1 << 20 ? true : nil
        }
    }
}
