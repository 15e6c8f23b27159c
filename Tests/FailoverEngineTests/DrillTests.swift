import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// Drills of the shipped plans on real PostgreSQL under write load: they pass, their reports hold every
/// figure, and their checks fail when the plan's promise is broken.
@Suite(.serialized) struct DrillTests {
    func report(_ dir: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/report.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func check(_ report: [String: Any], _ prefix: String) -> [String: Any]? {
        (report["checks"] as? [[String: Any]])?.first { ($0["name"] as? String)?.hasPrefix(prefix) == true }
    }

    /// Every plan file shipped in plans/ runs for real in this suite or in LabTests, whatever its kind.
    @Test func everyShippedPlanFileIsRunByATest() {
        #expect(!ShippedPlans.all.isEmpty)
        #expect(Set(ShippedPlans.sandboxPlans).union(ShippedPlans.labPlans) == Set(ShippedPlans.all))
        #expect(Set(ShippedPlans.sandboxPlans).isDisjoint(with: ShippedPlans.labPlans))
        #expect(Set(ShippedPlans.all).union(ShippedPlans.fleets) == Set(ShippedPlans.files))
        #expect(ShippedPlans.fleets == FleetDrillTests.shippedFleets, "every shipped fleet file is drilled by FleetDrillTests")
        #expect(ShippedPlans.labPlans.isEmpty || LabFixture.available, "the lab plans \(ShippedPlans.labPlans) need root, sshd and ip")
        for name in Array(ShippedPlans.faults.keys) + Array(ShippedPlans.knownIssues.keys) {
            #expect(ShippedPlans.all.contains(name), "ShippedPlans names plans/\(name).json, which is not shipped")
        }
    }

    /// Each shipped sandbox plan, with the real CLI: `sandbox up`; a drill (and a second `sandbox up`) that finds
    /// it running refuses at once, naming it and the command that takes it down, and changes nothing; a row is
    /// written; `drill --reuse` drills it and leaves it up; the final roles are read from PostgreSQL (and
    /// Patroni) themselves, the row is on every server, a new one reaches every standby; `sandbox down`.
    @Test(
        "each shipped sandbox plan: built, refused while it runs, drilled, final roles seen from outside",
        arguments: ShippedPlans.sandboxPlans)
    func shippedPlanRunsForReal(name: String) async throws {
        let started = ContinuousClock.now
        await ShippedPlans.reapDead(name)
        let root = ShippedPlans.temporaryRoot(name)
        let state = root + "/sandbox-state"
        let planPath = CLI.plan(name)
        let plan = try PlanLoader.load(planPath)
        let up = try await CLI.run(["sandbox", "up", planPath, "--state", state])
        var failure: (any Error)?
        do {
            try #require(up.status == 0, "sandbox up \(name): \(up.stderr)")
            try await expectRefusalsWhileRunning(plan: plan, planPath: planPath, state: state, root: root)
            try await drillRunningSandbox(name: name, plan: plan, planPath: planPath, state: state, root: root)
        } catch { failure = error }
        let down = try await CLI.run(["sandbox", "down", planPath, "--state", state])
        #expect(down.status == 0, "sandbox down \(name): \(down.stderr)")
        for (_, instance) in plan.allInstances {
            #expect(Postmaster.livePID(in: instance.dataDirectory) == nil, "\(instance.name) still runs after sandbox down")
        }
        #expect(Sandbox(plan: plan, stateDirectory: state).running() == nil, "something of \(name)'s sandbox survived sandbox down")
        try? FileManager.default.removeItem(atPath: root)
        print("TIMING shipped plan \(name), sandbox up to sandbox down: \(ContinuousClock.now - started)")
        if let failure { throw failure }
    }

    /// With the sandbox up (built with `state`): a drill, `sandbox up` with another state directory and `sandbox up`
    /// again each refuse (exit 3) naming it, its state directory and `sandbox down`, without building or stopping anything.
    func expectRefusalsWhileRunning(plan: Plan, planPath: String, state: String, root: String) async throws {
        let before = plan.allInstances.map { Postmaster.livePID(in: $0.instance.dataDirectory) }
        try await ShippedPlans.expectDrillRefused(.sandbox, plan: plan, planPath: planPath, state: state, report: root + "/refused")
        let again = try await CLI.run(["sandbox", "up", planPath, "--state", state])
        #expect(
            again.status == 3 && again.stderr.contains("--state \(RunningTopology.word(state)) --reuse` completes it"), "\(again.stderr)")
        // Nothing was stopped or restarted, and every server still answers.
        #expect(plan.allInstances.map { Postmaster.livePID(in: $0.instance.dataDirectory) } == before)
        let outside = OutsideView(plan: plan)
        for (site, instance) in plan.allInstances where site.role != .none {
            #expect(
                try await outside.inRecovery(instance) == (site.role == .primary && instance == site.leader ? "f" : "t"), "\(instance.name)"
            )
        }
    }

    /// Writes a row, drills the running sandbox with --reuse, checks the report and the final roles from outside.
    func drillRunningSandbox(name: String, plan: Plan, planPath: String, state: String, root: String) async throws {
        let outside = OutsideView(plan: plan)
        let primary = try #require(plan.declaredPrimary?.leader)
        try await outside.writeMarker(1, on: primary)
        let dir = root + "/report"
        var args = ["drill", planPath, "--reuse", "--report", dir, "--writers", "2", "--dwell", "1.5", "--warmup", "0.5"]
        if let faults = ShippedPlans.faults[name] { args += ["--faults", faults] }
        let started = ContinuousClock.now
        let r = try await CLI.run(args)
        print("TIMING drill --reuse of \(name): \(ContinuousClock.now - started)")
        if let known = ShippedPlans.knownIssues[name] {
            await withKnownIssue(Comment(rawValue: known)) {
                try await checkDrill(name: name, plan: plan, result: r, dir: dir, outside: outside)
            }
        } else {
            try await checkDrill(name: name, plan: plan, result: r, dir: dir, outside: outside)
        }
        // The drill did not build it, so it left it up.
        #expect(Sandbox(plan: plan, stateDirectory: state).exists)
        #expect(Sandbox(plan: plan, stateDirectory: state).running() != nil, "drill --reuse took the sandbox down")
    }

    /// The drill passed, its report holds every figure, and PostgreSQL itself shows the final roles and the rows.
    func checkDrill(name: String, plan: Plan, result r: CLI.Result, dir: String, outside: OutsideView) async throws {
        #expect(r.status == 0, "drill \(name): \(r.stdout.suffix(1500)) \(r.stderr.suffix(800))")
        #expect(r.stdout.contains("report: \(dir)/report.md"))
        #expect(r.stdout.contains("using the running sandbox"), "\(r.stdout.prefix(500))")

        let json = try report(dir)
        #expect(json["plan"] as? String == plan.name)
        // The drill's run journaled the numbered steps `failoverd plan` lists (#19.4).
        let journal = try Journal(stateDirectory: dir + "/state")
        let ran = try journal.steps(of: try #require(try journal.lastRun()).id).map(\.step)
        #expect(ran == (try await RehearsalTests.planned(name).steps))
        #expect(json["passed"] as? Bool == true)
        let checks = try #require(json["checks"] as? [[String: Any]])
        for c in checks {
            #expect(c["passed"] as? Bool == true, "check \(c["name"] ?? "?") failed: \(c["detail"] ?? "")")
            #expect((c["detail"] as? String)?.isEmpty == false)
        }
        for required in [
            "plan completed", "RPO", "never two writable primaries", "final roles as planned", "standbys stream on the final timeline",
            "audit verify",
        ] {
            #expect(check(json, required) != nil, "missing check \(required)")
        }
        let transitions = try #require(json["transitions"] as? [[String: Any]])
        #expect(transitions.map { $0["action"] as? String } == plan.transitions.map(\.action.rawValue))
        for t in transitions {
            #expect((t["rtoSeconds"] as? Double).map { $0 >= 0 && $0 < 30 } == true)
            #expect(t["acknowledgedLost"] as? Int == 0)
            let steps = try #require(t["steps"] as? [[String: Any]])
            #expect(!steps.isEmpty)
            #expect(steps.allSatisfy { $0["seconds"] is Double && $0["kind"] is String })
        }
        let workload = try #require(json["workload"] as? [String: Any])
        #expect((workload["acknowledged"] as? Int ?? 0) > 0)
        #expect(workload["lost"] as? Int == 0)
        let lag = try #require(json["lag"] as? [[String: Any]])
        #expect(!lag.isEmpty)
        #expect(
            lag.allSatisfy {
                $0["medianSeconds"] is Double && ($0["mode"] as? String).map { ["archive", "streaming"].contains($0) } == true
            })

        let md = try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
        #expect(md.contains("## Checks") && md.contains("RTO"))
        let svg = try Data(contentsOf: URL(fileURLWithPath: dir + "/timeline.svg"))
        #expect(XMLParser(data: svg).parse(), "timeline.svg is not well-formed XML")

        if name == "seed-walkthrough-s3" {
            // Archive mode from the bucket against streaming, and the restore from it.
            let dr0 = lag.filter { $0["instance"] as? String == "dr-0" }
            let archive = try #require(dr0.first { $0["mode"] as? String == "archive" }?["medianSeconds"] as? Double)
            let streaming = try #require(dr0.first { $0["mode"] as? String == "streaming" }?["medianSeconds"] as? Double)
            #expect(streaming < archive)
            #expect(md.contains("## Restores from the repository"))
            #expect(r.stdout.contains("restore dr-0 from the repository as a standby: "))
        }
        if name == "seed-walkthrough" {
            // The article's comparison: archive mode lags by about archive_timeout, streaming by milliseconds.
            let dr0 = lag.filter { $0["instance"] as? String == "dr-0" }
            let archive = try #require(dr0.first { $0["mode"] as? String == "archive" }?["medianSeconds"] as? Double)
            let streaming = try #require(dr0.first { $0["mode"] as? String == "streaming" }?["medianSeconds"] as? Double)
            #expect(archive > 0.2 && archive < plan.policy.archiveTimeoutSeconds * 3)
            #expect(streaming < archive / 5)
        }
        // Not the drill's word for it: what PostgreSQL (and Patroni) say, and the row written before the drill.
        // (After a failed drill there is no final topology to look at.)
        guard r.status == 0 else { return }
        try await outside.expectFinalRoles(markerWrittenBefore: 1)
    }

    @Test func promotingACutStandbyWithAllowDataLossFailsTheRPOCheckWithTheCount() async throws {
        let dir = CLI.tempDirectory("failoverd-drill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The receiver is cut and the archive stalls, so nothing reaches dr-0 any more; --allow-data-loss then
        // lets the switchover promote it anyway. (With the archive working, the old primary's clean stop would
        // archive its last segment and dr-0 would replay it: no loss.)
        // --allow-data-loss still waits the whole step timeout for the replay: a short one keeps the test short.
        var json0 = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.plan("switchover")))) as! [String: Any]
        json0["policy"] = ["maxLagBytes": 16_777_216, "stepTimeoutSeconds": 8, "archiveTimeoutSeconds": 2]
        let planPath = dir + "/switchover-short.json"
        try JSONSerialization.data(withJSONObject: json0).write(to: URL(fileURLWithPath: planPath))
        let r = try await CLI.run([
            "drill", planPath, "--report", dir + "/report", "--writers", "2", "--faults", "cut-receiver@dr,archive-stall@60",
            "--allow-data-loss", "--warmup", "1",
        ])
        #expect(r.status == 1, "\(r.stdout.suffix(1500))")
        let json = try report(dir + "/report")
        #expect(json["passed"] as? Bool == false)
        let rpo = try #require(check(json, "RPO"))
        #expect(rpo["passed"] as? Bool == false)
        let lost = (json["workload"] as? [String: Any])?["lost"] as? Int ?? 0
        #expect(lost > 0)
        #expect((rpo["detail"] as? String)?.hasPrefix("\(lost) acknowledged commits lost") == true)
        #expect(r.stdout.contains("FAIL  RPO"))
        #expect((json["faults"] as? [[String: Any]])?.count == 2)
    }

    @Test func killingThePrimaryBeforeASwitchoverFailsTheRPOCheck() async throws {
        let dir = CLI.tempDirectory("failoverd-drill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await CLI.run(["drill", CLI.plan("switchover"), "--report", dir, "--writers", "2", "--faults", "kill-primary@1"])
        #expect(r.status == 1)
        let json = try report(dir)
        let rpo = try #require(check(json, "RPO"))
        #expect(rpo["passed"] as? Bool == false)
        let acknowledged = (json["workload"] as? [String: Any])?["acknowledged"] as? Int ?? 0
        #expect((rpo["detail"] as? String)?.contains("\(acknowledged) acknowledged commits are unreachable") == true)
        #expect(check(json, "plan completed")?["passed"] as? Bool == false)
        #expect((json["faults"] as? [[String: Any]])?.first?["fault"] as? String == "kill-primary@1")
    }

    @Test func aDoublePrimaryRiggedOutsideFailoverdFailsTheSplitBrainProbe() async throws {
        let dir = CLI.tempDirectory("failoverd-drill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        let dr = plan.site(named: "dr")!.leader
        // A warm-up far longer than the test needs: the drill ends it early once it sees two writable primaries,
        // so the promotion below never races the plan's own switchover.
        let drill = try CLI.start(["drill", CLI.plan("switchover"), "--report", dir, "--writers", "2", "--warmup", "300"])
        defer { drill.signal(SIGKILL) }
        // Wait until the workload runs (the drill says so), then promote dr-0 behind failoverd's back.
        let running = try await Wait.until(timeout: 120, interval: 0.1) { drill.outputSoFar().contains("warming up") ? true : nil }
        #expect(running == true)
        let promote = try await CommandRunner(user: OSUser.postgresUser(for: plan)).run(
            "/usr/lib/postgresql/15/bin/pg_ctl", ["promote", "-w", "-D", dr.dataDirectory])
        #expect(promote.succeeded, "\(promote.outputTail)")
        let result = await drill.wait()
        #expect(result.status == 1, "\(result.stdout.suffix(1500))")
        #expect(result.stdout.contains("dr-0 and prod-0 both accept writes during the warm-up; ending it early"))
        let json = try report(dir)
        let probe = try #require(check(json, "never two writable primaries"))
        #expect(probe["passed"] as? Bool == false)
        #expect((probe["detail"] as? String)?.contains("both accepted writes") == true)
    }

    @Test func anEngineKilledMidPlanIsResumedAndTheDrillStillPasses() async throws {
        let dir = CLI.tempDirectory("failoverd-drill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try await CLI.run([
            "drill", "plans/failback-with-rewind.json", "--report", dir, "--writers", "2", "--faults", "crash-engine@7:after", "--warmup",
            "0.5",
        ])
        #expect(r.status == 0, "\(r.stdout.suffix(1500))")
        let json = try report(dir)
        #expect(json["passed"] as? Bool == true)
        #expect((json["faults"] as? [[String: Any]])?.first?["fault"] as? String == "crash-engine@7:after")
        let journal = try Journal(stateDirectory: dir + "/state")
        #expect(try AuditLog(journal: journal).query(.init(kind: .lockTakeover)).count == 1)
        #expect(try AuditLog(journal: journal).query(.init(kind: .runResume)).count == 1)
    }

    @Test func faultSpecsAreParsedOrRefusedByName() async throws {
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        #expect(
            try Fault.parse("kill-primary@3, crash-engine@5:after,cut-receiver@dr,archive-stall@2.5", plan: plan) == [
                .killPrimary(step: 3), .crashEngine(CrashPoint(step: 5, phase: .after)), .cutReceiver(site: "dr"),
                .archiveStall(seconds: 2.5),
            ])
        expectFailure(.invalidInput, "no site \"nowhere\" in the plan") { try Fault.parse("cut-receiver@nowhere", plan: plan) }
        expectFailure(.invalidInput, "unknown fault \"flood\"") { try Fault.parse("flood@3", plan: plan) }
        expectFailure(.invalidInput, "at most one crash-engine fault per drill") {
            try Fault.parse("crash-engine@1:before,crash-engine@2:after", plan: plan)
        }
        // crash-coordinator: a coordinated plan in the lab only; :before by default; one crash per drill.
        let coordinated = try PlanLoader.load(CLI.plan("dc-switchover-coordinated"))
        #expect(
            try Fault.parse("crash-coordinator@7", plan: coordinated) == [.crashCoordinator(CrashPoint(step: 7, phase: .before))])
        #expect(try Fault.parse("crash-coordinator@7:after", plan: coordinated).first?.description == "crash-coordinator@7:after")
        // Both coordinator faults: a coordinated plan in the lab only.
        let uncoordinatedLab = try PlanLoader.load(CLI.plan("dc-switchover"))
        for name in ["crash-coordinator", "isolate-coordinator"] {
            expectFailure(.invalidInput, "network faults need the lab") { try Fault.parse("\(name)@3", plan: plan) }
            expectFailure(.invalidInput, "the plan has no \"coordination\"") { try Fault.parse("\(name)@3", plan: uncoordinatedLab) }
        }
        expectFailure(.invalidInput, "crash-coordinator@STEP, crash-coordinator@STEP:before") {
            try Fault.parse("crash-coordinator@3:mid", plan: coordinated)
        }
        expectFailure(.invalidInput, "at most one crash-engine fault per drill") {
            try Fault.parse("crash-engine@1:before,crash-coordinator@2", plan: coordinated)
        }
        // isolate-coordinator takes the coordinator away, so it counts as the drill's one crash.
        #expect(try Fault.parse("isolate-coordinator@7", plan: coordinated) == [.isolateCoordinator(step: 7)])
        #expect(try Fault.parse("isolate-coordinator@7", plan: coordinated).first?.description == "isolate-coordinator@7")
        expectFailure(.invalidInput, "isolate-coordinator@STEP takes a step number from 1") {
            try Fault.parse("isolate-coordinator@0", plan: coordinated)
        }
        expectFailure(.invalidInput, "at most one crash-engine fault per drill") {
            try Fault.parse("crash-coordinator@2,isolate-coordinator@3", plan: coordinated)
        }
        let bad = try await CLI.run(["drill", CLI.plan("switchover"), "--faults", "kill-primary@zero"])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--faults kill-primary@zero"))
    }

    @Test func ledgerMath() {
        let e: [Ledger.Entry] = [
            .init(id: 1, writer: 0, sentAt: 0.0, at: 0.1, acknowledged: true, port: 1),
            .init(id: 2, writer: 0, sentAt: 0.1, at: 0.2, acknowledged: true, port: 1),
            .init(id: 3, writer: 0, sentAt: 0.2, at: 1.4, acknowledged: false, port: 1),
            .init(id: 4, writer: 0, sentAt: 1.4, at: 1.5, acknowledged: true, port: 2),
        ]
        let ledger = Ledger(entries: e)
        #expect(DrillMath.lost(ledger: ledger, present: [1, 3, 4]) == [2])
        #expect(DrillMath.unknownOutcomeCommitted(ledger: ledger, present: [1, 3, 4]) == 1)
        #expect(abs(DrillMath.longestGap(ledger: ledger, from: 0.3, to: 1.0) - 1.3) < 1e-9)
        #expect(DrillMath.firstWrite(ledger: ledger, start: 0.3, after: 0.3, port: 2).map { abs($0 - 1.2) < 1e-9 } == true)
        #expect(DrillMath.histogram(ledger: ledger, width: 0.5, end: 2) == [2, 0, 0, 1])
    }
}
