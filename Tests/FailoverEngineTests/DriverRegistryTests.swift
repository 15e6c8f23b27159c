import Foundation
import Logging
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// One registry per driver kind (#24.2): the plan's words, the level a kind is driven at, and what
/// failoverd's host needs, proved on a host without PostgreSQL or pgBackRest.
@Suite struct DriverRegistryTests {
    @Test("each driver kind keeps its plan word, and the registry says the level it is driven at")
    func kinds() throws {
        #expect(DriverKind.allCases.map(\.rawValue) == ["local", "patroni", "simulated", "ssh"])
        #expect(
            try JSONDecoder().decode([DriverKind].self, from: Data(#"["local","patroni","simulated","ssh"]"#.utf8)) == DriverKind.allCases)
        #expect(DriverRegistry.traits(of: .patroni).expansion == .siteSteps)
        for kind in [DriverKind.local, .ssh, .simulated] { #expect(DriverRegistry.traits(of: kind).expansion == .instanceSteps) }
        let plan = try PlanLoader.load(CLI.plan("patroni-switchover"))
        #expect(String(decoding: plan.canonicalJSON(), as: UTF8.self).contains(#""driver":"patroni""#))
        // An unknown driver is still refused by name, at its path.
        let unknown = PlanValidator.validate(
            Data(
                try String(contentsOfFile: CLI.plan("switchover"), encoding: .utf8)
                    .replacingOccurrences(of: #""driver": "local""#, with: #""driver": "docker""#).utf8))
        #expect(unknown.problems.contains { $0.message.contains(#"unknown driver "docker""#) })
    }

    func needs(_ plan: Plan, simulate: Bool = false) -> [HostTool] {
        DriverRegistry.hostNeeds(plan: plan, runDriver: DriverRegistry.runDriver(plan: plan, simulate: simulate)).map(\.tool)
    }

    /// patroni-failback-with-rewind with its failback by rebuild: Patroni's rebuild restores the members here.
    func patroniRebuild() throws -> Plan {
        var plan = try PlanLoader.load(CLI.plan("patroni-failback-with-rewind"))
        plan.transitions[1].method = .rebuild
        return plan
    }

    @Test("what each kind of plan needs on failoverd's host: a step adds its own needs, a rehearsal needs nothing")
    func hostNeeds() throws {
        #expect(needs(try PlanLoader.load(CLI.plan("switchover"))) == [.postgresBinaries, .pgBackRest])
        #expect(needs(try PlanLoader.load(CLI.plan("dc-switchover"))) == [.openSSH])
        #expect(needs(try PlanLoader.load(CLI.plan("patroni-switchover"))) == [.curl])
        // Its failback captures the former leader first (#22): pg_waldump and pgBackRest here.
        #expect(needs(try PlanLoader.load(CLI.plan("patroni-failback-with-rewind"))) == [.curl, .postgresBinaries, .pgBackRest])
        #expect(needs(try PlanLoader.load(CLI.plan("switchover")), simulate: true).isEmpty)
        #expect(needs(try PlanLoader.load(CLI.plan("patroni-failback-with-rewind")), simulate: true).isEmpty)
        let rebuild = DriverRegistry.hostNeeds(plan: try patroniRebuild(), runDriver: .local)
        #expect(rebuild.map(\.tool) == [.curl, .postgresBinaries, .pgBackRest])
        #expect(rebuild[1].neededBy.hasPrefix("step 6 (capture what prod-0 wrote past the fork"))
    }

    /// A copy of the Patroni switchover plan whose members are nowhere: free ports, data directories under `root`.
    func patroniPlanOfNothing(root: String) throws -> Plan {
        var plan = try PlanLoader.load(CLI.plan("patroni-switchover"))
        let ports = try FreePorts.take(4)
        for s in plan.sites.indices {
            plan.sites[s].instances[0].port = ports[2 * s]
            plan.sites[s].instances[0].dataDirectory = root + "/" + plan.sites[s].instances[0].name
            plan.sites[s].instances[0].patroni?.url = "http://127.0.0.1:\(ports[2 * s + 1])"
        }
        return plan
    }

    @Test(
        "without pg_ctl or pgbackrest here, a Patroni plan is checked and rehearsed; a local plan or a Patroni rebuild is refused, naming what is missing"
    )
    func aPatroniPlanNeedsNoPostgreSQLHere() async throws {
        let bare = CLI.tempDirectory("failoverd-bare-host")
        let state = CLI.tempDirectory("failoverd-bare-state")
        defer {
            try? FileManager.default.removeItem(atPath: bare)
            try? FileManager.default.removeItem(atPath: state)
        }
        let tools = HostTools(postgresBinDirectory: bare, searchPath: bare)
        #expect(tools.locate(.postgresBinaries) == nil && tools.locate(.pgBackRest) == nil)
        let logger = Logger(label: "test")
        let drivers = StandardDrivers(stateDirectory: state, simulate: false, logger: logger, tools: tools)

        let patroni = try patroniPlanOfNothing(root: bare)
        let kind = drivers.kind(plan: patroni)
        #expect(kind == .local)  // as every journal of a Patroni run has recorded it
        let driver = try drivers.make(plan: patroni, kind: kind)
        #expect(driver is NoInstanceDriver)
        let sites = try drivers.siteDrivers(plan: patroni, kind: kind)
        #expect(Set(sites.keys) == ["prod", "dr"] && sites.values.allSatisfy { $0 is PatroniSite })
        // `check`: its members are seen through Patroni and libpq (nothing answers, no postmaster here: stopped).
        let report = try await TopologyCheck(plan: patroni, driver: driver, sites: sites, journal: nil, logger: logger).run()
        #expect(report.instances.map(\.seen) == ["stopped", "stopped"])
        #expect(report.instances.allSatisfy { $0.recoverySettings == "patroni" })

        // A rehearsal needs nothing of the host either, and runs the plan's own steps.
        let journal = try Journal(stateDirectory: state)
        let rehearsal = Executor(
            journal: journal, drivers: StandardDrivers(stateDirectory: state, simulate: true, logger: logger, tools: tools), logger: logger,
            options: RunOptions(stateDirectory: state, simulate: true))
        let outcome = try await rehearsal.run(patroni)
        #expect(try journal.steps(of: outcome.runID).map(\.step) == (try Planner(plan: patroni).steps().get()))

        var local = try PlanLoader.load(CLI.plan("switchover"))
        local.name = "switchover-bare"
        let refusal = #expect(throws: FailoverError.self) { try drivers.make(plan: local, kind: drivers.kind(plan: local)) }
        #expect(refusal?.code == .invalidInput)
        #expect(refusal?.message.contains("PostgreSQL binaries not found in \(bare) (no pg_ctl)") == true)
        #expect(refusal?.message.contains("pgbackrest was not found in \(bare)") == true)
        #expect(refusal?.message.contains(#"site "prod" (driver local) needs it on this host"#) == true)
        expectFailure(
            .invalidInput,
            "pgbackrest was not found in \(bare): install it (apt-get install pgbackrest); step 6 (capture what prod-0 wrote past the fork"
        ) {
            _ = try drivers.make(plan: try patroniRebuild(), kind: .local)
        }
    }

    /// Hides this host's pg_ctl and pgbackrest from one command: a private mount namespace (unshare), with an
    /// empty directory bound over PostgreSQL's bin directory and /dev/null over pgbackrest.
    static func withoutPostgreSQL(_ args: [String]) async throws -> (status: Int32, output: String) {
        let empty = CLI.tempDirectory("failoverd-hidden")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let pgbackrest = try #require(HostTools.system.locate(.pgBackRest))
        let script = """
            mount --bind "$1" "$2" && mount --bind /dev/null "$3" && shift 3 && exec "$@"
            """
        let r = try await CommandRunner().run(
            "/usr/bin/unshare",
            ["--mount", "/bin/sh", "-c", script, "sh", empty, HostTools.system.postgresBinDirectory, pgbackrest, CLI.binary] + args,
            workingDirectory: CLI.packageRoot)
        return (r.exitCode, r.stdout + r.stderr)
    }

    static var canHideTools: Bool { OSUser.isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") }

    @Test(
        "failoverd on a host whose pg_ctl and pgbackrest are hidden: a Patroni plan is planned, rehearsed and checked; a local plan's check is refused",
        .enabled(if: canHideTools))
    func theBinaryWithoutPostgreSQL() async throws {
        let root = CLI.tempDirectory("failoverd-hidden-plan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        var plan = try patroniPlanOfNothing(root: root)
        plan.name = "patroni-hidden"
        let file = root + "/plan.json"
        try plan.canonicalJSON().write(to: URL(fileURLWithPath: file))

        let planned = try await Self.withoutPostgreSQL(["plan", file])
        #expect(planned.status == 0, "\(planned.output)")
        let rehearsed = try await Self.withoutPostgreSQL(["run", file, "--simulate", "--quiet", "--state", root + "/sim"])
        #expect(rehearsed.status == 0, "\(rehearsed.output)")
        let checked = try await Self.withoutPostgreSQL(["check", file, "--state", root + "/state"])
        // Both members stopped while the plan declares a primary: a role disagrees (3), and nothing asks for pg_ctl.
        #expect(checked.status == 3, "\(checked.output)")
        #expect(checked.output.contains("prod-0") && !checked.output.contains("pg_ctl") && !checked.output.contains("pgbackrest"))

        let local = try await Self.withoutPostgreSQL(["check", CLI.plan("switchover"), "--state", root + "/local"])
        #expect(local.status == 2, "\(local.output)")
        #expect(local.output.contains("(no pg_ctl)") && local.output.contains("pgbackrest was not found"))
    }
}
