import Foundation
import Testing

@testable import FailoverEngine

/// kill -9 of the engine at every step of switchover.json and failback-with-rewind.json, on real PostgreSQL:
/// each resumed run ends in the same roles as an uninterrupted one, and no committed row is lost.
@Suite(.serialized) struct RealCrashResumeTests {
    static let layout = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    /// The transitions of a shipped plan (the fixture supplies ports and paths).
    static func transitions(_ name: String) -> [Transition] {
        try! PlanLoader.load(CLI.plan(name)).transitions
    }

    static func points(_ name: String) -> [(String, String)] {
        let plan = try! PlanLoader.load(CLI.plan(name))
        let count = try! Planner(plan: plan).steps().get().count
        return (1...count).flatMap { [(name, "\($0):before"), (name, "\($0):after")] }
    }

    static let cases = points("switchover") + points("failback-with-rewind")

    @Test("kill -9 at a step on real PostgreSQL, resume, same roles, no row lost", arguments: cases)
    func crashAndResume(plan name: String, at point: String) async throws {
        try await SandboxFixture.with(Self.layout) { fx in
            let prod = fx.instance("prod-0")
            try await fx.insertRows(1...20, on: prod)
            let planPath = try fx.planFile(name, Self.transitions(name))
            let expected = try Planner(plan: PlanLoader.load(planPath)).finalRoles().get()

            let crashed = try fx.failoverd(["run", planPath, "--quiet", "--crash-at", point])
            #expect(
                crashed.killedBySignal && crashed.status == SIGKILL, "expected SIGKILL at \(point): \(crashed.status) \(crashed.stderr)")
            let resumed = try fx.failoverd(["resume", "--quiet"])
            #expect(resumed.status == 0, "resume after \(point): \(resumed.stderr)")

            let journal = try Journal(stateDirectory: fx.state)
            #expect(try journal.recordedRoles() == expected)
            // The planned primary takes writes; every other instance streams from it and has every row.
            let primarySite = try #require(expected.first { $0.value == .primary }?.key)
            let primary = fx.instance("\(primarySite)-0")
            try await fx.insertRows(21...21, on: primary)
            for (site, instance) in fx.plan.allInstances where site.name != primarySite {
                try await fx.waitForStreaming(instance, from: primary)
                try await fx.waitForRow(21, on: instance)
                #expect(try await fx.sql(instance, "SELECT count(*) FROM t").first?.first == "21")
            }
            #expect(try await fx.sql(primary, "SELECT count(*) FROM t").first?.first == "21")
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }
}
