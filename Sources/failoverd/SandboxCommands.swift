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
        abstract: "initdb the primary, stanza-create, back up, restore every standby site per its declared role.",
        discussion: """
            Refused (exit 3) while the plan's sandbox already runs, naming what runs and the `failoverd sandbox down` \
            that removes it; with --reuse, a sandbox built with the same --state is completed and restarted instead \
            (what runs is kept).
            """)
    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @Flag(help: "Complete and restart the sandbox this state directory built, keeping what runs, instead of refusing.") var reuse = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            let p = try PlanLoader.load(plan)
            let clock = ContinuousClock.now
            var sandbox = Sandbox(plan: p, stateDirectory: state.state)
            sandbox.planPath = plan
            if !reuse, let running = sandbox.running() {
                throw running.refusal(
                    "sandbox up", planPath: plan,
                    reuse:
                        "use it as it is: `failoverd drill \(RunningTopology.word(plan)) --reuse` drills it, `failoverd sandbox up \(RunningTopology.word(plan)) --state \(running.stateDirectory.map(RunningTopology.word) ?? "STATE") --reuse` completes it."
                )
            }
            try await sandbox.up()
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
