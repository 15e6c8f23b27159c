import ArgumentParser
import FailoverEngine
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Real hosts on this machine: a network namespace, sshd and PostgreSQL per host of the plan's ssh sites (root).",
        subcommands: [LabUp.self, LabStatus.self, LabDown.self, LabPartition.self, LabHeal.self, LabExec.self])
}

struct LabUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up", abstract: "Bridge, namespaces, sshd, login user and keys, then the plan's starting topology.",
        discussion: """
            Refused (exit 3) while the plan's lab already runs, naming what runs and the `failoverd lab down` that \
            removes it, and while another plan's lab is up; with --reuse, a lab built with the same --state is \
            completed and restarted instead (what runs is kept).
            """)
    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @Flag(help: "Complete and restart the lab this state directory built, keeping what runs, instead of refusing.") var reuse = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            let p = try PlanLoader.load(plan)
            let clock = ContinuousClock.now
            var lab = Lab(plan: p, stateDirectory: state.state)
            lab.planPath = plan
            if !reuse, let running = try await lab.running() {
                throw running.refusal(
                    "lab up", planPath: plan,
                    reuse:
                        "use it as it is: `failoverd drill \(RunningTopology.word(plan)) --reuse` drills it, `failoverd lab up \(RunningTopology.word(plan)) --state \(running.stateDirectory.map(RunningTopology.word) ?? "STATE") --reuse` completes it."
                )
            }
            do {
                try await lab.up()
            } catch {
                // Without a manifest nothing was built (a refusal, a plan the lab cannot build); with one, part may have been.
                if lab.exists {
                    FileHandle.standardError.write(
                        Data(
                            "failoverd: lab up failed; `failoverd lab down \(RunningTopology.word(plan)) --state \(RunningTopology.word(state.state))` removes what it built.\n"
                                .utf8))
                }
                throw error
            }
            print("lab \(p.name) up in \((ContinuousClock.now - clock).components.seconds) s")
            for line in try await lab.status() { print("  \(line)") }
        }
    }
}

struct LabStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Each host: namespace, link, sshd; each instance as seen over SSH.")
    @Argument(help: "The plan file.") var plan: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let p = try PlanLoader.load(plan)
            for line in try await Lab(plan: p, stateDirectory: state.state).status() { print(line) }
        }
    }
}

struct LabDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down", abstract: "Stop and remove what `lab up` built: servers, sshd, links, namespaces, bridge, generated files.")
    @Argument(help: "The plan file.") var plan: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            let p = try PlanLoader.load(plan)
            let removed = try await Lab(plan: p, stateDirectory: state.state).down()
            print("lab \(p.name) down; removed \(removed.count) paths")
        }
    }
}

struct LabPartition: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "partition", abstract: "Cut a site's link (its hosts keep running).")
    @Argument(help: "The plan file.") var plan: String
    @Argument(help: "The site to cut off.") var site: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            try await Lab(plan: try PlanLoader.load(plan), stateDirectory: state.state).partition(site: site)
            print("site \(site) cut off")
        }
    }
}

struct LabHeal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "heal", abstract: "Restore a site's link.")
    @Argument(help: "The plan file.") var plan: String
    @Argument(help: "The site to reconnect.") var site: String
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: false)
            try await Lab(plan: try PlanLoader.load(plan), stateDirectory: state.state).heal(site: site)
            print("site \(site) reconnected")
        }
    }
}

struct LabExec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec", abstract: "Run a command in the network namespace of a lab host, as a machine of its data center would.",
        discussion: """
            `failoverd lab exec PLAN HOST [--state DIR] -- COMMAND [ARGS…]` runs COMMAND (as root, with this \
            machine's files) in the network namespace of the lab host HOST (an address of the plan's instances): it \
            reaches what that host reaches, and is cut off with it. A second coordinator of a coordinated plan runs \
            there: `failoverd lab exec PLAN 198.18.12.10 -- failoverd resume --plan PLAN --state /tmp/coordinator-b`. \
            The exit status is COMMAND's. Refused (exit 2) for a HOST that is not a host of the plan's lab, and \
            (exit 3) when the lab is not up with this --state.
            """)
    @Argument(help: "The plan file.") var plan: String
    @Argument(help: "The lab host (an instance's host address in the plan).") var host: String
    @OptionGroup var state: StateOption
    @Argument(parsing: .postTerminator, help: "The command to run, after --.") var command: [String] = []

    func run() async throws {
        let argv = try await guarded {
            bootstrapLogging(verbose: false)
            return try await Lab(plan: try PlanLoader.load(plan), stateDirectory: state.state).execArguments(host: host, command: command)
        }
        // Nothing was printed: the command's output is its own.
        let cArgs = argv.map { strdup($0) } + [nil]
        execv(argv[0], cArgs)
        throw FailoverError.failed("lab exec: could not run \(argv[0]): \(String(cString: strerror(errno)))")
    }
}
