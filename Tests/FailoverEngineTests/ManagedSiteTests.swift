import Foundation
import Logging
import Testing

@testable import FailoverEngine

/// A plan whose sites are managed (driver kind `patroni`, site level): the planner expands the switchover into
/// site steps, the shared gates run above them, and the run ends where the instance-level run ends.
@Suite struct ManagedSiteTests {
    func run(_ managed: Set<String>) async throws -> (Journal, String, Result<RunOutcome, any Error>, ScriptedDriver) {
        let state = CLI.tempDirectory("failoverd-managed")
        let plan = try PlanLoader.load(CLI.plan("switchover")).driving(managed, by: .patroni)
        let journal = try Journal(stateDirectory: state)
        let driver = try ScriptedDriver(plan: plan, stateDirectory: state)
        let executor = Executor(
            journal: journal, drivers: ScriptedDrivers(driver: driver), logger: Logger(label: "test"),
            options: RunOptions(stateDirectory: state))
        do { return (journal, state, .success(try await executor.run(plan)), driver) } catch {
            return (journal, state, .failure(error), driver)
        }
    }

    @Test("the planner expands a managed site's switchover into site steps; instance drivers keep their steps and numbers")
    func expansion() throws {
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        let managed = try Planner(plan: plan.driving(["prod", "dr"], by: .patroni)).steps().get()
        #expect(managed.map(\.kind) == [.gateSwitchover, .demote, .awaitReplay, .promoteSite, .awaitStreaming, .recordRoles])
        #expect(managed[1].operation == .demote(site: "prod", upstream: "dr"))
        #expect(managed.map(\.number) == Array(1...6))
        let local = try Planner(plan: plan).steps().get()
        #expect(local == (try Planner(plan: plan.driving(["prod", "dr"], by: .ssh)).steps().get()))
        #expect(local.map(\.kind).contains(.readShutdownCheckpoint))
        #expect(local.count == 11)
    }

    @Test("a managed switchover journals the site's demotion token, proves it at replay and promotes with it")
    func switchover() async throws {
        let (journal, state, result, _) = try await run(["prod", "dr"])
        defer { try? FileManager.default.removeItem(atPath: state) }
        let outcome = try result.get()
        let steps = try journal.steps(of: outcome.runID)
        #expect(steps.allSatisfy { $0.status == .done || $0.status == .satisfied })
        let token = try #require(try steps[1].evidence(as: DemotionToken.self))
        let replay = try #require(try steps[2].evidence(as: ReplayEvidence.self))
        #expect(replay.demotionToken == token.text)
        let promotion = try #require(try steps[3].evidence(as: Promotion.self))
        #expect(promotion.timeline == token.timeline + 1)
        #expect(try journal.recordedRoles() == ["prod": .streamingStandby, "dr": .primary])
        // The step's JSON in the journal reads back as the same operation.
        #expect(steps[1].step.operation == .demote(site: "prod", upstream: "dr"))
    }

    @Test("a failover to a managed site expands into site steps around both failover gates; its bootstrap is refused")
    func failoverExpansionAndBootstrapRefusal() throws {
        let plan = try PlanLoader.load(CLI.plan("failover"))
        let steps = try Planner(plan: plan.driving(["prod", "dr"], by: .patroni)).steps().get()
        #expect(steps.map(\.kind) == [.gateFailover, .fenceSite, .gateFailover, .promoteSite, .recordRoles])
        #expect(steps[1].operation == .fenceSite(site: "prod"))
        // A local old primary is fenced instance by instance, a managed target promoted as a site.
        let mixed = try Planner(plan: plan.driving(["dr"], by: .patroni)).steps().get()
        #expect(mixed.map(\.kind) == [.gateFailover, .fence, .gateFailover, .promoteSite, .recordRoles])
        // The operations round-trip through the journal's JSON.
        let rejoin = Step(
            transition: 1, action: .rewind, site: "prod", .rejoinSite(site: "prod", source: "dr", method: .rewind), summary: "s")
        let follow = Step(transition: 1, action: .disableStreaming, site: "dr", .followSite(site: "dr", upstream: nil), summary: "s")
        for step in [rejoin, follow, steps[1]] {
            #expect(try JSONDecoder().decode(Step.self, from: JSONEncoder().encode(step)) == step)
        }

        var seed = try PlanLoader.load(CLI.plan("seed-walkthrough"))
        seed.transitions = [Transition(action: .bootstrapStandby, site: "dr")]
        for i in seed.sites.indices where seed.sites[i].name == "dr" { seed.sites[i].role = .none }
        guard case .failure(let refusal) = Planner(plan: seed.driving(["dr"], by: .patroni)).steps() else {
            Issue.record("a bootstrap of a managed site was planned")
            return
        }
        #expect(refusal.site == "dr")
        #expect(refusal.message.contains("bootstrap it as a standby cluster"))
    }
}
