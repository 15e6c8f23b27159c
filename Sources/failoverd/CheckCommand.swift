import ArgumentParser
import FailoverEngine
import Foundation
import Logging

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Probe every instance of a plan live and say whether each transition's gates would pass now (no side effect).",
        discussion: """
            For every instance: the role seen, timeline, WAL positions, lag to its upstream in bytes and seconds, \
            WAL receiver, archiver, and who owns its standby settings. For every site: declared, seen and \
            journaled role. For every transition: the verdict its gates would give now, from the same gate code \
            a run executes. Exit 0 when everything agrees and the first transition's gates would pass, 1 when \
            an instance cannot be probed, 3 when a role disagrees or a gate would refuse.
            """)

    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Print the report as JSON (keys documented in docs/check.md).") var json = false
    @Option(help: "Probe again every SECONDS, redrawing in place, until interrupted (or --rounds).") var watch: Double?
    @Option(help: "With --watch: stop after this many rounds.") var rounds: Int?
    @Option(help: "Write the figures to FILE in the Prometheus text format each round, atomically (node_exporter textfile collector).")
    var prometheus: String?
    @Flag(help: "Probe the simulated servers of a --simulate rehearsal in the state directory.") var simulate = false
    @OptionGroup var state: StateOption

    func validate() throws {
        if let watch, !(watch >= 0.2 && watch <= 86_400) {
            throw ValidationError("--watch must be between 0.2 and 86400 seconds (got \(watch)).")
        }
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1 (got \(rounds)).") }
        if rounds != nil && watch == nil { throw ValidationError("--rounds needs --watch.") }
    }

    func run() async throws {
        let code: Int32 = try await guarded {
            let p = try PlanLoader.load(plan)
            let journalPath = (state.state as NSString).appendingPathComponent("journal.sqlite")
            let journal = FileManager.default.fileExists(atPath: journalPath) ? try Journal(stateDirectory: state.state) : nil
            if simulate && journal == nil {
                throw FailoverError.invalid(
                    "--simulate needs the state directory of a rehearsal (\(state.state) has no journal); run `failoverd run PLAN --simulate` first"
                )
            }
            var logger = Logger(label: "failoverd.check")
            logger.logLevel = .warning
            // The drivers a run of the plan gets: managed sites (Patroni) are seen through their own driver, as
            // the gates see them. No SSH connection is opened ahead of the probes.
            let kind = DriverRegistry.runDriver(plan: p, simulate: simulate)
            let driver = try DriverRegistry.instanceDriver(
                plan: p, runDriver: kind, stateDirectory: state.state, tools: .system, logger: logger)
            let sites = try DriverRegistry.siteDrivers(plan: p, runDriver: kind, stateDirectory: state.state, logger: logger)
            let check = TopologyCheck(plan: p, driver: driver, sites: sites, journal: journal, logger: logger)
            var round = 0
            while true {
                round += 1
                let started = ContinuousClock.now
                let report = try await check.run()
                if let prometheus { try CheckOutput.writePrometheus(report, to: prometheus) }
                if json {
                    try printJSON(report)
                } else {
                    if watch != nil { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                    print(CheckOutput.table(report))
                }
                guard let watch, rounds.map({ round < $0 }) ?? true else { return report.exitCode }
                // Pacing of --watch, like watch(1): not a wait for a condition.
                let next = started + .milliseconds(Int64(watch * 1000))
                try await Task.sleep(until: next, clock: .continuous)
            }
        }
        if code != 0 { throw ExitCode(code) }
    }
}
