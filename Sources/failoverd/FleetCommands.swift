import ArgumentParser
import FailoverEngine
import Foundation
import Logging

struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Move many clusters in one fleet run: member plans under a concurrency bound, an order and a brake, with one record.",
        discussion: """
            A fleet file (fleet.json, docs/fleet.md) names member plans, each an ordinary plan of one cluster. Each member \
            runs as its own ordinary run, in its own state directory STATE/fleets/<fleet>/members/<member> (so \
            `failoverd status|resume|abandon --state` that directory works on it alone); the fleet record \
            STATE/fleets/<fleet>/fleet.sqlite ties the runs together.

            Exit codes of fleet run and fleet resume: 0 every member succeeded, 1 a member failed (or was abandoned), \
            2 invalid fleet, 3 a member was refused (none failed), 4 the fleet is already running.
            """,
        subcommands: [
            FleetValidateCommand.self, FleetPlanCommand.self, FleetRunCommand.self, FleetResumeCommand.self, FleetStatusCommand.self,
            FleetAbandonCommand.self, FleetDrillCommand.self,
        ])
}

struct FleetValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a fleet file and every member plan; report every problem at once with its member and JSON path (exit 0 or 2).")

    @Argument(help: "The fleet file.") var fleet: String
    @Flag(help: "Print the problems as JSON.") var json = false

    func run() async throws {
        let result = FleetValidator.validate(file: fleet)
        if json {
            struct Out: Encodable { var valid: Bool; var summary: String; var problems: [FleetProblem] }
            try printJSON(Out(valid: result.isValid, summary: result.summary, problems: result.problems))
        } else {
            if !result.problems.isEmpty { print(FleetLoader.describe(result.problems, file: fleet)) }
            print(result.summary)
        }
        if !result.isValid { throw ExitCode(2) }
    }
}

/// Prints a fleet's progress lines, and the summary at its end.
enum FleetPrinter {
    static func events(quiet: Bool) -> (@Sendable (FleetEvent) -> Void)? {
        if quiet { return nil }
        return { (event: FleetEvent) in
            print(event.line)
            fflush(nil)
        }
    }

    /// One line per member, with why it did not succeed, and what to do next.
    static func summary(_ outcome: FleetOutcome, state: String) {
        var counts: [MemberState: Int] = [:]
        for m in outcome.members { counts[m.status, default: 0] += 1 }
        let tally = MemberState.allCases.compactMap { s in counts[s].map { "\($0) \(s == .succeeded ? "done" : s.rawValue)" } }
        print("")
        print(
            "fleet \(outcome.fleet) run \(outcome.fleetRunID) \(outcome.outcome): \(tally.joined(separator: ", ")) of \(outcome.members.count) in \(String(format: "%.2f", outcome.seconds)) s"
        )
        let width = max(8, outcome.members.map(\.member.count).max() ?? 8)
        for m in outcome.members {
            let status = (m.status == .succeeded ? "done" : m.status.rawValue).padded(10)
            let run = m.runID.map { "run \($0)" } ?? "no run"
            print("  " + m.member.padded(width + 1) + status + run.padded(30) + (m.error ?? ""))
        }
        if let brake = outcome.brake { print("brake: \(brake)") }
        if outcome.outcome.isUnfinished {
            print(
                "continue with: failoverd fleet resume \(outcome.fleet) --state \(state)   (or: failoverd fleet abandon \(outcome.fleet) --state \(state))"
            )
        }
        if outcome.members.contains(where: { $0.status != .succeeded }) {
            print("a member alone: failoverd status --state \(FleetPaths(stateDirectory: state, fleet: outcome.fleet).member("<member>"))")
        }
    }
}

struct FleetRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every member of a fleet under its concurrency bound, order and brake; one line per member as it changes.")

    @Argument(help: "The fleet file.") var fleet: String
    @Flag(help: "Rehearse every member against the simulated driver (a model in each member's state directory).") var simulate = false
    @Option(
        name: .customLong("crash-at"),
        help: "Fault switch: SIGKILL failoverd at a member's step, before or after its act (MEMBER:N:before, MEMBER:N:after).")
    var crashAt: String?
    @Flag(help: "Print no progress lines, only the summary.") var quiet = false
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @Flag(help: .hidden) var drill = false
    @OptionGroup var state: StateOption
    @OptionGroup var signing: AuditSigningOptions

    func run() async throws {
        let outcome: FleetOutcome = try await guarded {
            bootstrapLogging(verbose: verbose)
            let f = try FleetLoader.load(fleet)
            var crash: FleetCrashPoint?
            if let crashAt {
                guard let c = FleetCrashPoint(crashAt) else {
                    throw FailoverError.invalid(
                        "--crash-at \(crashAt): expected MEMBER:N:before or MEMBER:N:after (see `failoverd fleet plan`)")
                }
                crash = c
            }
            if !simulate {
                for m in f.members where DriverRegistry.runDriver(plan: m.plan, simulate: false) != .simulated {
                    do { try HostAccess.check(m.plan) } catch let e as FailoverError {
                        throw FailoverError(e.code, "member \(m.name): \(e.message)")
                    }
                }
            }
            var options = FleetOptions(
                stateDirectory: state.state, simulate: simulate, crashAt: crash, isDrill: drill, onEvent: FleetPrinter.events(quiet: quiet))
            options.auditSigner = try signing.signer()
            if !quiet {
                print("fleet \(f.name): \(f.members.count) members, concurrency \(f.concurrency), brake \(f.brake)")
            }
            return try await FleetRunner.run(f, fleetFile: fleet, options: options)
        }
        FleetPrinter.summary(outcome, state: state.state)
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }
}

struct FleetResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract:
            "Continue a fleet run: members left mid-run resume through their journals, failed ones resume, the others start.")

    @Argument(help: "The fleet's name or file (default: the only fleet of the state directory with an unfinished run).") var fleet: String?
    @Flag(help: "Print no progress lines, only the summary.") var quiet = false
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @OptionGroup var state: StateOption
    @OptionGroup var signing: AuditSigningOptions

    func run() async throws {
        let outcome: FleetOutcome = try await guarded {
            bootstrapLogging(verbose: verbose)
            let name = try FleetStatus.resolve(fleet, stateDirectory: state.state, unfinishedOnly: true)
            var options = FleetOptions(stateDirectory: state.state, onEvent: FleetPrinter.events(quiet: quiet))
            options.auditSigner = try signing.signer()
            if !quiet { print("fleet \(name): resuming") }
            return try await FleetRunner.resume(fleet: name, options: options)
        }
        FleetPrinter.summary(outcome, state: state.state)
        if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
    }
}

struct FleetAbandonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abandon",
        abstract: "Give up a fleet run and every unfinished member run in it, so that a new fleet run may start (audited per member).")

    @Argument(help: "The fleet's name or file (default: the only fleet of the state directory with an unfinished run).") var fleet: String?
    @Option(help: "Why, for the audit logs.") var reason: String = "abandoned by the operator"
    @OptionGroup var state: StateOption
    @OptionGroup var signing: AuditSigningOptions

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let name = try FleetStatus.resolve(fleet, stateDirectory: state.state, unfinishedOnly: true)
            var options = FleetOptions(stateDirectory: state.state)
            options.auditSigner = try signing.signer()
            let runs = try await FleetRunner.abandon(fleet: name, reason: reason, options: options)
            print("fleet \(name) abandoned; member runs abandoned: \(runs.isEmpty ? "none" : runs.joined(separator: ", "))")
            print(
                "the recorded roles of each member are what its finished steps left: failoverd fleet status \(name) --state \(state.state)")
        }
    }
}

struct FleetStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "One screen: the fleet run, its lock, and every member with its step, run and error.")

    @Argument(help: "The fleet's name or file (default: the only fleet of the state directory).") var fleet: String?
    @Flag(help: "Print JSON (keys documented in docs/fleet.md).") var json = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            let name = try FleetStatus.resolve(fleet, stateDirectory: state.state)
            let status = try FleetStatus.read(fleet: name, stateDirectory: state.state)
            if json { return try printJSON(status) }
            guard let run = status.fleetRun else { return print("fleet \(name): no fleet run yet") }
            var head = "fleet \(name): run \(run.id) \(run.outcome)"
            if run.drill { head += " [drill]" }
            if run.simulate { head += " [simulated]" }
            print(
                head + ", concurrency \(run.concurrency), brake \(run.brake), started \(run.startedAt)"
                    + (run.endedAt.map { ", ended \($0)" } ?? ""))
            if let l = status.lock {
                print(
                    l.alive
                        ? "fleet lock held by pid \(l.pid) on \(l.host) since \(l.acquiredAt ?? "?")"
                        : "fleet lock left by pid \(l.pid) on \(l.host), which is gone: the next fleet resume takes it over")
            }
            let width = max(8, status.members.map(\.member.count).max() ?? 8)
            print(
                "  " + "member".padded(width + 1) + "status".padded(12) + "step".padded(8) + "run".padded(25) + "seconds".padded(9) + "note"
            )
            for m in status.members {
                let shown = m.interrupted ? "interrupted" : m.status == "succeeded" ? "done" : m.status
                let step = m.step.map { "\($0)/\(m.steps ?? 0)" } ?? "—"
                let seconds = m.seconds.map { String(format: "%.1f", $0) } ?? ""
                var note = m.error ?? (m.status == "running" || m.interrupted ? m.stepSummary ?? "" : "")
                if note.isEmpty && m.status == "waiting" && !m.waitsFor.isEmpty { note = "waits for \(m.waitsFor.joined(separator: ", "))" }
                print(
                    "  " + m.member.padded(width + 1) + shown.padded(12) + step.padded(8) + (m.runID ?? "—").padded(25) + seconds.padded(9)
                        + note)
            }
            print(
                status.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key == "succeeded" ? "done" : $0.key)" }.joined(
                    separator: ", ") + " of \(status.members.count)")
            if let resume = status.resume { print("continue with: \(resume)") }
            print("a member alone: failoverd status --state \(FleetPaths(stateDirectory: state.state, fleet: name).member("<member>"))")
        }
    }
}

struct FleetPlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Every member's steps, numbered per member, and whether its first gate would pass now, with its lag (no side effect).",
        discussion: """
            The gates are `failoverd check`'s, run on each member's servers with the member's journal when it has one. \
            Exit 0 when every member's first gate would pass, 3 when a plan cannot be expanded or a gate or a role \
            disagrees, 1 when an instance cannot be probed (the worst member's code); with --offline, 0 or 3 from \
            the plans alone.
            """)

    @Argument(help: "The fleet file.") var fleet: String
    @Flag(help: "Print the report as JSON.") var json = false
    @Flag(help: "Expand the plans only; probe no server.") var offline = false
    @Flag(help: "Probe the simulated servers of a --simulate rehearsal in the members' state directories.") var simulate = false
    @OptionGroup var state: StateOption

    func run() async throws {
        let code: Int32 = try await guarded {
            let f = try FleetLoader.load(fleet)
            var logger = Logger(label: "failoverd.fleet.plan")
            logger.logLevel = .warning
            let report = await FleetPlanReport.make(f, stateDirectory: state.state, simulate: simulate, probe: !offline, logger: logger)
            if json {
                try printJSON(report)
                return report.exitCode
            }
            print("fleet \(f.name): \(f.members.count) members, concurrency \(f.concurrency), brake \(f.brake)")
            for m in report.members {
                print("")
                print(
                    "member \(m.member) (plan \"\(m.plan)\", \(m.planFile))"
                        + (m.waitsFor.isEmpty
                            ? "" : ", starts after \(m.waitsFor.joined(separator: ", ")) \(m.waitsFor.count == 1 ? "is" : "are") done"))
                if let refusal = m.refusal { print("  refused by the planner: \(refusal)") }
                var transition = 0
                for s in m.steps {
                    if s.transition != transition {
                        transition = s.transition
                        print("  transition \(transition): \(m.transitions[transition - 1])")
                    }
                    let target = s.instance ?? "site \(s.site)"
                    print(
                        "    " + String(s.number).padded(4) + s.kind.rawValue.padded(25) + target.padded(11)
                            + (s.destructive ? "destructive" : "").padded(12) + s.summary)
                }
                print("  \(m.steps.count) steps, \(m.steps.filter(\.destructive).count) destructive")
                if let gate = m.gate {
                    var lag = ""
                    if let target = m.target {
                        lag =
                            "; \(target) lag " + (m.lagBytes.map { "\($0) bytes" } ?? "unknown")
                            + (m.lagSeconds.map { String(format: ", %.3f s", $0) } ?? "")
                    }
                    print("  first gate now: \(gate)\(lag)\n    \(m.gateMessage ?? "")")
                }
                for p in m.problems { print("  problem: \(p)") }
            }
            if report.probed {
                let passing = report.members.filter { $0.gate == "proceed" || $0.gate == "no-gate" }.count
                print("\n\(passing) of \(report.members.count) members would pass their first gate now")
            }
            return report.exitCode
        }
        if code != 0 { throw ExitCode(code) }
    }
}

struct FleetDrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse a fleet on local sandboxes under write load and faults; one report with a lane per member.",
        discussion: """
            Builds every member's sandbox, starts writers against each, runs the fleet through the same scheduler as \
            `fleet run` (journals, fleet record and audit logs included, marked as a drill), checks every member as \
            `failoverd drill` does, tears the sandboxes down unless --keep, and writes report.md, report.json and \
            timeline.svg (one lane per member), and each member's own drill report in members/<member>/. Exit 0 when \
            every member's checks hold, 1 when one fails, 2 on invalid input.

            Faults (--faults, comma-separated), each naming its member:
              kill-primary@MEMBER:STEP          SIGKILL the member's primary when its step STEP starts
              crash-engine@MEMBER:STEP:before   kill the fleet process before (or :after) the member's step; resume
              cut-receiver@MEMBER:SITE          cut the site's WAL receivers outside failoverd
              archive-stall@MEMBER:SECONDS      the member's archive_command fails for that long
            """)

    @Argument(help: "The fleet file.") var fleet: String
    @Option(help: "Directory for the reports (default: reports/<fleet name>).") var report: String?
    @Option(help: "Faults to inject, comma-separated (see above).") var faults: String = ""
    @Option(help: "Concurrent writers per member.") var writers: Int = 1
    @Flag(help: "Leave the sandboxes running afterwards.") var keep = false
    @Option(help: "Seconds each member's workload runs between its transitions.") var dwell: Double = 1
    @Option(help: "Seconds the workloads run before the fleet starts.") var warmup: Double = 1
    @Option(
        help:
            "State directory for the drill (default: REPORT/state). Emptied first, so a non-empty directory a drill did not create is refused."
    )
    var state: String?
    @Flag(help: "Log at debug level to standard error.") var verbose = false

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            guard writers >= 1 && writers <= 16 else {
                throw FailoverError.invalid("--writers \(writers): give 1 to 16 writers per member")
            }
            let f = try FleetLoader.load(fleet)
            _ = try FleetDrill.parseFaults(faults, fleet: f)
            let reportDir = report ?? "reports/\(f.name)"
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
            let options = FleetDrillOptions(
                reportDirectory: reportDir, faults: faults, writers: writers, keep: keep, dwellSeconds: dwell, warmupSeconds: warmup,
                stateDirectory: state, executable: FileManager.default.isExecutableFile(atPath: exe) ? exe : "failoverd", fleetPath: fleet,
                onLine: { line in
                    print(line)
                    fflush(nil)
                })
            let result = try await FleetDrill(fleet: f, options: options).run()
            print("")
            for m in result.members {
                var line = "  \(m.checksPassed ? "pass" : "FAIL")  " + m.member.padded(12) + m.status.padded(10)
                line += "RTO \(m.rtoSeconds.map { String(format: "%.3f", $0) } ?? "—") s, acknowledged commits lost \(m.acknowledgedLost)"
                line += m.lagAtStartBytes.map { ", lag at start \($0) bytes" } ?? ""
                print(line)
                for c in m.failedChecks { print("        failed: \(c)") }
            }
            print(
                String(
                    format: "fleet total %.3f s; slowest member %@; critical path %@ (%.3f s)", result.totalSeconds,
                    (result.slowestMember ?? "—") as NSString, result.criticalPath.joined(separator: " -> ") as NSString,
                    result.criticalPathSeconds))
            print("fleet drill \(result.passed ? "PASSED" : "FAILED"); report: \(reportDir)/report.md (report.json, timeline.svg)")
            if !result.passed { throw ExitCode(1) }
        }
    }
}
