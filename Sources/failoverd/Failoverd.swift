import ArgumentParser
import FailoverEngine
import Foundation
import Logging

@main
struct Failoverd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failoverd",
        abstract:
            "Move PostgreSQL sites between roles — primary, archive standby, streaming standby, fenced — safely, resumably, with evidence.",
        discussion: """
            A plan (plan.json) names the sites, the shared pgBackRest repository and the transitions. Every step is \
            journaled in SQLite before and after its side effect (state directory: --state, $FAILOVERD_STATE, or one per \
            machine: /var/lib/failoverd as root, $XDG_STATE_HOME/failoverd otherwise; 0700, journal 0600), so a run killed \
            at any moment is continued with `failoverd resume`.

            Exit codes:
              0  success
              1  a step failed; the run is left resumable (failoverd resume)
              2  invalid input (plan, usage: unknown flag, missing argument, malformed value, or state
                 directory); nothing was changed
              3  refused by the state machine or a safety gate
              4  the run lock is held by a live run
            """,
        subcommands: [
            ValidateCommand.self, PlanCommand.self, RunCommand.self, ResumeCommand.self, AbandonCommand.self, AdoptCommand.self,
            StatusCommand.self, CheckCommand.self, LostCommand.self,
            AuditCommand.self, SandboxCommand.self, DrillCommand.self, LabCommand.self, FleetCommand.self,
        ]
    )
}

extension Failoverd {
    /// Parses the command line, runs the verb, and maps every error to its exit code in this one place.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var verb = command as? AsyncParsableCommand {
                try await verb.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(forError: error)
            if code == 0 { exit(withError: error) }  // --help, --version: ArgumentParser prints them
            if let failure = error as? FailoverError {
                FileHandle.standardError.write(Data(("failoverd: " + failure.message + "\n").utf8))
            } else if !(error is ExitCode) {
                let message = fullMessage(for: error)
                if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            }
            Foundation.exit(code)
        }
    }

    /// The exit code of `error`, as `failoverd --help` documents them: a FailoverError's own code; a usage
    /// error (unknown flag or verb, missing argument, malformed value) 2, not ArgumentParser's 64;
    /// `--help` 0; an ExitCode a verb chose as it is; anything else 1.
    static func exitCode(forError error: Error) -> Int32 {
        if let failure = error as? FailoverError { return failure.code.rawValue }
        if let code = error as? ExitCode { return code.rawValue }
        let parserCode = exitCode(for: error).rawValue
        switch parserCode {
        case ExitCode.success.rawValue: return 0
        case ExitCode.validationFailure.rawValue: return FailoverError.Code.invalidInput.rawValue
        default: return parserCode == 0 ? 0 : 1
        }
    }
}

/// The state directory option every verb shares.
struct StateOption: ParsableArguments {
    @Option(
        name: .long,
        help:
            "State directory holding journal.sqlite (default: $FAILOVERD_STATE, else /var/lib/failoverd as root, $XDG_STATE_HOME/failoverd otherwise)."
    )
    var state: String = RunOptions.defaultStateDirectory
}

/// Runs a verb's body. Its errors reach ``Failoverd/main()``, which prints them and maps them to exit codes.
func guarded<T>(_ body: () async throws -> T) async throws -> T {
    try await body()
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
