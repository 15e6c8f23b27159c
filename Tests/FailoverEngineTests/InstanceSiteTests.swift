import Foundation
import Testing

@testable import FailoverEngine

/// The site level written once over the PostgreSQL primitives, run against the simulated servers.
@Suite struct InstanceSiteTests {
    func fixture() throws -> (plan: Plan, site: InstanceSite, state: String) {
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        let state = CLI.tempDirectory("failoverd-site")
        let driver = try SimulatedDriver(plan: plan, stateDirectory: state)
        return (plan, InstanceSite(driver: driver, timeout: 5, pollInterval: 0.001), state)
    }

    @Test("demote returns the shutdown checkpoint; promote proves it; the old primary follows the new one")
    func switchoverAtTheSiteLevel() async throws {
        let (plan, site, state) = try fixture()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let prod = try #require(plan.site(named: "prod"))
        let dr = try #require(plan.site(named: "dr"))
        #expect(DriverRegistry.expansion(of: prod) == .instanceSteps)
        let before = try await site.status(of: prod)
        #expect(before.writableMembers.map(\.instance.name) == ["prod-0"])

        let token = try await site.demote(prod, toStandbyOf: dr)
        let control = try #require(try await site.driver.controlData(of: prod.leader))
        #expect(token == DemotionToken(control))
        #expect(try await site.status(of: prod).isProvenNotWritable)
        #expect(try await site.driver.recoverySettings(of: prod.leader) == RecoverySettings(upstream: dr.leader))

        let promotion = try await site.promote(dr, proving: token)
        #expect(promotion.timeline == token.timeline + 1)
        #expect(promotion.promotedAtLSN > token.checkpointLSN)
        #expect(try await site.status(of: dr).writableMembers.map(\.instance.name) == ["dr-0"])

        try await site.follow(prod, upstream: dr)
        let streaming = try await Wait.until(timeout: 5, interval: 0.001) { () async throws -> Bool? in
            let s = try await site.driver.status(of: prod.leader)
            return s.walReceiver?.isStreaming(from: dr.leader) == true ? true : nil
        }
        #expect(streaming == true)
    }

    @Test("promote refuses a token of another cluster and promotes nothing")
    func promoteRefusesAForeignToken() async throws {
        let (plan, site, state) = try fixture()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let prod = try #require(plan.site(named: "prod"))
        let dr = try #require(plan.site(named: "dr"))
        var token = try await site.demote(prod, toStandbyOf: dr)
        token.systemIdentifier = "1234"
        let error = await #expect(throws: FailoverError.self) { _ = try await site.promote(dr, proving: token) }
        #expect(error?.code == .refused)
        #expect(error?.message.contains("promotion of site dr refused") == true)
        #expect(error?.message.contains("1234") == true)
        #expect(try await site.status(of: dr).writableMembers.isEmpty)
    }
}

/// The simulated site level of a Patroni site (rehearsals): Patroni's outcomes over the simulated world.
@Suite struct SimulatedSiteTests {
    func fixture() throws -> (plan: Plan, world: SimulatedDriver, site: SimulatedSite, state: String) {
        let plan = try PlanLoader.load(CLI.plan("patroni-failback-with-rewind"))
        let state = CLI.tempDirectory("failoverd-simsite")
        let world = try SimulatedDriver(plan: plan, stateDirectory: state)
        return (plan, world, SimulatedSite(world: world, timeout: 5), state)
    }

    @Test("demote: a fast shutdown whose checkpoint is the token, read again from the standby leader until it restarts")
    func demotion() async throws {
        let (plan, world, site, state) = try fixture()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let prod = try #require(plan.site(named: "prod"))
        let dr = try #require(plan.site(named: "dr"))
        let token = try await site.demote(prod, toStandbyOf: dr)
        let leader = try await world.status(of: prod.leader)
        #expect(leader.running && leader.inRecovery && leader.walReceiver?.isStreaming(from: dr.leader) == true)
        #expect(try await site.demotionTokenNow(of: prod) == token)
        // A demotion retried (in doubt after a crash) proves the same token without stopping the leader again.
        #expect(try await site.demote(prod, toStandbyOf: dr) == token)
        let promotion = try await site.promote(dr, proving: token)
        #expect(promotion.timeline == token.timeline + 1 && promotion.promotedAtLSN > token.checkpointLSN)
        // Restarted, the standby leader's latest checkpoint is no longer its demotion's: the token is refused.
        try await world.stop(prod.leader, mode: .fast)
        try await world.start(prod.leader)
        await expectFailure(.refused, "not the shutdown checkpoint of a clean demotion") { _ = try await site.demotionTokenNow(of: prod) }
    }

    @Test("fence: a standby cluster with no WAL source replays nothing while the new primary writes, until a rejoin")
    func fence() async throws {
        let (plan, world, site, state) = try fixture()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let prod = try #require(plan.site(named: "prod"))
        let dr = try #require(plan.site(named: "dr"))
        let before = try await world.status(of: prod.leader)
        let evidence = try #require(try await site.fence(prod, reason: "test")[prod.leader.name])
        #expect(evidence.wasRunning && evidence.reachable)
        #expect(try #require(evidence.lastKnownLSN) >= #require(before.currentLSN))
        #expect(try await site.status(of: prod).isProvenNotWritable)
        _ = try await site.promote(dr, proving: nil)
        let fenced = try await world.status(of: prod.leader)
        #expect(fenced.running && fenced.inRecovery && fenced.walReceiver == nil)
        // The new primary writes and archives; an archive standby would follow it, the fenced leader does not.
        _ = try await world.writeProbe(dr.leader)
        _ = try await world.switchWAL(dr.leader)
        let later = try await world.status(of: prod.leader)
        #expect(later.replayLSN == fenced.replayLSN && later.timeline == fenced.timeline)

        try await site.rejoin(prod, from: dr, by: .rewind)
        let rejoined = try await world.status(of: prod.leader)
        let primary = try await world.status(of: dr.leader)
        #expect(rejoined.walReceiver?.isStreaming(from: dr.leader) == true && rejoined.walReceiver?.receivedTimeline == primary.timeline)
    }
}
