import Foundation
import GRDB
import Testing

@_spi(JournalDatabase) @testable import FailoverEngine

/// The executor's promises, on the simulated driver: journal durability, refusals, roles, resume rules.
@Suite struct ExecutorTests {
    static let shippedPlans = ["seed-walkthrough", "switchover", "failover", "failback-with-rewind", "failback-with-rebuild"]

    @Test("every shipped plan runs with --simulate and ends in the planner's final roles", arguments: shippedPlans)
    func shippedPlanRuns(name: String) async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try await CLI.run(["run", CLI.plan(name), "--simulate", "--state", state])
        #expect(r.status == 0, "\(name): \(r.stderr)")
        let plan = try PlanLoader.load(CLI.plan(name))
        let expected = try Planner(plan: plan).finalRoles().get().mapValues(\.rawValue)
        #expect(try await CLI.roles(state: state) == expected)
        let verify = try await CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 0)
    }

    @Test func journalIsWALWithSynchronousFull() throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let journal = try Journal(stateDirectory: state)
        #expect(try journal.synchronousMode() == 2)
        let mode = try journal.db.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test func declaredRolesMustMatchRecordedRoles() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        #expect(try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", state]).status == 0)
        // The same plan again: it still declares prod primary, but the journal now records prod as a standby.
        let again = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", state])
        #expect(again.status == 3)
        #expect(again.stderr.contains("site \"prod\": the plan declares primary but the journal records streaming-standby"))
        let journal = try Journal(stateDirectory: state)
        #expect(try AuditLog(journal: journal).query(.init(kind: .refusal)).count == 1)
        #expect(try journal.recordedRoles() == ["dr": .primary, "prod": .streamingStandby])
    }

    @Test func switchoverGateRefusesALaggingTargetBeforeAnySideEffect() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.plan("switchover")))) as! [String: Any]
        json["policy"] = ["maxLagBytes": 0, "stepTimeoutSeconds": 5, "archiveTimeoutSeconds": 2]
        let plan = state + "/plan.json"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: plan))
        let r = try await CLI.run(["run", plan, "--simulate", "--quiet", "--state", state])
        #expect(r.status == 3)
        #expect(r.stderr.contains("switchover refused: dr-0 has replayed"))
        #expect(r.stderr.contains("Nothing was changed"))
        let status = try StatusReport.read(stateDirectory: state)
        #expect(status.lastRun?.outcome == .refused)
        #expect(status.sites.map(\.role) == ["streaming-standby", "primary"])
        let world = try SimulatedDriver.load(state + "/simulation.json")
        #expect(world.nodes["prod-0"]?.running == true && world.nodes["prod-0"]?.standbySignal == false)
        // A refused run is closed: a new run may start, and --allow-data-loss overrides the gate, audited.
        let forced = try await CLI.run(["run", plan, "--simulate", "--quiet", "--state", state, "--allow-data-loss"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let overrides = try AuditLog(journal: try Journal(stateDirectory: state)).query(.init(kind: .override))
        #expect(overrides.count == 1)
    }

    @Test func fencedInstanceIsNeverStartedAsPrimary() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        #expect(try await CLI.run(["run", CLI.plan("failover"), "--simulate", "--quiet", "--state", state]).status == 0)
        let plan = try PlanLoader.load(CLI.plan("failover"))
        let journal = try Journal(stateDirectory: state)
        #expect(try journal.isFenced(instance: "prod-0"))
        let driver = try SimulatedDriver(plan: plan, stateDirectory: state)
        let step = Step(transition: 1, action: .rewind, site: "prod", .start(instance: "prod-0"), summary: "start prod-0")
        let ctx = StepContext(
            plan: plan, driver: driver, journal: journal, runID: "r-x", epoch: 0, allowDataLoss: false, logger: .init(label: "t"),
            evidence: [:], steps: [step], pollInterval: 0.001)
        await expectFailure(.refused, "prod-0 is fenced and has no standby settings") {
            _ = try await StepRunner(ctx: ctx, step: step).act()
        }
        #expect(try await driver.status(of: plan.sites[0].leader).running == false)
    }

    @Test func overwritingAPrimaryFailoverdDidNotFenceIsRefused() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        let journal = try Journal(stateDirectory: state)
        let driver = try SimulatedDriver(plan: plan, stateDirectory: state)
        let prod = plan.sites[0].leader
        let step = Step(transition: 1, action: .rebuild, site: "prod", .stop(instance: prod.name), summary: "stop prod-0")
        let ctx = StepContext(
            plan: plan, driver: driver, journal: journal, runID: "r-x", epoch: 0, allowDataLoss: false, logger: .init(label: "t"),
            evidence: [:], steps: [step], pollInterval: 0.001)
        // prod-0 is the running primary: its pg_control says "in production", and failoverd never fenced it.
        await expectFailure(.refused, "prod-0's pg_control says \"in production\"") {
            _ = try await StepRunner(ctx: ctx, step: step).checkOverwrite(prod, by: "delta restore", source: nil)
        }
        #expect(try await driver.status(of: prod).isWritablePrimary, "nothing was stopped")
        // Once failoverd has fenced it, the same directory may be overwritten.
        try journal.recordFenced(instance: prod.name, site: "prod", lastKnownLSN: nil, reachable: true, run: "r-x", epoch: 0)
        _ = try await StepRunner(ctx: ctx, step: step).checkOverwrite(prod, by: "delta restore", source: nil)
    }

    @Test func failoverRecordsTheWALLossEstimate() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        #expect(try await CLI.run(["run", CLI.plan("failover"), "--simulate", "--quiet", "--state", state]).status == 0)
        let journal = try Journal(stateDirectory: state)
        let run = try #require(try journal.lastRun())
        let record = try #require(try journal.steps(of: run.id).last)
        #expect(record.step.kind == .recordRoles)
        #expect(record.evidence["walLossEstimateBytes"] != nil)
        #expect(record.evidence["oldPrimaryLastKnownLSN"].flatMap(LSN.init) != nil)
    }

    @Test func planVerbHasNoSideEffectAndNumbersSteps() async throws {
        let state = CLI.tempDirectory()
        try? FileManager.default.removeItem(atPath: state)
        let r = try await CLI.run(["plan", CLI.plan("switchover"), "--json"], env: ["FAILOVERD_STATE": state])
        #expect(r.status == 0)
        let steps = try JSONDecoder().decode([Step].self, from: Data(r.stdout.utf8))
        #expect(steps.map(\.number) == Array(1...steps.count))
        #expect(steps.first { $0.kind == .promote }?.destructive == true)
        #expect(steps.first { $0.kind == .gateSwitchover }?.destructive == false)
        #expect(!FileManager.default.fileExists(atPath: state))
    }

    @Test func adoptIsTheWayOutAfterAnAbandonedRun() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        // Killed right after promoting dr-0, then abandoned: the journal still says prod is primary.
        let crashed = try await CLI.run(["run", CLI.plan("failover"), "--simulate", "--quiet", "--state", state, "--crash-at", "4:after"])
        #expect(crashed.killedBySignal)
        let run = try #require(try Journal(stateDirectory: state).unfinishedRun())
        #expect(try await CLI.run(["abandon", run.id, "--state", state]).status == 0)
        // A plan declaring the journal's roles contradicts the servers (dr-0 takes writes): refused.
        let stale = try await CLI.run(["adopt", CLI.plan("failover"), "--simulate", "--state", state])
        #expect(stale.status == 3)
        #expect(stale.stderr.contains("site \"dr\": the plan declares streaming-standby but dr-0 is a primary accepting writes"))
        // Declaring what is true: dr primary, prod fenced (stopped). Checked, recorded, audited.
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.plan("failover")))) as! [String: Any]
        var sites = json["sites"] as! [[String: Any]]
        sites[0]["role"] = "fenced"
        sites[1]["role"] = "primary"
        json["sites"] = sites
        json["transitions"] = [["action": "rewind", "site": "prod", "source": "dr"]]
        let real = state + "/after.json"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: real))
        let adopted = try await CLI.run(["adopt", real, "--simulate", "--state", state])
        #expect(adopted.status == 0, "\(adopted.stderr)")
        #expect(adopted.stdout.contains("dr: streaming-standby -> primary"))
        #expect(try AuditLog(journal: Journal(stateDirectory: state)).query(.init(kind: .adopt)).count == 1)
        // And the repair can run.
        let repair = try await CLI.run(["run", real, "--simulate", "--quiet", "--state", state])
        #expect(repair.status == 0, "\(repair.stderr)")
        #expect(try await CLI.roles(state: state) == ["dr": "primary", "prod": "streaming-standby"])
    }

    @Test func lsnParsesAndPrintsLikePostgreSQL() {
        #expect(LSN("0/3000060")?.value == 0x3000060)
        #expect(LSN("16/B374D848")?.description == "16/B374D848")
        #expect(LSN("nope") == nil)
        #expect(LSN("0/3000128")!.bytes(after: LSN("0/3000060")!) == 0xC8)
    }
}
