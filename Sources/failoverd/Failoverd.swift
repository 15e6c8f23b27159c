import ArgumentParser
import FailoverEngine
import Foundation
import Logging

@main
struct Failoverd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failoverd",
        abstract: "Move PostgreSQL sites between roles — primary, archive standby, streaming standby, fenced — safely, resumably, with evidence.",
        discussion: """
            A plan (plan.json) names the sites, the shared pgBackRest repository and the transitions. Every step is \
            journaled in SQLite before and after its side effect (state directory: --state, $FAILOVERD_STATE, or \
            ./.failoverd), so a run killed at any moment is continued with `failoverd resume`.

            Exit codes:
              0  success
              1  a step failed; the run is left resumable (failoverd resume)
              2  invalid input (plan, flag or state directory); nothing was changed
              3  refused by the state machine or a safety gate
              4  the run lock is held by a live run
            """,
        subcommands: [
            ValidateCommand.self, PlanCommand.self, RunCommand.self, ResumeCommand.self, AbandonCommand.self, AdoptCommand.self, StatusCommand.self, CheckCommand.self,
            AuditCommand.self, SandboxCommand.self, DrillCommand.self,
        ]
    )
}

/// The state directory option every verb shares.
struct StateOption: ParsableArguments {
    @Option(name: .long, help: "State directory holding journal.sqlite (default: $FAILOVERD_STATE or ./.failoverd).")
    var state: String = RunOptions.defaultStateDirectory
}

/// Runs a verb's body, printing a FailoverError's message and exiting with its code.
func guarded<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as FailoverError {
        FileHandle.standardError.write(Data(("failoverd: " + error.message + "\n").utf8))
        throw ExitCode(error.code.rawValue)
    }
}

func bootstrapLogging(verbose: Bool) {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = verbose ? .debug : .warning
        return h
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

extension String {
    /// Left-aligned in a column of `width` characters.
    func padded(_ width: Int) -> String { count >= width ? self + " " : padding(toLength: width, withPad: " ", startingAt: 0) }
}
