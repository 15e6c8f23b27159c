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
