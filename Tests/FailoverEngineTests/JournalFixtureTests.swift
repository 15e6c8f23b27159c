import Foundation
import Testing

@testable import FailoverEngine

/// A journal written by an earlier failoverd (Tests/Fixtures/journal-main-54e04ac, made with the binary of
/// main at 54e04ac and killed at step 17) is read, shown and resumed by this one.
@Suite struct JournalFixtureTests {
    static let fixture = CLI.packageRoot + "/Tests/Fixtures/journal-main-54e04ac"
    static let runID = "r-20261130-233644-3b4f"

    /// A copy of the fixture in a fresh state directory: tests never write to the checked-in files.
    func copy() throws -> String {
        let state = CLI.tempDirectory("failoverd-fixture")
        for file in ["journal.sqlite", "simulation.json"] {
            try FileManager.default.copyItem(atPath: Self.fixture + "/" + file, toPath: state + "/" + file)
        }
        return state
    }

    @Test("the old journal's run, steps and evidence read back")
    func reads() throws {
        let state = try copy()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let journal = try Journal(stateDirectory: state)
        let run = try #require(try journal.unfinishedRun())
        #expect(run.id == Self.runID)
        #expect(run.planName == "failback-with-rewind")
        let steps = try journal.steps(of: run.id)
        #expect(steps.count == 23)
        #expect(steps.filter { $0.status == .done || $0.status == .satisfied }.count == 16)
        #expect(steps[16].status == .started)
        #expect(steps[16].step.kind == .awaitReplay)
        #expect(steps[16].step.operation == .awaitReplay(target: "prod-0", oldPrimary: "dr-0"))
        // Evidence journaled as text decodes into its typed form.
        let token = try #require(try steps[15].evidence(as: DemotionToken.self))
        #expect(token.systemIdentifier == steps[15].evidence["systemIdentifier"])
        #expect(token.checkpointLSN.description == steps[15].evidence["checkpointLSN"])
        let fence = try #require(try steps[1].evidence(as: FenceEvidence.self))
        #expect(fence.lastKnownLSN != nil)
        #expect(fence.reachable)
        let promotion = try #require(try steps[3].evidence(as: Promotion.self))
        #expect(promotion.timeline == promotion.previousTimeline + 1)
        #expect(try journal.recordedRoles() == ["dr": .primary, "prod": .fenced])
    }

    @Test("status and audit verify show the old journal")
    func shows() throws {
        let state = try copy()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let status = try CLI.run(["status", "--state", state])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(
            status.stdout.contains("last run: \(Self.runID) plan \"failback-with-rewind\" running (13 done, 3 satisfied, 1 in doubt of 23)")
        )
        #expect(status.stdout.contains("continue with: failoverd resume \(Self.runID)"))
        let verify = try CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        #expect(verify.stdout.contains("hash chain verified"))
    }

    @Test("the old journal's unfinished run resumes to the end")
    func resumes() throws {
        let state = try copy()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let resumed = try CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try CLI.roles(state: state) == ["dr": "streaming-standby", "prod": "primary"])
        let journal = try Journal(stateDirectory: state)
        let steps = try journal.steps(of: Self.runID)
        #expect(steps.allSatisfy { $0.status.isFinished })
        #expect(try journal.run(Self.runID)?.outcome == .succeeded)
        let verify = try CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }
}

/// A simulated Patroni run journaled by main at db71ba4 with instance steps (Tests/Fixtures/
/// journal-main-db71ba4-patroni, killed at step 16): today's failoverd, which rehearses a Patroni plan with
/// site steps, resumes it to the end, its Patroni sites seen through the simulated site driver. Main's own
/// resume of it failed (exit 3): it probed the members through the Patroni driver.
@Suite struct PatroniJournalFixtureTests {
    static let fixture = CLI.packageRoot + "/Tests/Fixtures/journal-main-db71ba4-patroni"
    static let runID = "r-20261207-162633-13c2"

    @Test("the old simulated Patroni run, with its 22 instance steps, shows, resumes to the end and verifies")
    func resumes() throws {
        let state = CLI.tempDirectory("failoverd-fixture")
        defer { try? FileManager.default.removeItem(atPath: state) }
        for file in ["journal.sqlite", "simulation.json"] {
            try FileManager.default.copyItem(atPath: Self.fixture + "/" + file, toPath: state + "/" + file)
        }
        let status = try CLI.run(["status", "--state", state])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("last run: \(Self.runID) plan \"patroni-switchover\" running"))
        let resumed = try CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try CLI.roles(state: state) == ["dr": "streaming-standby", "prod": "primary"])
        let journal = try Journal(stateDirectory: state)
        let steps = try journal.steps(of: Self.runID)
        #expect(steps.count == 22 && steps.allSatisfy { $0.status.isFinished })
        #expect(steps.map(\.step.kind).contains(.readShutdownCheckpoint))
        #expect(try journal.run(Self.runID)?.outcome == .succeeded)
        let verify = try CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }
}
