import ArgumentParser
import FailoverEngine
import Foundation
import Logging

/// Options shared by run and resume.
struct ExecutionOptions: ParsableArguments {
    @OptionGroup var state: StateOption
    @Option(
        name: .customLong("crash-at"),
        help: "Fault switch: SIGKILL failoverd at step N, before, inside or after its act (N:before, N:mid, N:after).")
    var crashAt: String?
    @Flag(name: .customLong("allow-data-loss"), help: "Override the lag and replay gates for this run only; written to the audit log.")
    var allowDataLoss = false
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @Flag(help: "Print no step progress.") var quiet = false
    @Option(
        name: .customLong("assume-fenced"),
        help: "Declare SITE fenced by other means: a failover may promote although its old primary cannot be reached. Audited; repeatable.")
    var assumeFenced: [String] = []
    @Flag(
        name: .customLong("skip-lost-capture"),
        help:
            "Repair former primaries (rewind, rebuild, restore) without first capturing what they committed after the fork; `failoverd lost` will have nothing to list for them. Audited."
    )
    var skipLostCapture = false
    @Flag(help: .hidden) var drill = false
    @Option(help: .hidden) var dwell: Double = 0
    @OptionGroup var signing: AuditSigningOptions

    func runOptions(simulate: Bool, isDrill: Bool = false) throws -> RunOptions {
        var crash: CrashPoint?
        if let crashAt {
            guard let c = CrashPoint(crashAt) else {
                throw FailoverError.invalid(
                    "--crash-at \(crashAt): expected N:before, N:mid or N:after with N a step number from 1 (see `failoverd plan`)")
            }
            crash = c
        }
        bootstrapLogging(verbose: verbose)
        let printer: @Sendable (StepProgress) -> Void = { p in
            guard p.phase != .started && p.phase != .begin else { return }
            let counter = "[\(p.step.number)/\(p.total)]"
            let status = p.phase.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
            print("\(counter) \(status) \(p.step.summary)  (\(String(format: "%.2f", p.elapsed))s)")
            fflush(nil)
        }
        var options = RunOptions(
            stateDirectory: state.state, simulate: simulate, crashAt: crash, allowDataLoss: allowDataLoss, isDrill: isDrill || drill,
            onProgress: quiet ? nil : printer)
        options.dwellBetweenTransitions = dwell
        options.auditSigner = try signing.signer()
        options.assumeFenced = assumeFenced
        options.skipLostCapture = skipLostCapture
        return options
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Carry out a plan, journaling every step; a killed run is continued with `failoverd resume`.")

    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Rehearse against the simulated driver (a model kept in the state directory), not PostgreSQL.") var simulate = false
    @OptionGroup var options: ExecutionOptions

    func run() async throws {
        try await guarded {
            let opts = try options.runOptions(simulate: simulate)
            let p = try PlanLoader.load(plan)
            // Before the state directory is touched: a plan whose repository cannot be reached as it says
            // changes nothing.
            if DriverRegistry.runDriver(plan: p, simulate: simulate) != .simulated { try HostAccess.check(p) }
            // The SSH driver's multiplexed connections are held for the run, and no longer.
            let outcome = try await closingSSHConnections(opts) { try await Executor(options: opts).run(p) }
            print(
                "run \(outcome.runID) succeeded: \(outcome.stepsDone) steps done, \(outcome.stepsSatisfied) already satisfied, in \(String(format: "%.2f", outcome.seconds)) s"
            )
        }
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Continue an unfinished run: done steps never run again; an in-doubt step runs its check first.")

    @Argument(help: "The run id (default: the latest unfinished run).") var runID: String?
    @Option(
        help:
            "A coordinated plan: take over its cluster's unfinished run from etcd (after the dead coordinator's lease expired) and finish it here, whatever this state directory holds."
    )
    var plan: String?
    @OptionGroup var options: ExecutionOptions

    func run() async throws {
        try await guarded {
            let opts = try options.runOptions(simulate: false)
            let p = try plan.map { try PlanLoader.load($0) }
            if let p, DriverRegistry.runDriver(plan: p, simulate: false) != .simulated { try HostAccess.check(p) }
            let outcome = try await closingSSHConnections(opts) { try await Executor(options: opts).resume(runID: runID, plan: p) }
            print(
                "run \(outcome.runID) succeeded: \(outcome.stepsDone) steps done, \(outcome.stepsSatisfied) already satisfied, in \(String(format: "%.2f", outcome.seconds)) s"
            )
        }
    }
}

struct AbandonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abandon", abstract: "Give up an unfinished run so that a new one may start; recorded in the audit log.")

    @Argument(help: "The run id.") var runID: String
    @Option(help: "Why, for the audit log.") var reason: String = "abandoned by the operator"
    @Option(
        help:
            "A coordinated plan: abandon its cluster's run as etcd holds it, from any machine (after the dead coordinator's lease expired), whatever this state directory holds."
    )
    var plan: String?
    @OptionGroup var state: StateOption
    @OptionGroup var signing: AuditSigningOptions

    func run() async throws {
        try await guarded {
            var options = RunOptions(stateDirectory: state.state)
            options.auditSigner = try signing.signer()
            let p = try plan.map { try PlanLoader.load($0) }
            try await Executor(options: options).abandon(runID: runID, reason: reason, plan: p)
            print("run \(runID) abandoned; the recorded roles are what its finished steps left. Check them with `failoverd status`.")
        }
    }
}

struct AdoptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adopt",
        abstract: "Record a plan's declared roles as the journal's, after checking them against the servers (audited).",
        discussion:
            "The way out after an abandoned run left the journal and the servers disagreeing: declare the roles the sites really have, and failoverd checks and records them."
    )

    @Argument(help: "The plan file whose declared roles to record.") var plan: String
    @Flag(help: "Check against the simulated driver's model.") var simulate = false
    @OptionGroup var state: StateOption
    @OptionGroup var signing: AuditSigningOptions

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let p = try PlanLoader.load(plan)
            var options = RunOptions(stateDirectory: state.state, simulate: simulate)
            options.auditSigner = try signing.signer()
            let changes = try await Executor(options: options).adopt(p)
            if changes.isEmpty { print("roles already recorded as the plan declares them") }
            for c in changes { print("  \(c.site): \(c.from?.rawValue ?? "none recorded") -> \(c.to.rawValue)") }
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Each site with its recorded role, the last run with its outcome, and the run lock.")

    @OptionGroup var state: StateOption
    @Flag(help: "Print JSON: {\"sites\":[{\"name\":…,\"role\":…}],\"lastRun\":{…}}.") var json = false
    @Option(
        help:
            "A coordinated plan: show its cluster's run as etcd holds it (holder, token, step, since, lease), from any machine.")
    var plan: String?

    func run() async throws {
        try await guarded {
            if let plan {
                let p = try PlanLoader.load(plan)
                let c = try await CoordinatedStatus.read(plan: p, stateDirectory: state.state, logger: Logger(label: "failoverd.status"))
                if json { return try printJSON(c) }
                print("cluster \(c.cluster) (etcd key \(c.lockKey))")
                if let h = c.holder {
                    print(
                        "run lock held by \(h.description), token \(c.token ?? 0); lease \(c.leaseAlive ? "alive (\(c.leaseSecondsLeft ?? 0) s left)" : "expired")"
                    )
                } else {
                    print("run lock free")
                }
                if let r = c.run {
                    print(
                        "latest run: \(r) plan \"\(c.plan ?? "?")\" \(c.outcome ?? "?")\(c.step.map { ", step \($0)" } ?? "") since \(c.since ?? "?")"
                    )
                    if c.outcome == "running" || c.outcome == "failed", c.holder == nil || !c.leaseAlive {
                        print("  finish it from this machine with: failoverd resume --plan \(plan) --state \(state.state)")
                    }
                } else {
                    print("no coordinated run yet")
                }
                print("audit chain: \(c.auditEvents) events in etcd")
                return
            }
            guard FileManager.default.fileExists(atPath: (state.state as NSString).appendingPathComponent("journal.sqlite")) else {
                throw FailoverError.invalid(
                    "no journal in state directory \(state.state): nothing has run there yet (use --state or $FAILOVERD_STATE)")
            }
            var report = try StatusReport.read(stateDirectory: state.state)
            report.instances = try await StatusReport.unfinishedRunInstances(
                stateDirectory: state.state, logger: Logger(label: "failoverd.status"))
            if json { return try printJSON(report) }
            print("state directory: \(report.stateDirectory)  (fencing epoch \(report.epoch))")
            for s in report.sites { print("  " + s.name.padded(16) + s.role.padded(18) + "since " + s.updatedAt) }
            if !report.fenced.isEmpty { print("fenced instances (never started as primary): \(report.fenced.joined(separator: ", "))") }
            if let r = report.lastRun {
                print(
                    "last run: \(r.id) plan \"\(r.plan)\" \(r.outcome) (\(r.stepsDone) done, \(r.stepsSatisfied) satisfied, \(r.stepsInDoubt) in doubt of \(r.steps))\(r.drill ? " [drill]" : "")"
                )
                if let e = r.error { print("  error: \(e)") }
                if let resume = r.resume { print("  continue with: \(resume)") }
                for i in report.instances ?? [] {
                    print("  " + i.instance.padded(16) + "now \(i.seen); starts as \(i.startsAs)")
                }
            } else {
                print("no runs yet")
            }
            if let c = report.coordination { print("coordination: " + c) }
            if let l = report.lock {
                print(
                    l.alive
                        ? "run lock held by pid \(l.pid) on \(l.host) since \(l.acquiredAt ?? "?") (run \(l.runID ?? "?"))"
                        : "run lock left by pid \(l.pid) on \(l.host), which is gone: the next run or resume takes it over")
            }
        }
    }
}

/// Runs `body`, then ends the SSH driver's multiplexed connections of the run's state directory, on every path.
func closingSSHConnections<T>(_ options: RunOptions, _ body: () async throws -> T) async throws -> T {
    do {
        let value = try await body()
        await RemoteShell.closeAll(stateDirectory: options.stateDirectory)
        return value
    } catch {
        await RemoteShell.closeAll(stateDirectory: options.stateDirectory)
        throw error
    }
}
