import Foundation
import Logging

/// How to drill a fleet.
public struct FleetDrillOptions: Sendable {
    /// Where report.md, report.json, timeline.svg and each member's own drill report (members/<member>/) go.
    public var reportDirectory: String
    /// The faults, each naming its member: `kill-primary@MEMBER:STEP`, `crash-engine@MEMBER:STEP:before|after`,
    /// `cut-receiver@MEMBER:SITE`, `archive-stall@MEMBER:SECONDS`.
    public var faults: String
    /// Concurrent writers per member.
    public var writers: Int
    /// Leave the sandboxes running afterwards.
    public var keep: Bool
    /// Seconds each member's workload runs between its transitions.
    public var dwellSeconds: Double
    /// Seconds the workloads run before the fleet starts.
    public var warmupSeconds: Double
    /// failoverd's state directory for the drill (default: REPORT/state, emptied first).
    public var stateDirectory: String?
    /// The failoverd executable, for a crash-engine fault (the fleet process is killed in a child process).
    public var executable: String
    /// The fleet file, for a crash-engine fault.
    public var fleetPath: String
    /// Progress lines for a terminal.
    public var onLine: (@Sendable (String) -> Void)?
    /// Library logging.
    public var logger: Logger

    /// Options with the documented defaults: 1 writer per member, 1 s dwell, 1 s warm-up.
    public init(
        reportDirectory: String, faults: String = "", writers: Int = 1, keep: Bool = false, dwellSeconds: Double = 1,
        warmupSeconds: Double = 1, stateDirectory: String? = nil, executable: String, fleetPath: String,
        onLine: (@Sendable (String) -> Void)? = nil, logger: Logger = Logger(label: "failoverd.fleet.drill")
    ) {
        self.reportDirectory = reportDirectory
        self.faults = faults
        self.writers = writers
        self.keep = keep
        self.dwellSeconds = dwellSeconds
        self.warmupSeconds = warmupSeconds
        self.stateDirectory = stateDirectory
        self.executable = executable
        self.fleetPath = fleetPath
        self.onLine = onLine
        self.logger = logger
    }
}

/// Rehearses a fleet on local sandboxes: builds every member's sandbox, runs writers against each, runs
/// the fleet through ``FleetRunner`` (the very scheduler `fleet run` uses), checks each member as
/// `failoverd drill` does, and writes one report for the fleet with a timeline of one lane per member.
public struct FleetDrill: Sendable {
    let fleet: Fleet
    let options: FleetDrillOptions

    /// A drill of `fleet`.
    public init(fleet: Fleet, options: FleetDrillOptions) {
        self.fleet = fleet
        self.options = options
    }

    var state: String { options.stateDirectory ?? options.reportDirectory + "/state" }
    var paths: FleetPaths { FleetPaths(stateDirectory: state, fleet: fleet.name) }
    func say(_ line: String) { options.onLine?(line) }

    /// The faults by member, and the crash point of the fleet process if one is asked for.
    public static func parseFaults(_ spec: String, fleet: Fleet) throws -> (byMember: [String: [Fault]], crash: FleetCrashPoint?) {
        var byMember: [String: [Fault]] = [:]
        var crash: FleetCrashPoint?
        for raw in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            let parts = raw.split(separator: "@", maxSplits: 1).map(String.init)
            guard parts.count == 2, let colon = parts[1].firstIndex(of: ":") else {
                throw FailoverError.invalid(
                    "--faults \(raw): a fleet drill's fault names its member: NAME@MEMBER:ARGUMENT, e.g. kill-primary@auth:3, crash-engine@auth:5:after, cut-receiver@auth:dc2, archive-stall@auth:10"
                )
            }
            let memberName = String(parts[1][..<colon])
            let argument = String(parts[1][parts[1].index(after: colon)...])
            guard let member = fleet.member(named: memberName) else {
                throw FailoverError.invalid(
                    "--faults \(raw): fleet \(PlanValues.quoted(fleet.name)) has no member \(PlanValues.quoted(memberName)); members: \(fleet.members.map(\.name).joined(separator: ", "))"
                )
            }
            for f in try Fault.parse("\(parts[0])@\(argument)", plan: member.plan) {
                if case .crashEngine(let point) = f {
                    guard crash == nil else { throw FailoverError.invalid("--faults: at most one crash-engine fault per fleet drill") }
                    crash = FleetCrashPoint("\(member.name):\(point)")
                } else {
                    byMember[member.name, default: []].append(f)
                }
            }
        }
        return (byMember, crash)
    }

    /// Runs the drill and writes its reports; the sandboxes are torn down on every path unless `keep`.
    public func run() async throws -> FleetDrillReport {
        for m in fleet.members where m.plan.sites.contains(where: { $0.driver == .ssh }) {
            throw FailoverError.invalid(
                "fleet drill: member \(m.name) has ssh sites, which a fleet drill cannot build: the lab holds one plan per machine. Drill that member alone with failoverd drill."
            )
        }
        let (faults, crash) = try Self.parseFaults(options.faults, fleet: fleet)
        try Drill.prepareState(state)
        var sandboxes: [String: Sandbox] = [:]
        for m in fleet.members {
            var sandbox = Sandbox(plan: m.plan, stateDirectory: paths.member(m.name), logger: options.logger)
            sandbox.planPath = m.planFile
            // A drill never takes down what it did not build: a member's sandbox that already runs is refused.
            if let running = try await sandbox.running() {
                throw running.refusal(
                    "fleet drill", planPath: m.planFile,
                    reuse: "take it down first, or drill that member alone with `failoverd drill --reuse`.")
            }
            sandboxes[m.name] = sandbox
        }
        do {
            let report = try await rehearse(sandboxes: sandboxes, faults: faults, crash: crash)
            if !options.keep { try await tearDown(sandboxes) }
            return report
        } catch {
            if !options.keep { _ = try? await tearDown(sandboxes) }
            throw error
        }
    }

    func tearDown(_ sandboxes: [String: Sandbox]) async throws {
        for m in fleet.members { if let s = sandboxes[m.name], s.exists { try await s.down() } }
    }

    func rehearse(sandboxes: [String: Sandbox], faults: [String: [Fault]], crash: FleetCrashPoint?) async throws -> FleetDrillReport {
        // A new fleet record and new member journals; the sandboxes' manifests stay so down still finds them.
        for name in ["fleet.sqlite", "fleet.sqlite-wal", "fleet.sqlite-shm"] where Files.exists(paths.directory + "/" + name) {
            try Files.removeTree(paths.directory + "/" + name, owner: nil)
        }
        for (i, m) in fleet.members.enumerated() {
            let sandbox = sandboxes[m.name]!
            say("fleet drill \(fleet.name): building member \(m.name) (\(i + 1)/\(fleet.members.count))")
            try StateDirectory.prepare(paths.directory)
            try StateDirectory.prepare(paths.directory + "/members")
            try StateDirectory.prepare(paths.member(m.name))
            if sandbox.exists { try await sandbox.down() }
            try Drill.clearRunState(paths.member(m.name))
            try await sandbox.up()
        }
        let clock = DrillClock()
        let wallStart = Date()
        var sessions: [String: DrillSession] = [:]
        for m in fleet.members {
            let options = DrillOptions(
                reportDirectory: options.reportDirectory + "/members/" + m.name, faults: faults[m.name] ?? [], writers: options.writers,
                dwellSeconds: options.dwellSeconds, stateDirectory: paths.member(m.name), executable: options.executable,
                planPath: options.fleetPath, logger: options.logger)
            sessions[m.name] = try DrillSession(
                plan: m.plan, options: options, state: paths.member(m.name), environment: sandboxes[m.name]!, clock: clock,
                wallStart: wallStart)
        }
        do {
            return try await measure(sessions, clock: clock, crash: crash)
        } catch {
            for s in sessions.values { await s.abort() }
            throw error
        }
    }

    func measure(_ sessions: [String: DrillSession], clock: DrillClock, crash: FleetCrashPoint?) async throws -> FleetDrillReport {
        var firstWrite = 0.0
        for m in fleet.members { firstWrite = max(firstWrite, try await sessions[m.name]!.startWorkload()) }
        say(
            "fleet drill \(fleet.name): workloads started (\(options.writers) writer(s) per member); warming up for \(options.warmupSeconds) s"
        )
        for m in fleet.members {
            if let brain = try await sessions[m.name]!.warmUp(until: firstWrite + options.warmupSeconds) {
                say("fleet drill \(fleet.name): member \(m.name): \(brain.0) and \(brain.1) both accept writes during the warm-up")
            }
        }
        for m in fleet.members { try await sessions[m.name]!.injectBeforeRun() }
        // Where each member stood as the fleet started: the same gate code as `failoverd fleet plan`.
        var logger = options.logger
        logger.logLevel = .warning
        let atStart = await FleetPlanReport.make(fleet, stateDirectory: state, simulate: false, probe: true, logger: logger)
        say("fleet drill \(fleet.name): running the fleet (concurrency \(fleet.concurrency), brake \(fleet.brake))")
        var fleetOptions = FleetOptions(stateDirectory: state, isDrill: true, logger: options.logger)
        let onLine = options.onLine
        fleetOptions.onEvent = { onLine?("  " + $0.line) }
        fleetOptions.onMemberProgress = { member, p in await sessions[member]?.progress(p) }
        fleetOptions.dwellBetweenTransitions = options.dwellSeconds
        let fleetStart = clock.now()
        let outcome: FleetOutcome
        if let crash {
            sessions[crash.member]!.record(try await crashFleet(at: crash, clock: clock))
            outcome = try await FleetRunner.resume(fleet: fleet.name, options: fleetOptions)
        } else {
            outcome = try await FleetRunner.run(fleet, fleetFile: options.fleetPath, options: fleetOptions)
        }
        say("fleet drill \(fleet.name): fleet run \(outcome.fleetRunID) \(outcome.outcome); checking every member")
        var members: [FleetDrillReport.Member] = []
        let records = Dictionary(uniqueKeysWithValues: outcome.members.map { ($0.member, $0) })
        for m in fleet.members {
            let record = records[m.name]!
            let start = record.startedAt.flatMap(Journal.date).map { $0.timeIntervalSince(sessions[m.name]!.wallStart) }
            let end = record.endedAt.flatMap(Journal.date).map { $0.timeIntervalSince(sessions[m.name]!.wallStart) }
            let error: FailoverError? =
                switch record.status {
                case .succeeded: nil
                case .refused, .skipped: .refused(record.error ?? "\(record.status)")
                default: .failed(record.error ?? "\(record.status)")
                }
            let report = try await sessions[m.name]!.finish(runError: error, runEnd: end ?? clock.now())
            try report.write(to: options.reportDirectory + "/members/" + m.name)
            let plan = atStart.members.first { $0.member == m.name }
            members.append(
                FleetDrillReport.Member(
                    member: m.name, plan: m.plan.name, actions: m.plan.transitions.map(\.summary), status: record.status.rawValue,
                    runID: record.runID, error: record.error, waitsFor: fleet.dependencies[m.name] ?? [], startedAt: start, endedAt: end,
                    seconds: start.flatMap { s in end.map { $0 - s } }, rtoSeconds: report.transitions.map(\.rtoSeconds).max(),
                    acknowledgedLost: report.workload.lost, acknowledged: report.workload.acknowledged,
                    lagAtStartBytes: plan?.lagBytes, lagAtStartSeconds: plan?.lagSeconds, gateAtStart: plan?.gate,
                    checksPassed: report.passed, failedChecks: report.checks.filter { !$0.passed }.map { "\($0.name): \($0.detail)" },
                    steps: report.transitions.flatMap(\.steps).compactMap { s in
                        s.startedAt.map { .init(number: s.number, kind: s.kind, at: $0) }
                    },
                    faults: report.faults, acknowledgedPer100ms: report.acknowledgedPer100ms))
        }
        var report = FleetDrillReport(
            fleet: fleet.name, fleetRunID: outcome.fleetRunID, outcome: outcome.outcome.rawValue, exitCode: outcome.exitCode,
            concurrency: fleet.concurrency, brake: outcome.brake, writersPerMember: options.writers, fleetStartedAt: fleetStart,
            members: members, durationSeconds: clock.now())
        report.computeTotals()
        try report.write(to: options.reportDirectory)
        return report
    }

    /// Runs the fleet in a child failoverd process killed at `point`; the drill then resumes it.
    func crashFleet(at point: FleetCrashPoint, clock: DrillClock) async throws -> DrillReport.FaultEvent {
        var args = ["fleet", "run", options.fleetPath, "--state", state, "--crash-at", point.description, "--quiet", "--drill"]
        if options.logger.logLevel <= .debug { args.append("--verbose") }
        let timeout = fleet.members.map(\.plan.policy.stepTimeoutSeconds).max() ?? 60
        let result = try await CommandRunner().run(
            options.executable, args, workingDirectory: FileManager.default.currentDirectoryPath, timeout: timeout * 20)
        let at = clock.now()
        guard result.exitCode == 128 + SIGKILL else {
            throw FailoverError.failed(
                "fleet drill: the fleet process was not killed at \(point) (exit \(result.exitCode)): \(result.outputTail)")
        }
        return .init(
            fault: "crash-engine@\(point)", at: at,
            detail: "fleet process killed at member \(point.member)'s step \(point.point); resumed by the drill")
    }
}
