import Foundation
import GRDB
import Logging

/// How to drill a plan.
public struct DrillOptions: Sendable {
    /// Where report.json, report.md and timeline.svg go.
    public var reportDirectory: String
    /// The faults to inject.
    public var faults: [Fault]
    /// Concurrent writers.
    public var writers: Int
    /// Leave the sandbox running afterwards.
    public var keep: Bool
    /// Pass --allow-data-loss to the run.
    public var allowDataLoss: Bool
    /// Pass --assume-fenced SITE to the run, for each site listed.
    public var assumeFenced: [String] = []
    /// Seconds the workload runs between transitions, so each topology's lag is measured.
    public var dwellSeconds: Double
    /// Seconds the workload runs before the plan starts: the baseline the timeline shows.
    public var warmupSeconds: Double = 1
    /// The state directory for the drill's run (default: REPORT/state, emptied first).
    public var stateDirectory: String?
    /// The failoverd executable, for crash-engine faults (the engine is killed in a child process).
    public var executable: String
    /// The plan file, for crash-engine faults.
    public var planPath: String
    /// Progress lines for a terminal.
    public var onLine: (@Sendable (String) -> Void)?
    /// Library logging.
    public var logger: Logger

    /// Options with the documented defaults.
    public init(
        reportDirectory: String, faults: [Fault] = [], writers: Int = 4, keep: Bool = false, allowDataLoss: Bool = false,
        dwellSeconds: Double = 2, stateDirectory: String? = nil, executable: String, planPath: String,
        onLine: (@Sendable (String) -> Void)? = nil, logger: Logger = Logger(label: "failoverd.drill")
    ) {
        self.reportDirectory = reportDirectory
        self.faults = faults
        self.writers = writers
        self.keep = keep
        self.allowDataLoss = allowDataLoss
        self.dwellSeconds = dwellSeconds
        self.stateDirectory = stateDirectory
        self.executable = executable
        self.planPath = planPath
        self.onLine = onLine
        self.logger = logger
    }
}

/// Rehearses a plan on a local sandbox of real PostgreSQL under write load and faults, and proves with
/// figures what it cost: RTO, RPO, standby lag, and that there never were two writable primaries.
public struct Drill: Sendable {
    let plan: Plan
    let options: DrillOptions

    /// A drill of `plan`.
    public init(plan: Plan, options: DrillOptions) {
        self.plan = plan
        self.options = options
    }

    var state: String { options.stateDirectory ?? options.reportDirectory + "/state" }
    func say(_ line: String) { options.onLine?(line) }

    /// Runs the drill and writes its report; the sandbox is torn down on every path unless `keep`.
    public func run() async throws -> DrillReport {
        try prepareState()
        // A plan of ssh sites is drilled in the lab: its hosts as network namespaces, reached over SSH.
        let sandbox: any DrillEnvironment =
            plan.sites.contains { $0.driver == .ssh }
            ? LabEnvironment(lab: Lab(plan: plan, stateDirectory: state, logger: options.logger))
            : Sandbox(plan: plan, stateDirectory: state, logger: options.logger)
        do {
            let report = try await rehearse(sandbox)
            if !options.keep { try await sandbox.down() }
            return report
        } catch {
            if !options.keep && sandbox.exists { _ = try? await sandbox.down() }
            throw error
        }
    }

    /// The file that marks a state directory as one a drill created, and so may empty.
    static let stateMarker = ".failoverd-drill"

    /// Creates the drill's state directory (0700) with its marker, or accepts one a drill created before.
    ///
    /// - Throws: ``FailoverError`` (invalid input) for a non-empty directory without a drill's marker: the
    ///   drill empties its state directory, and must never empty one it did not create.
    func prepareState() throws {
        let marker = state + "/" + Self.stateMarker
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: state), !entries.isEmpty {
            guard (try? Files.readText(marker, owner: nil, mustBeOwn: true)) ?? nil != nil else {
                throw FailoverError.invalid(
                    "drill: state directory \(state) is not empty and was not created by a drill (it has no \(Self.stateMarker) of failoverd's); the drill empties its state directory, so give --state a new or empty directory."
                )
            }
        }
        try StateDirectory.prepare(state)
        if !Files.exists(marker) {
            try Files.write("created by failoverd drill; the drill empties this directory\n", to: marker, mode: 0o600, owner: nil)
        }
    }

    /// Removes the previous drill's journal and simulation from the state directory (not the marker, not a
    /// sandbox manifest).
    func clearRunState() throws {
        for entry in try FileManager.default.contentsOfDirectory(atPath: state)
        where entry != Self.stateMarker && !entry.hasPrefix("sandbox-") {
            try Files.removeTree(state + "/" + entry, owner: nil)
        }
    }

    func rehearse(_ sandbox: any DrillEnvironment) async throws -> DrillReport {
        say("drill \(plan.name): building the sandbox")
        if sandbox.exists { try await sandbox.down() }
        try clearRunState()
        try await sandbox.up()
        let driver = try LocalPostgresDriver(plan: plan, logger: options.logger)
        let clock = DrillClock()
        let wallStart = Date()
        let workload = Workload(
            instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: options.writers, clock: clock,
            connInfo: { driver.adminConnInfo($0) })
        guard let primary = plan.declaredPrimary?.leader else { throw FailoverError.invalid("drill: the plan declares no primary site") }
        try workload.prepare(primary: primary)
        workload.start()
        defer { Task { await workload.stop() } }
        say("drill \(plan.name): workload started (\(options.writers) writers); warming up for \(options.warmupSeconds) s")
        let firstWrites = try await Wait.until(timeout: 20, interval: 0.05) { workload.ledger.current.acknowledged.first?.at }
        guard let firstWrite = firstWrites else {
            throw FailoverError.failed("drill: no write was acknowledged by \(primary.name) within 20 s; see `failoverd sandbox status`")
        }
        // The baseline: the workload alone, measured for the warm-up window. Two instances accepting writes
        // at once (promoted outside failoverd) end it early: the split-brain check will fail whatever the
        // plan does, and every further second on such a topology only diverges the two further.
        let warmed = try await Wait.until(timeout: options.warmupSeconds + 20, interval: 0.05) { () -> Bool? in
            if !workload.splitBrains().isEmpty { return false }
            return clock.now() >= firstWrite + options.warmupSeconds ? true : nil
        }
        if warmed == false, let brain = workload.splitBrains().first {
            say("drill \(plan.name): \(brain.0) and \(brain.1) both accept writes during the warm-up; ending it early")
        }
        var faultEvents: [DrillReport.FaultEvent] = []
        let injector = FaultInjector(plan: plan, driver: driver, workload: workload, clock: clock)
        if plan.sites.contains(where: { $0.driver == .ssh }) {
            injector.lab = Lab(plan: plan, stateDirectory: state, logger: options.logger)
        }
        injector.faults = options.faults
        for f in options.faults {
            if let e = try await injector.beforeRun(f) { faultEvents.append(e) }
        }
        say("drill \(plan.name): running the plan")
        let killed = Locked([DrillReport.FaultEvent]())
        let killSteps = Set(options.faults.compactMap { if case .killPrimary(let n) = $0 { n } else { nil } })
        let onLine = options.onLine
        var runOptions = RunOptions(
            stateDirectory: state, allowDataLoss: options.allowDataLoss, isDrill: true, logger: options.logger,
            onProgress: { p in
                if p.status == "begin", killSteps.contains(p.step.number) {
                    if let e = injector.killPrimary(step: p.step.number) { killed.withLock { $0.append(e) } }
                }
                if p.status == "begin" {
                    for e in injector.networkFaults(step: p.step.number) { killed.withLock { $0.append(e) } }
                }
                if p.status != "begin" && p.status != "started" {
                    onLine?(
                        "  [\(p.step.number)/\(p.total)] \(p.status.padding(toLength: 9, withPad: " ", startingAt: 0)) \(p.step.summary)  elapsed \(String(format: "%.2f", p.elapsed)) s"
                    )
                }
            })
        runOptions.dwellBetweenTransitions = options.dwellSeconds
        runOptions.assumeFenced = options.assumeFenced
        var runError: FailoverError?
        do {
            if let crash = options.faults.compactMap({ if case .crashEngine(let c) = $0 { c } else { nil } }).first {
                faultEvents.append(try await crashEngine(at: crash, clock: clock))
                _ = try await Executor(options: runOptions).resume(runID: nil)
            } else {
                _ = try await Executor(options: runOptions).run(plan)
            }
        } catch let e as FailoverError {
            runError = e
            say("drill \(plan.name): the run ended with exit \(e.code.rawValue): \(e.message)")
        }
        faultEvents += killed.current
        let runEnd = clock.now()
        // Let writes resume on the final primary, then stop the workload.
        _ = try await Wait.until(timeout: 20, interval: 0.05) {
            workload.ledger.current.acknowledged.contains { $0.at > runEnd + max(1, options.dwellSeconds) } ? true : nil
        }
        await workload.stop()
        await injector.restore()
        say("drill \(plan.name): checking")
        let checker = DrillChecker(
            plan: plan, options: options, driver: driver, workload: workload, clock: clock, wallStart: wallStart, state: state)
        var report = try await checker.report(runError: runError, faults: faultEvents.sorted { $0.at < $1.at })
        if !injector.everCut.current.isEmpty {
            report.checks += try await checker.partitionChecks(cut: injector.everCut.current)
        }
        if let isolated = injector.isolatedAt.current {
            // failoverd cut off every site cannot complete the plan: what counts is that it stopped without acting blind.
            report.checks.removeAll { $0.name == "plan completed" || $0.name == "final roles as planned" }
            report.checks.insert(try checker.isolationCheck(at: isolated, runError: runError), at: 0)
        }
        report.passed = report.checks.allSatisfy(\.passed)
        try report.write(to: options.reportDirectory)
        return report
    }

    /// Runs the plan in a child failoverd process killed at `point`; the drill then resumes it.
    func crashEngine(at point: CrashPoint, clock: DrillClock) async throws -> DrillReport.FaultEvent {
        var args = ["run", options.planPath, "--state", state, "--crash-at", point.description, "--quiet", "--drill"]
        if options.allowDataLoss { args.append("--allow-data-loss") }
        for site in options.assumeFenced { args += ["--assume-fenced", site] }
        if options.dwellSeconds > 0 { args += ["--dwell", String(options.dwellSeconds)] }
        // The child works where the drill works, so relative plan and state paths mean the same to both.
        let result = try await CommandRunner().run(
            options.executable, args, workingDirectory: FileManager.default.currentDirectoryPath,
            timeout: plan.policy.stepTimeoutSeconds * 20)
        let at = clock.now()
        guard result.exitCode == 128 + SIGKILL else {
            throw FailoverError.failed("drill: the engine was not killed at step \(point) (exit \(result.exitCode)): \(result.outputTail)")
        }
        return .init(
            fault: "crash-engine@\(point)", at: at, detail: "engine killed at step \(point); resumed by the drill (exit \(result.exitCode))"
        )
    }
}
