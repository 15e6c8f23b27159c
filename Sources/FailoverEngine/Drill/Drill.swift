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
    /// Drill the plan's sandbox or lab that already runs (built by `sandbox up` or `lab up`, with any state
    /// directory) instead of building one, and leave it running: a drill never takes down what it did not build.
    public var reuse: Bool = false
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

    /// Runs the drill and writes its report.
    ///
    /// Refuses (exit 3), before anything is built or stopped, when the plan's sandbox or lab already runs on
    /// this host, naming it and the command that takes it down; with `reuse` it drills that one instead, and
    /// refuses when none runs. It tears down, on every path unless `keep`, only what it built itself (what
    /// its own state directory's manifest lists); a reused sandbox or lab stays up.
    public func run() async throws -> DrillReport {
        try checkState()
        // A plan of ssh sites is drilled in the lab: its hosts as network namespaces, reached over SSH.
        let sandbox = DrillSession.environment(plan: plan, state: state, planPath: options.planPath, logger: options.logger)
        let running = try await sandbox.running()
        let planWord = RunningTopology.word(options.planPath)
        if options.reuse {
            guard let running else {
                throw FailoverError.refused(
                    "drill --reuse: no \(sandbox.kind.rawValue) of plan \(PlanValues.quoted(plan.name)) runs on this host; build it first (`failoverd \(sandbox.kind.rawValue) up \(planWord)`), or drop --reuse and the drill builds and removes its own."
                )
            }
            say("drill \(plan.name): using the running \(running.kind.rawValue) (\(running.evidence.joined(separator: ", "))); it stays up")
        } else if let running {
            throw running.refusal(
                "drill", planPath: options.planPath, reuse: "drill it as it is with `failoverd drill \(planWord) --reuse`.")
        }
        try prepareState()
        if options.reuse {
            // The drill's own SSH connections (a lab's), never the lab itself.
            do {
                try clearRunState()
                let report = try await rehearse(sandbox)
                await RemoteShell.closeAll(stateDirectory: state)
                return report
            } catch {
                await RemoteShell.closeAll(stateDirectory: state)
                throw error
            }
        }
        do {
            say("drill \(plan.name): building the \(sandbox.kind.rawValue)")
            // A manifest of its own with nothing running: what an earlier drill in this directory left.
            if sandbox.exists { try await sandbox.down() }
            try clearRunState()
            try await sandbox.up()
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

    /// Refuses a state directory the drill may not use, before anything is created.
    ///
    /// - Throws: ``FailoverError`` (invalid input) for a non-empty directory without a drill's marker: the
    ///   drill empties its state directory, and must never empty one it did not create.
    func checkState() throws { try Self.checkState(state) }

    /// ``checkState()`` for the state directory `state`.
    static func checkState(_ state: String) throws {
        let marker = state + "/" + Self.stateMarker
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: state), !entries.isEmpty {
            guard (try? Files.readText(marker, owner: nil, mustBeOwn: true)) ?? nil != nil else {
                throw FailoverError.invalid(
                    "drill: state directory \(state) is not empty and was not created by a drill (it has no \(Self.stateMarker) of failoverd's); the drill empties its state directory, so give --state a new or empty directory."
                )
            }
        }
    }

    /// Creates the drill's state directory (0700) with its marker, or accepts one a drill created before.
    func prepareState() throws { try Self.prepareState(state) }

    /// ``prepareState()`` for the state directory `state`.
    static func prepareState(_ state: String) throws {
        try checkState(state)
        let marker = state + "/" + Self.stateMarker
        try StateDirectory.prepare(state)
        if !Files.exists(marker) {
            try Files.write("created by failoverd drill; the drill empties this directory\n", to: marker, mode: 0o600, owner: nil)
        }
    }

    /// Removes the previous drill's journal and simulation from the state directory (not the marker, not a
    /// sandbox's or a lab's manifest and files).
    func clearRunState() throws { try Self.clearRunState(state) }

    /// ``clearRunState()`` for the state directory `state`.
    static func clearRunState(_ state: String) throws {
        for entry in try FileManager.default.contentsOfDirectory(atPath: state)
        where entry != Self.stateMarker && !entry.hasPrefix("sandbox-") && !entry.hasPrefix("lab-") {
            try Files.removeTree(state + "/" + entry, owner: nil)
        }
    }

    /// Runs the workload, the faults and the plan on the built (or reused) topology, checks, and writes the report.
    func rehearse(_ sandbox: any DrillEnvironment) async throws -> DrillReport {
        let session = try DrillSession(
            plan: plan, options: options, state: state, environment: sandbox, clock: DrillClock(), wallStart: Date())
        let firstWrite: Double
        do {
            firstWrite = try await session.startWorkload()
        } catch {
            await session.abort()
            throw error
        }
        say("drill \(plan.name): workload started (\(options.writers) writers); warming up for \(options.warmupSeconds) s")
        var report: DrillReport
        do {
            if let brain = try await session.warmUp(until: firstWrite + options.warmupSeconds) {
                say("drill \(plan.name): \(brain.0) and \(brain.1) both accept writes during the warm-up; ending it early")
            }
            try await session.injectBeforeRun()
            say("drill \(plan.name): running the plan")
            let onLine = options.onLine
            var runOptions = RunOptions(
                stateDirectory: state, allowDataLoss: options.allowDataLoss, isDrill: true, logger: options.logger,
                onProgress: { p in
                    await session.progress(p)
                    if p.phase != .begin && p.phase != .started {
                        onLine?(
                            "  [\(p.step.number)/\(p.total)] \(p.phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(p.step.summary)  elapsed \(String(format: "%.2f", p.elapsed)) s"
                        )
                    }
                })
            runOptions.dwellBetweenTransitions = options.dwellSeconds
            runOptions.assumeFenced = options.assumeFenced
            var runError: FailoverError?
            do {
                if let crash = options.faults.compactMap({ if case .crashEngine(let c) = $0 { c } else { nil } }).first {
                    session.record(try await crashEngine(at: crash, clock: session.clock))
                    _ = try await Executor(options: runOptions).resume(runID: nil)
                } else if let crash = options.faults.compactMap({ if case .crashCoordinator(let c) = $0 { c } else { nil } }).first {
                    var killed = try await crashEngine(at: crash, clock: session.clock)
                    killed.fault = "crash-coordinator@\(crash)"
                    session.record(killed)
                    let (event, second) = try await takeOver(clock: session.clock)
                    session.record(event)
                    session.coordinators = second
                } else if options.faults.contains(where: { if case .isolateCoordinator = $0 { true } else { false } }) {
                    try await isolateCoordinator(runOptions: runOptions, session: session)
                } else {
                    _ = try await Executor(options: runOptions).run(plan)
                }
            } catch let e as FailoverError {
                runError = e
                say("drill \(plan.name): the run ended with exit \(e.code.rawValue): \(e.message)")
            }
            let runEnd = session.clock.now()
            say("drill \(plan.name): checking")
            report = try await session.finish(runError: runError, runEnd: runEnd)
        } catch {
            await session.abort()
            throw error
        }
        try report.write(to: options.reportDirectory)
        return report
    }

    /// The second coordinator of a coordinated plan: `failoverd resume --plan` with a state directory of its
    /// own, in the network namespace of the host of the plan's final primary (the data center that survives),
    /// as `failoverd lab exec` runs it. Returns the fault event and where the second coordinator's journal is.
    func takeOver(clock: DrillClock) async throws -> (DrillReport.FaultEvent, DrillSession.Coordinators) {
        let roles = try Planner(plan: plan).finalRoles().get()
        guard let site = plan.sites.first(where: { roles[$0.name] == .primary }) else {
            throw FailoverError.invalid(
                "drill: plan \(plan.name) ends with no primary; crash-coordinator needs a data center to take over from")
        }
        let host = site.leader.host
        let second = state + "/coordinator-b"
        var args = [options.executable, "resume", "--plan", options.planPath, "--state", second, "--quiet", "--drill"]
        if options.allowDataLoss { args.append("--allow-data-loss") }
        for site in options.assumeFenced { args += ["--assume-fenced", site] }
        if options.dwellSeconds > 0 { args += ["--dwell", String(options.dwellSeconds)] }
        let argv = try await Lab(plan: plan, stateDirectory: state).namespaceArguments(host: host) + args
        let started = clock.now()
        let result = try await CommandRunner(forwardsRepositoryEnvironment: true).run(
            argv[0], Array(argv.dropFirst()), workingDirectory: FileManager.default.currentDirectoryPath,
            timeout: plan.policy.stepTimeoutSeconds * 20)
        guard result.exitCode == 0 else {
            throw FailoverError.failed(
                "drill: the second coordinator (resume --plan on \(host), site \(site.name)) failed (exit \(result.exitCode)): \(result.outputTail)"
            )
        }
        return (
            .init(
                fault: "second coordinator", at: started,
                detail: "resume --plan in the namespace of \(host) (site \(site.name)), state directory \(second): finished the run"),
            .init(first: state, second: second, host: host)
        )
    }

    /// `isolate-coordinator@STEP`: the first coordinator runs the plan here, on the control host; the fault
    /// (``FaultInjector/networkFaults(step:)``) cuts it off etcd and every site as STEP begins. The second
    /// coordinator then takes the run over from the final primary's data center (it waits out the first one's
    /// lease), the cut heals, and the drill waits for the first to end: it must end with exit 4 and no record
    /// (``DrillChecker/isolatedCoordinatorChecks``).
    func isolateCoordinator(runOptions: RunOptions, session: DrillSession) async throws {
        let plan = self.plan
        let ended = Locked(false)
        let first = Task { () -> FailoverError? in
            defer { ended.withLock { $0 = true } }
            do {
                _ = try await Executor(options: runOptions).run(plan)
                return nil
            } catch let e as FailoverError {
                return e
            } catch {
                return FailoverError.failed("\(error)")
            }
        }
        // The cut strikes as the step begins; a run that ends before it never reached the step.
        let cutAt = try await Wait.until(timeout: plan.policy.stepTimeoutSeconds * 20, interval: 0.02) { () -> Double?? in
            if let at = session.injector.coordinatorIsolatedAt.current { return .some(at) }
            return ended.current ? .some(nil) : nil
        }
        guard let cut = cutAt ?? nil else {
            let error = await first.value
            throw FailoverError.failed(
                "drill: the first coordinator ended before the isolate-coordinator step began (\(error.map { "exit \($0.code.rawValue): \($0.message)" } ?? "it finished the plan")); choose a step the run reaches"
            )
        }
        say(String(format: "drill %@: the first coordinator is cut off etcd and every site; the second takes over", plan.name))
        let (event, second) = try await takeOver(clock: session.clock)
        session.record(event)
        session.coordinators = second
        if let heal = await session.injector.reconnectControl() { session.record(heal) }
        let error = await first.value
        // Where the sshd logs end now: the check reads what they gained from the cut to here.
        let logs = Dictionary(uniqueKeysWithValues: session.injector.sshdLogsAtCut.current.map { ($0.path, Lab.fileSize($0.path)) })
        session.firstCoordinator = .init(cutAt: cut, endedAt: session.clock.now(), error: error, sshdLogsAtEnd: logs)
        say("drill \(plan.name): the first coordinator ended: \(error.map { "exit \($0.code.rawValue): \($0.message)" } ?? "exit 0")")
    }

    /// Runs the plan in a child failoverd process killed at `point`; the drill then resumes it.
    func crashEngine(at point: CrashPoint, clock: DrillClock) async throws -> DrillReport.FaultEvent {
        var args = ["run", options.planPath, "--state", state, "--crash-at", point.description, "--quiet", "--drill"]
        if options.allowDataLoss { args.append("--allow-data-loss") }
        for site in options.assumeFenced { args += ["--assume-fenced", site] }
        if options.dwellSeconds > 0 { args += ["--dwell", String(options.dwellSeconds)] }
        // The child works where the drill works, so relative plan and state paths mean the same to both.
        // The child failoverd passes pgBackRest's settings on to the servers it starts, as this one does.
        let result = try await CommandRunner(forwardsRepositoryEnvironment: true).run(
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
