import ArgumentParser
import FailoverEngine
import Foundation

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Rehearse a plan on a local sandbox of real PostgreSQL under write load and faults; report RPO, RTO and lag.",
        discussion: """
            Builds the plan's starting topology (sandbox up), starts N writers and a reader per standby, runs the plan \
            through the same executor (journal and audit log included, the run marked as a drill), injects the faults, \
            checks, tears the sandbox down unless --keep, and writes report.json, report.md and timeline.svg. Exit 0 \
            when every check holds, 1 when one fails (the report names it), 2 on invalid input, 3 when the plan's \
            sandbox or lab already runs (or, with --reuse, when none does).

            Faults (--faults, comma-separated):
              kill-primary@STEP          SIGKILL the primary when step STEP starts
              crash-engine@STEP:before   kill the engine before (or :after) a step's act; resume
              cut-receiver@SITE          cut the site's WAL receivers outside failoverd
              archive-stall@SECONDS      archive_command fails for that long
              partition@STEP:SITE        cut SITE's links when step STEP starts (lab: ssh sites)
              heal@STEP:SITE             restore SITE's links when step STEP starts
              isolate-control@STEP       cut failoverd's host off every site when step STEP starts
              crash-coordinator@STEP[:before|after]
                                         coordinated lab plan: kill the coordinator around a step's act;
                                         a second one in the final primary's data center takes over
              isolate-coordinator@STEP   coordinated lab plan: cut the coordinator off etcd and every site
                                         as STEP starts; the second one takes over; the first must stop

            A plan whose sites are all ssh sites is drilled in the lab (failoverd lab up), built and removed \
            by the drill.

            A drill never touches a sandbox or lab it did not build: when the plan's sandbox or lab already runs \
            on this host (sandbox up, lab up, a drill with --keep, whatever its state directory), the drill \
            refuses at once (exit 3), naming what runs and the `failoverd sandbox down` / `lab down` command that \
            removes it. With --reuse it drills that one as it is instead, and leaves it running.
            """)

    @Argument(help: "The plan file.") var plan: String
    @Option(help: "Directory for report.json, report.md and timeline.svg (default: reports/<plan name>).") var report: String?
    @Option(help: "Faults to inject, comma-separated (see above).") var faults: String = ""
    @Option(help: "Concurrent writers.") var writers: Int = 4
    @Flag(help: "Leave the sandbox running afterwards.") var keep = false
    @Flag(
        help:
            "Drill the plan's sandbox or lab that already runs (sandbox up, lab up) instead of building one, and leave it running. Refused when none runs."
    )
    var reuse = false
    @Flag(name: .customLong("allow-data-loss"), help: "Run the plan with --allow-data-loss.") var allowDataLoss = false
    @Option(name: .customLong("assume-fenced"), help: "Run the plan with --assume-fenced SITE (repeatable).") var assumeFenced: [String] =
        []
    @Option(help: "Seconds the workload runs between transitions, so each topology's lag is measured.") var dwell: Double = 2
    @Option(help: "Seconds the workload runs before the plan starts (the baseline).") var warmup: Double = 1
    @Option(
        help:
            "State directory for the drill's run and sandbox manifest (default: REPORT/state). Emptied first, so a non-empty directory a drill did not create is refused."
    )
    var state: String?
    @Flag(help: "Log at debug level to standard error.") var verbose = false

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            guard writers >= 1 && writers <= 64 else { throw FailoverError.invalid("--writers \(writers): give 1 to 64 writers") }
            let p = try PlanLoader.load(plan)
            let parsed = try Fault.parse(faults, plan: p)
            let reportDir = report ?? "reports/\(p.name)"
            let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
            let options = DrillOptions(
                reportDirectory: reportDir, faults: parsed, writers: writers, keep: keep, allowDataLoss: allowDataLoss, dwellSeconds: dwell,
                stateDirectory: state, executable: FileManager.default.isExecutableFile(atPath: exe) ? exe : "failoverd", planPath: plan,
                onLine: { line in
                    print(line)
                    fflush(nil)
                })
            var drillOptions = options
            drillOptions.warmupSeconds = warmup
            drillOptions.assumeFenced = assumeFenced
            drillOptions.reuse = reuse
            let result = try await Drill(plan: p, options: drillOptions).run()
            print("")
            for c in result.checks { print("  \(c.passed ? "pass" : "FAIL")  \(c.name): \(c.detail)") }
            for t in result.transitions {
                print("  \(t.summary): RTO \(String(format: "%.3f", t.rtoSeconds)) s, acknowledged commits lost \(t.acknowledgedLost)")
            }
            for l in result.lag {
                print(
                    "  lag \(l.instance) (\(l.mode)): median \(String(format: "%.3f", l.medianSeconds)) s, p95 \(String(format: "%.3f", l.p95Seconds)) s over \(l.samples) commits"
                )
            }
            for r in result.restores {
                print("  \(r.summary): \(String(format: "%.3f", r.seconds)) s")
            }
            print("drill \(result.passed ? "PASSED" : "FAILED"); report: \(reportDir)/report.md (report.json, timeline.svg)")
            if !result.passed { throw ExitCode(1) }
        }
    }
}
