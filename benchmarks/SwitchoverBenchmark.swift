@_spi(Benchmarks) import FailoverEngine
import Foundation
import Logging

/// Measures write unavailability of failoverd's switchover against the raw PostgreSQL sequence it wraps
/// (CHECKPOINT, pg_ctl stop -m fast -w, pg_ctl promote -w, first write: what a DBA types), in the same run, on the same sandbox,
/// under the same writers: raw A→B, then failoverd B→A, and again.
struct SwitchoverBenchmark: Sendable {
    /// A plan with a primary site and a streaming-standby site (plans/switchover.json).
    let plan: Plan
    /// Rounds: each is one raw switchover and one failoverd switchover.
    let rounds: Int
    /// Where progress lines go.
    let say: @Sendable (String) -> Void

    /// failoverd's state directory, where the sandbox's manifest lives.
    let stateDirectory: String

    /// Creates the benchmark; the sandbox's manifest lives in `stateDirectory` (default: the machine's).
    init(
        plan: Plan, rounds: Int, stateDirectory: String = RunOptions.defaultStateDirectory, say: @escaping @Sendable (String) -> Void
    ) {
        self.plan = plan
        self.stateDirectory = stateDirectory
        self.rounds = rounds
        self.say = say
    }

    /// Seconds of write unavailability for each raw and each failoverd switchover.
    func run() async throws -> (raw: [Double], engine: [Double]) {
        guard let primarySite = plan.declaredPrimary, let standbySite = plan.sites.first(where: { $0.role == .streamingStandby }) else {
            throw FailoverError.invalid("the switchover benchmark needs a primary site and a streaming-standby site")
        }
        return try await Sandbox(plan: plan, stateDirectory: stateDirectory).withFresh {
            try await measure(primarySite: primarySite, standbySite: standbySite)
        }
    }

    func measure(primarySite: Site, standbySite: Site) async throws -> (raw: [Double], engine: [Double]) {
        let driver = try LocalPostgresDriver(plan: plan)
        let clock = DrillClock()
        let workload = Workload(instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 2, clock: clock) {
            driver.adminConnInfo($0)
        }
        try await workload.prepare(primary: primarySite.leader)
        workload.start()
        var raw: [Double] = []
        var engine: [Double] = []
        var a = primarySite
        var b = standbySite
        do {
            for round in 1...rounds {
                // Raw: what a DBA types (pg_ctl's own waits, -w), with nothing checked in between.
                try await caughtUp(b.leader, behind: a.leader, driver)
                let t0 = clock.now()
                try await driver.checkpoint(a.leader)
                try await driver.runner.run(
                    driver.bin("pg_ctl"), ["stop", "-D", a.leader.dataDirectory, "-m", "fast", "-w", "-s"], timeout: 60
                ).checked()
                try await driver.runner.run(driver.bin("pg_ctl"), ["promote", "-D", b.leader.dataDirectory, "-w", "-s"], timeout: 60)
                    .checked()
                raw.append(try await unavailability(since: t0, on: b.leader, workload))
                // Put the old primary back as a standby of the new one (not measured).
                let segment = try await driver.switchWAL(b.leader)
                _ = try await Wait.until(timeout: 30, interval: 0.02) {
                    try await driver.isArchived(b.leader, segment: segment) ? true : nil
                }
                try await driver.configureRecovery(of: a.leader, RecoverySettings(upstream: b.leader))
                try await driver.start(a.leader)
                swap(&a, &b)
                // failoverd: the same switchover through the engine, journal and gates included.
                try await caughtUp(b.leader, behind: a.leader, driver)
                let target = b.leader
                engine.append(
                    try await Self.throughEngine(plan, from: a.name, to: b.name, clock: clock) {
                        try await unavailability(since: $0, on: target, workload)
                    })
                swap(&a, &b)
                say(String(format: "round %d: raw %.3f s, failoverd %.3f s", round, raw.last!, engine.last!))
            }
        } catch {
            await workload.stop()
            throw error
        }
        await workload.stop()
        return (raw, engine)
    }

    /// Waits until `standby` streams from `primary` and has replayed what it had.
    func caughtUp(_ standby: Instance, behind primary: Instance, _ driver: LocalPostgresDriver) async throws {
        _ = try await Wait.until(timeout: 60, interval: 0.02) {
            let p = try await driver.status(of: primary)
            let s = try await driver.status(of: standby)
            guard s.walReceiver?.isStreaming(from: primary) == true, let top = p.currentLSN, let r = s.replayLSN else {
                return nil as Bool?
            }
            return top.bytes(after: r) < 1 << 20 ? true : nil
        }
    }

    /// The longest gap between acknowledged writes from `t0` until the first write acknowledged by `instance`.
    func unavailability(since t0: Double, on instance: Instance, _ workload: Workload) async throws -> Double {
        try await Self.unavailability(workload, since: t0, on: instance)
    }

    /// The longest gap between acknowledged writes of `workload` from `t0` until the first write acknowledged
    /// by `instance`.
    static func unavailability(_ workload: Workload, since t0: Double, on instance: Instance) async throws -> Double {
        guard
            let first = try await Wait.until(
                timeout: 60, interval: 0.01,
                { workload.ledger.current.acknowledged.first { $0.at >= t0 && $0.port == instance.port }?.at })
        else { throw FailoverError.failed("no write reached \(instance.name) within 60 s of its switchover") }
        return DrillMath.longestGap(ledger: workload.ledger.current, from: t0, to: first)
    }

    /// Switches `plan` over from `primary` to `target` through the engine, journal and gates included, in a
    /// state directory of its own (its SSH sessions closed and the directory removed afterwards); returns
    /// what `measure` makes of the moment the run started (on `clock`).
    static func throughEngine(
        _ plan: Plan, from primary: String, to target: String, clock: DrillClock, measure: (Double) async throws -> Double
    ) async throws -> Double {
        let p = BenchPlan.switching(plan, from: primary, to: target)
        let state = NSTemporaryDirectory() + "failoverd-bench-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let t0 = clock.now()
        _ = try await Executor(options: RunOptions(stateDirectory: state, logger: Logger(label: "bench"))).run(p)
        let measured = try await measure(t0)
        await RemoteShell.closeAll(stateDirectory: state)
        return measured
    }
}

/// How long a stop and a promotion take to be seen: `pg_ctl stop -w` and `pg_ctl promote -w` (pg_ctl's own
/// waits, in 100 ms steps) against the local driver's stop and promote (`-W`, then the postmaster's pid and
/// `pg_is_in_recovery()` watched every 5 ms), alternating on one sandbox, no writers.
struct PromotionWaitBenchmark: Sendable {
    /// A plan with a primary site and a streaming-standby site (plans/switchover.json).
    let plan: Plan
    /// Rounds: each is one switchover by pg_ctl and one by the driver.
    let rounds: Int
    /// failoverd's state directory, where the sandbox's manifest lives.
    let stateDirectory: String

    /// Creates the benchmark.
    init(plan: Plan, rounds: Int, stateDirectory: String = RunOptions.defaultStateDirectory) {
        self.plan = plan
        self.rounds = rounds
        self.stateDirectory = stateDirectory
    }

    /// Seconds of each stop and each promotion, by pg_ctl -w and by the driver.
    func run() async throws -> (pgCtlStop: [Double], pgCtlPromote: [Double], driverStop: [Double], driverPromote: [Double]) {
        guard let primarySite = plan.declaredPrimary, let standbySite = plan.sites.first(where: { $0.role == .streamingStandby }) else {
            throw FailoverError.invalid("the promotion benchmark needs a primary site and a streaming-standby site")
        }
        return try await Sandbox(plan: plan, stateDirectory: stateDirectory).withFresh {
            let driver = try LocalPostgresDriver(plan: plan)
            let helper = SwitchoverBenchmark(plan: plan, rounds: rounds, stateDirectory: stateDirectory) { _ in }
            var out: (pgCtlStop: [Double], pgCtlPromote: [Double], driverStop: [Double], driverPromote: [Double]) = ([], [], [], [])
            var (a, b) = (primarySite.leader, standbySite.leader)
            for round in 0..<(2 * rounds) {
                try await helper.caughtUp(b, behind: a, driver)
                try await driver.checkpoint(a)
                let byPgCtl = round % 2 == 0
                var t0 = ContinuousClock.now
                if byPgCtl {
                    try await driver.runner.run(
                        driver.bin("pg_ctl"), ["stop", "-D", a.dataDirectory, "-m", "fast", "-w", "-s"], timeout: 60
                    )
                    .checked()
                } else {
                    try await driver.stop(a, mode: .fast)
                }
                let stop = CommandRunner.seconds(since: t0)
                t0 = ContinuousClock.now
                if byPgCtl {
                    try await driver.runner.run(driver.bin("pg_ctl"), ["promote", "-D", b.dataDirectory, "-w", "-s"], timeout: 60).checked()
                } else {
                    try await driver.promote(b)
                }
                let promote = CommandRunner.seconds(since: t0)
                if byPgCtl {
                    out.pgCtlStop.append(stop)
                    out.pgCtlPromote.append(promote)
                } else {
                    out.driverStop.append(stop)
                    out.driverPromote.append(promote)
                }
                // The old primary follows the new one (not measured).
                let segment = try await driver.switchWAL(b)
                _ = try await Wait.until(timeout: 30, interval: 0.02) { try await driver.isArchived(b, segment: segment) ? true : nil }
                try await driver.configureRecovery(of: a, RecoverySettings(upstream: b))
                try await driver.start(a)
                swap(&a, &b)
            }
            return out
        }
    }
}
