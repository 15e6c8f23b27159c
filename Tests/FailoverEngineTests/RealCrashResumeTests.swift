import Foundation
import Testing

@testable import FailoverEngine

/// kill -9 of the engine at every step of switchover.json and failback-with-rewind.json, on real PostgreSQL:
/// each resumed run ends in the same roles as an uninterrupted one, and no committed row is lost.
///
/// Each case starts from prod primary and dr streaming from it, with every row on both, in a sandbox a
/// previous case left that way (``SandboxPool``: three at once, a fresh one whenever a case left its sandbox
/// otherwise); a case whose plan changes the roles switches back afterwards.
@Suite(.sandboxPool(SiteLayout.prodAndDR, width: 3))
struct RealCrashResumeTests {
    static func points(_ name: String) -> [(String, String)] {
        let plan = try! PlanLoader.load(CLI.plan(name))
        let count = try! Planner(plan: plan).steps().get().count
        return (1...count).flatMap { [(name, "\($0):before"), (name, "\($0):after")] }
    }

    static let cases = points("switchover") + points("failback-with-rewind")

    @Test("kill -9 at a step on real PostgreSQL, resume, same roles, no row lost", arguments: cases)
    func crashAndResume(plan name: String, at point: String) async throws {
        try await Self.crashAndResume(plan: name, at: point)
    }

    /// In a sandbox of the current ``SandboxPool``: 20 rows written on the declared primary, the shipped plan
    /// `name` run (its transitions, the sandbox's ports and paths) and killed at `point`, then `failoverd
    /// resume`: the roles are the plan's final ones, the primary takes a new row, and every instance streams
    /// from it with every row. Then back to the declared roles with a plain switchover, if the plan changed them.
    static func crashAndResume(plan name: String, at point: String, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        try await SandboxPool.current!.use { fx, rows in
            let declared = try #require(fx.plan.declaredPrimary, sourceLocation: sourceLocation)
            try await fx.insertRows(rows + 1...rows + 20, on: declared.leader)
            let planPath = try fx.planFile(name, try PlanLoader.load(CLI.plan(name)).transitions)
            let expected = try Planner(plan: PlanLoader.load(planPath)).finalRoles().get()

            let crashed = try await fx.failoverd(["run", planPath, "--quiet", "--crash-at", point])
            #expect(
                crashed.killedBySignal && crashed.status == SIGKILL, "expected SIGKILL at \(point): \(crashed.status) \(crashed.stderr)",
                sourceLocation: sourceLocation)
            let resumed = try await fx.failoverd(["resume", "--quiet"])
            #expect(resumed.status == 0, "resume after \(point): \(resumed.stderr)", sourceLocation: sourceLocation)

            let journal = try Journal(stateDirectory: fx.state)
            #expect(try journal.recordedRoles() == expected, sourceLocation: sourceLocation)
            // The planned primary takes writes; every other instance streams from it and has every row.
            let primarySite = try #require(expected.first { $0.value == .primary }?.key, sourceLocation: sourceLocation)
            let primary = fx.instance("\(primarySite)-0")
            let last = rows + 21
            try await fx.insertRows(last...last, on: primary)
            for (site, instance) in fx.plan.allInstances where site.name != primarySite {
                try await fx.waitForStreaming(instance, from: primary)
                try await fx.waitForRow(last, on: instance)
                #expect(try await fx.sql(instance, "SELECT count(*) FROM t").first?.first == String(last), sourceLocation: sourceLocation)
            }
            #expect(try await fx.sql(primary, "SELECT count(*) FROM t").first?.first == String(last), sourceLocation: sourceLocation)
            #expect(try await AuditLog(journal: journal).verify().intact, sourceLocation: sourceLocation)

            if primarySite != declared.name {
                let back = try fx.planFile(
                    "back", [Transition(action: .switchover, to: declared.name)],
                    roles: expected)
                let switched = try await fx.failoverd(["run", back, "--quiet"])
                #expect(switched.status == 0, "switchover back to \(declared.name): \(switched.stderr)", sourceLocation: sourceLocation)
                for (_, instance) in fx.plan.allInstances where instance != declared.leader {
                    try await fx.waitForStreaming(instance, from: declared.leader)
                }
            }
            return last
        }
    }
}

extension SiteLayout {
    /// prod primary, dr streaming from it: the crash cases' sandboxes and the fleet tests' clusters.
    static let prodAndDR = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]
}
