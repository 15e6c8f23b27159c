import ArgumentParser
import FailoverEngine
import Foundation
import Logging

struct LostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lost",
        abstract: "List what a former primary committed after the fork that the new primary never got.",
        discussion: """
            For each former primary a run captured (capture-divergence, before its rewind, rebuild or restore, or \
            `--capture`): every transaction committed after the fork with its subtransactions, commit time and \
            commit LSN, the tables it changed (DDL marked), prepared transactions left in doubt, and totals. \
            Rolled-back transactions are not lost and not listed. With policy.captureLostRows, --rows prints the \
            row changes. RUN defaults to the latest run with a capture (or that fenced a former primary).
            """)

    @Argument(help: "The run (default: the latest run with a capture).") var run: String?
    @Flag(help: "Print JSON: {\"instances\":[{\"transactions\":[…],\"totals\":{…}}]}.") var json = false
    @Flag(help: "Print the row changes of each lost transaction (policy.captureLostRows).") var rows = false
    @Flag(help: "Capture now the former primaries RUN fenced that no capture holds yet (under the run lock; audited).")
    var capture = false
    @Flag(help: "With --capture: the run was a rehearsal (--simulate).") var simulate = false
    @Option(help: "Print at most this many transactions per instance (the JSON has them all).") var lines: Int?
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            guard FileManager.default.fileExists(atPath: (state.state as NSString).appendingPathComponent("journal.sqlite")) else {
                throw FailoverError.invalid(
                    "no journal in state directory \(state.state): nothing has run there yet (use --state or $FAILOVERD_STATE)")
            }
            if capture {
                guard let run else { throw FailoverError.invalid("--capture needs the run whose fenced former primaries to capture") }
                let captured = try await LostListing.captureNow(
                    stateDirectory: state.state, run: run, simulate: simulate, logger: Logger(label: "failoverd.lost"))
                if !json {
                    if captured.isEmpty { print("nothing to capture: every former primary run \(run) fenced is captured already") }
                    for m in captured {
                        print("captured \(m.instance): \(m.walBytes) bytes of WAL, \(m.transactions) transactions committed after the fork")
                    }
                }
            }
            let report = try await LostListing.report(stateDirectory: state.state, run: run, rows: rows)
            if json { return try printJSON(report) }
            print(report.text(rows: rows, lines: lines))
        }
    }
}
