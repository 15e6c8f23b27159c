import Foundation
import Logging

/// One plan's part of a drill: its sandbox (or lab), its workload and its faults before the run; its
/// checks and figures after. A drill has one; a fleet drill has one per member, on one clock.
final class DrillSession: @unchecked Sendable {
    let plan: Plan
    let options: DrillOptions
    /// The state directory of the plan's run and of its sandbox manifest.
    let state: String
    let clock: DrillClock
    /// The wall-clock time of the clock's origin: journal times are placed on the drill's clock with it.
    let wallStart: Date
    let environment: any DrillEnvironment
    let driver: LocalPostgresDriver
    let workload: Workload
    let injector: FaultInjector
    /// Faults struck before the run.
    private(set) var faultEvents: [DrillReport.FaultEvent] = []
    /// Faults struck during the run, from the progress hook.
    let struck = Locked([DrillReport.FaultEvent]())
    private let killSteps: Set<Int>
    /// After a `crash-coordinator` takeover: the two coordinators' state directories, the second's host.
    var coordinators: Coordinators?
    /// After an `isolate-coordinator` takeover: how the first coordinator, cut off, ended.
    var firstCoordinator: IsolatedCoordinator?

    /// The first coordinator of an `isolate-coordinator` drill: when it was cut off, when its run ended and
    /// with which error (nil when it finished the plan).
    struct IsolatedCoordinator: Sendable {
        var cutAt: Double
        var endedAt: Double
        var error: FailoverError?
        /// The size of each host's sshd log when it ended.
        var sshdLogsAtEnd: [String: UInt64]
    }

    /// The state directories of a drill's two coordinators, and the lab host the second ran on.
    struct Coordinators: Sendable {
        /// The first coordinator's (the drill's own state directory).
        var first: String
        /// The second's: its journal holds the whole run.
        var second: String
        /// The lab host whose namespace it ran in.
        var host: String
    }

    /// The environment a drill of `plan` builds: the lab for a plan of ssh sites, else the sandbox.
    /// `planPath` is the plan file as the user named it, for the commands a refusal suggests.
    static func environment(plan: Plan, state: String, planPath: String?, logger: Logger) -> any DrillEnvironment {
        if plan.sites.contains(where: { $0.driver == .ssh }) {
            var lab = Lab(plan: plan, stateDirectory: state, logger: logger)
            lab.planPath = planPath
            return LabEnvironment(lab: lab)
        }
        var local = Sandbox(plan: plan, stateDirectory: state, logger: logger)
        local.planPath = planPath
        return local
    }

    /// A session over an environment already built, on `clock` (whose origin is `wallStart`).
    init(plan: Plan, options: DrillOptions, state: String, environment: any DrillEnvironment, clock: DrillClock, wallStart: Date) throws {
        self.plan = plan
        self.options = options
        self.state = state
        self.environment = environment
        self.clock = clock
        self.wallStart = wallStart
        let driver = try LocalPostgresDriver(plan: plan, logger: options.logger)
        self.driver = driver
        workload = Workload(
            instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: options.writers, clock: clock,
            connInfo: { driver.adminConnInfo($0) })
        injector = FaultInjector(plan: plan, driver: driver, workload: workload, clock: clock)
        if plan.sites.contains(where: { $0.driver == .ssh }) {
            injector.lab = Lab(plan: plan, stateDirectory: state, logger: options.logger)
        }
        injector.faults = options.faults
        killSteps = Set(options.faults.compactMap { if case .killPrimary(let n) = $0 { n } else { nil } })
    }

    /// Starts the workload on the declared primary and waits for its first acknowledged write.
    /// - Returns: when that write was acknowledged, on the drill's clock.
    func startWorkload() async throws -> Double {
        guard let primary = plan.declaredPrimary?.leader else {
            throw FailoverError.invalid("drill: plan \(plan.name) declares no primary site")
        }
        try await workload.prepare(primary: primary)
        workload.start()
        let firstWrites = try await Wait.until(timeout: 20, interval: 0.05) { self.workload.ledger.current.acknowledged.first?.at }
        guard let firstWrite = firstWrites else {
            throw FailoverError.failed(
                "drill: no write was acknowledged by \(primary.name) (plan \(plan.name)) within 20 s; see `failoverd sandbox status`")
        }
        return firstWrite
    }

    /// The warm-up: the workload alone until `until` on the drill's clock, the baseline the timeline shows.
    /// Two instances accepting writes at once (promoted outside failoverd) end it early: the split-brain check
    /// will fail whatever the plan does, and every further second on such a topology only diverges the two further.
    /// - Returns: the pair of instances that both accepted writes, when the warm-up ended early.
    func warmUp(until: Double) async throws -> (String, String)? {
        let warmed = try await Wait.until(timeout: max(0, until - clock.now()) + 20, interval: 0.05) { () -> Bool? in
            if !self.workload.splitBrains().isEmpty { return false }
            return self.clock.now() >= until ? true : nil
        }
        guard warmed == false, let brain = workload.splitBrains().first else { return nil }
        return (brain.0, brain.1)
    }

    /// Strikes the faults due before the run (a cut receiver, an archive stall).
    func injectBeforeRun() async throws {
        for f in options.faults {
            if let e = try await injector.beforeRun(f) { faultEvents.append(e) }
        }
    }

    /// The progress hook: kills the primary and applies the network faults due when a step begins.
    func progress(_ p: StepProgress) async {
        guard p.phase == .begin else { return }
        if killSteps.contains(p.step.number), let e = injector.killPrimary(step: p.step.number) { struck.withLock { $0.append(e) } }
        for e in await injector.networkFaults(step: p.step.number) { struck.withLock { $0.append(e) } }
    }

    /// Records a fault struck elsewhere (the engine killed in a child process).
    func record(_ event: DrillReport.FaultEvent) { faultEvents.append(event) }

    /// After the run: lets writes resume on the final primary, stops the workload, undoes the faults, and
    /// turns what was seen into the plan's checks and figures.
    func finish(runError: FailoverError?, runEnd: Double) async throws -> DrillReport {
        _ = try await Wait.until(timeout: 20, interval: 0.05) {
            self.workload.ledger.current.acknowledged.contains { $0.at > runEnd + max(1, self.options.dwellSeconds) } ? true : nil
        }
        await workload.stop()
        await injector.restore()
        // After a takeover the second coordinator's journal holds the whole run.
        let checker = DrillChecker(
            plan: plan, options: options, driver: driver, workload: workload, clock: clock, wallStart: wallStart,
            state: coordinators?.second ?? state)
        let faults = (faultEvents + struck.current).sorted { $0.at < $1.at }
        var report = try await checker.report(runError: runError, faults: faults)
        if let coordinators,
            let crash = faults.first(where: { $0.fault.hasPrefix("crash-coordinator@") || $0.fault.hasPrefix("isolate-coordinator@") })
        {
            let (coordination, check) = try await checker.coordination(coordinators, faultAt: crash.at)
            report.coordination = coordination
            report.checks.append(check)
            if let firstCoordinator {
                report.checks += try await checker.isolatedCoordinatorChecks(
                    firstCoordinator, coordinators: coordinators, first: coordination.first,
                    sshdLogs: injector.sshdLogsAtCut.current, controlAddress: Lab.controlAddress)
            }
        }
        if !injector.everCut.current.isEmpty {
            report.checks += try await checker.partitionChecks(cut: injector.everCut.current)
        }
        if let isolated = injector.isolatedAt.current {
            // failoverd cut off every site cannot complete the plan: what counts is that it stopped without acting blind.
            report.checks.removeAll { $0.name == "plan completed" || $0.name == "final roles as planned" }
            report.checks.insert(try checker.isolationCheck(at: isolated, runError: runError), at: 0)
        }
        report.passed = report.checks.allSatisfy(\.passed)
        return report
    }

    /// Stops the workload and undoes the faults on a path that does not reach ``finish(runError:runEnd:)``.
    func abort() async {
        await workload.stop()
        await injector.restore()
    }
}
