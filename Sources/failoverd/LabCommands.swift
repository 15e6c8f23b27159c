import ArgumentParser
import FailoverEngine
import Foundation

struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Real hosts on this machine: a network namespace, sshd and PostgreSQL per host of the plan's ssh sites (root).",
        subcommands: [LabUp.self, LabStatus.self, LabDown.self, LabPartition.self, LabHeal.self])
}

struct LabUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up", abstract: "Bridge, namespaces, sshd, login user and keys, then the plan's starting topology (harmless twice).")
    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Log at debug level to standard error.") var verbose = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            bootstrapLogging(verbose: verbose)
            let p = try PlanLoader.load(plan)
            let clock = ContinuousClock.now
            let lab = Lab(plan: p, stateDirectory: state.state)
            do {
                try await lab.up()
            } catch {
                FileHandle.standardError.write(Data("failoverd: lab up failed; `failoverd lab down` removes what it built.\n".utf8))
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
