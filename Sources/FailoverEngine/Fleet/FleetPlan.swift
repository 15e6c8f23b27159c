import Foundation
import Logging

/// What `failoverd fleet plan` shows: every member's steps, numbered per member, and whether its first gate
/// would pass now, by the same gate code as `failoverd check` (``TopologyCheck``). No side effect.
public struct FleetPlanReport: Codable, Sendable {
    /// One member.
    public struct Member: Codable, Sendable {
        /// Its name.
        public var member: String
        /// Its plan's name.
        public var plan: String
        /// Its plan file as the fleet file writes it.
        public var planFile: String
        /// The members it waits for.
        public var waitsFor: [String]
        /// Its steps, numbered from 1 in its own run.
        public var steps: [Step]
        /// The transitions' summaries, in order.
        public var transitions: [String]
        /// The planner's refusal, when the plan cannot be expanded.
        public var refusal: String?
        /// The first transition's gate now: `proceed`, `refuse`, `no-gate`, `unknown`; nil when not probed.
        public var gate: String?
        /// The gate's own words.
        public var gateMessage: String?
        /// The instance the first transition promotes or acts on, whose lag is shown.
        public var target: String?
        /// Its lag behind its upstream (or the primary), in bytes.
        public var lagBytes: UInt64?
        /// Its replay delay in seconds.
        public var lagSeconds: Double?
        /// `failoverd check`'s exit code for the member: 0 clear, 1 an instance cannot be probed, 3 a role or gate disagrees.
        public var checkExitCode: Int32?
        /// What `failoverd check` found wrong, one line each.
        public var problems: [String]
    }

    /// The fleet's name.
    public var fleet: String
    /// How many members act at once.
    public var concurrency: Int
    /// Failed or refused members that stop new starts.
    public var brake: Int
    /// Every member, in the fleet file's order.
    public var members: [Member]
    /// True when the gates were probed.
    public var probed: Bool

    /// 0 when every member's first gate would pass (or nothing was probed), 3 when a plan cannot be expanded
    /// or a gate or role disagrees, 1 when an instance cannot be probed: `failoverd check`'s codes, the worst member's.
    public var exitCode: Int32 {
        if members.contains(where: { $0.refusal != nil || $0.checkExitCode == 3 }) { return 3 }
        if members.contains(where: { $0.checkExitCode == 1 }) { return 1 }
        return 0
    }

    /// Expands every member's plan and, when `probe`, runs `failoverd check`'s gates on each member's servers,
    /// with its journal when it has one (`STATE/fleets/<fleet>/members/<member>`).
    public static func make(_ fleet: Fleet, stateDirectory: String, simulate: Bool, probe: Bool, logger: Logger) async -> FleetPlanReport {
        let paths = FleetPaths(stateDirectory: stateDirectory, fleet: fleet.name)
        let dependencies = fleet.dependencies
        var members: [Member] = []
        for m in fleet.members {
            var member = Member(
                member: m.name, plan: m.plan.name, planFile: m.planFile, waitsFor: dependencies[m.name] ?? [], steps: [],
                transitions: m.plan.transitions.map(\.summary), problems: [])
            switch Planner(plan: m.plan).steps() {
            case .success(let steps): member.steps = steps
            case .failure(let refusal): member.refusal = refusal.message
            }
            if probe {
                await check(m.plan, state: paths.member(m.name), simulate: simulate, logger: logger, into: &member)
            }
            members.append(member)
        }
        return FleetPlanReport(fleet: fleet.name, concurrency: fleet.concurrency, brake: fleet.brake, members: members, probed: probe)
    }

    /// The member's `failoverd check`: the first gate's verdict and the lag of the first transition's subject.
    static func check(_ plan: Plan, state: String, simulate: Bool, logger: Logger, into member: inout Member) async {
        do {
            let journal = Files.exists(state + "/journal.sqlite") ? try Journal(stateDirectory: state) : nil
            if simulate && journal == nil {
                member.checkExitCode = 1
                member.problems = ["no simulated world yet in \(state): `fleet run --simulate` creates it"]
                return
            }
            // Seen as a run would see it: managed sites (Patroni) through their own driver, as the gates see them.
            let kind = DriverRegistry.runDriver(plan: plan, simulate: simulate)
            let driver = try DriverRegistry.instanceDriver(
                plan: plan, runDriver: kind, stateDirectory: state, tools: .system, logger: logger)
            let sites = try DriverRegistry.siteDrivers(plan: plan, runDriver: kind, stateDirectory: state, logger: logger)
            let report = try await TopologyCheck(plan: plan, driver: driver, sites: sites, journal: journal, logger: logger).run()
            member.checkExitCode = report.exitCode
            member.problems = report.problems
            if let gate = report.gates.first {
                member.gate = gate.verdict
                member.gateMessage = gate.message
            }
            if let subject = plan.transitions.first.flatMap({ plan.site(named: $0.subject) })?.leader,
                let instance = report.instances.first(where: { $0.instance == subject.name })
            {
                member.target = instance.instance
                member.lagBytes = instance.lagBytes
                member.lagSeconds = instance.lagSeconds
            }
        } catch {
            member.checkExitCode = (error as? FailoverError)?.code == .refused ? 3 : 1
            member.problems = ["cannot check: \(error)"]
        }
    }
}
