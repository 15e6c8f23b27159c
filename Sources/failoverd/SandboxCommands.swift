import ArgumentParser
import FailoverEngine
import Foundation

struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox", abstract: "Build, inspect or remove a plan's starting topology with real PostgreSQL on this host.",
        subcommands: [SandboxUp.self, SandboxStatus.self, SandboxDown.self])
}

struct SandboxUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "initdb the primary, stanza-create, back up, restore every standby site per its declared role (harmless twice).")
    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            let p = try PlanLoader.load(plan)
            let clock = ContinuousClock.now
            try await Sandbox(plan: p, stateDirectory: state.state).up()
            let d = ContinuousClock.now - clock
            print("sandbox \(p.name) up in \(d.components.seconds) s")
            for s in try await Sandbox(plan: p, stateDirectory: state.state).status() { print("  \(s)") }
        }
    }
}

struct SandboxStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Each instance: running, pid, role seen, WAL positions.")
    @Argument(help: "The plan file.") var plan: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let p = try PlanLoader.load(plan)
            for s in try await Sandbox(plan: p, stateDirectory: state.state).status() { print(s) }
        }
    }
}

struct SandboxDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract:
            "Stop the postmasters of the data directories `up` built (pid, start time and data directory checked) and remove what `up` created."
    )
    @Argument(help: "The plan file.") var plan: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let p = try PlanLoader.load(plan)
            let removed = try await Sandbox(plan: p, stateDirectory: state.state).down()
            print("sandbox \(p.name) down; removed \(removed.count) paths")
        }
    }
}
