import Foundation
import Logging
import Testing

@testable import FailoverEngine

/// The executor in process, over a journal the test holds and a scripted driver: no CLI, no stderr text.
@Suite struct InProcessExecutorTests {
    struct Fixture {
        let state: String
        let plan: Plan
        let journal: Journal
        let driver: ScriptedDriver
        let executor: Executor
    }

    func fixture(_ planName: String) throws -> Fixture {
        let state = CLI.tempDirectory("failoverd-inproc")
        let plan = try PlanLoader.load(CLI.plan(planName))
        let journal = try Journal(stateDirectory: state)
        let driver = try ScriptedDriver(plan: plan, stateDirectory: state)
        let executor = Executor(
            journal: journal, drivers: ScriptedDrivers(driver: driver), logger: Logger(label: "test"),
            options: RunOptions(stateDirectory: state))
        return Fixture(state: state, plan: plan, journal: journal, driver: driver, executor: executor)
    }

    @Test("a switchover journals typed evidence: the demotion token, its replay, the promotion")
    func switchoverEvidence() async throws {
        let fx = try fixture("switchover")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        let outcome = try await fx.executor.run(fx.plan)
        #expect(outcome.outcome == .succeeded)
        let steps = try fx.journal.steps(of: outcome.runID)
        #expect(steps.allSatisfy { $0.status.isFinished })
        let read = try #require(steps.first { $0.step.kind == .readShutdownCheckpoint })
        let token = try #require(try read.evidence(as: DemotionToken.self))
        #expect(read.step.operation == .readShutdownCheckpoint(oldPrimary: "prod-0"))
        let replay = try #require(try steps.first { $0.step.kind == .awaitReplay }?.evidence(as: ReplayEvidence.self))
        #expect(replay.demotionToken == token.text)
        #expect(replay.checkpointLSN == token.checkpointLSN)
        let promotion = try #require(try steps.first { $0.step.kind == .promote }?.evidence(as: Promotion.self))
        #expect(promotion.previousTimeline == token.timeline)
        #expect(promotion.timeline == token.timeline + 1)
        #expect(try fx.journal.recordedRoles() == ["prod": .streamingStandby, "dr": .primary])
        // The old primary was stopped before the promotion, and written standby settings before it too.
        let calls = fx.driver.calls
        let stop = try #require(calls.firstIndex(of: "stop prod-0"))
        let promote = try #require(calls.firstIndex(of: "promote dr-0"))
        #expect(stop < promote)
    }

    @Test("a failing promote leaves the run failed and resumable, naming the step; resume finishes it")
    func failureThenResume() async throws {
        let fx = try fixture("switchover")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        fx.driver.failNext("promote", on: "dr-0", "pg_ctl promote exited 1")
        let error = await #expect(throws: FailoverError.self) { _ = try await fx.executor.run(fx.plan) }
        #expect(error?.code == .stepFailed)
        #expect(
            error?.message.contains("(promote dr-0 after proving no other instance accepts writes) failed: pg_ctl promote exited 1") == true
        )
        #expect(error?.message.contains("The run is resumable") == true)
        let run = try #require(try fx.journal.lastRun())
        #expect(run.outcome == .failed)
        let promoteStep = try #require(try fx.journal.steps(of: run.id).first { $0.step.kind == .promote })
        #expect(promoteStep.status == .failed)
        #expect(promoteStep.attempts == 1)

        let resumed = try await fx.executor.resume(runID: run.id)
        #expect(resumed.outcome == .succeeded)
        #expect(try fx.journal.run(run.id)?.outcome == .succeeded)
        #expect(try fx.journal.steps(of: run.id).first { $0.step.kind == .promote }?.attempts == 2)
        #expect(try fx.journal.recordedRoles()["dr"] == .primary)
    }

    @Test("an instance that cannot be read refuses the run before it starts, naming it, and changes nothing")
    func unreadableStandbyRefuses() async throws {
        let fx = try fixture("switchover")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        // Unknown is never "not a primary": the declared standby must be seen to be unable to write.
        fx.driver.failNext("status", on: "dr-0", "connection refused")
        let error = await #expect(throws: FailoverError.self) { _ = try await fx.executor.run(fx.plan) }
        #expect(error?.code == .refused)
        #expect(
            error?.message.contains(
                "site \"dr\": the plan declares streaming-standby but failoverd cannot read dr-0 (connection refused)") == true)
        #expect(try fx.journal.lastRun() == nil)
        #expect(fx.driver.calls.allSatisfy { $0.hasPrefix("status ") })
    }
}
