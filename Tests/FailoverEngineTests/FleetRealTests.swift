import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

extension SandboxFixture {
    /// Builds `count` sandboxes of `layout`, one after the other, runs `body` with all of them, and tears
    /// every one down on every path.
    static func withMany(_ count: Int, _ layout: [SiteLayout], _ body: ([SandboxFixture]) async throws -> Void) async throws {
        func nest(_ built: [SandboxFixture]) async throws {
            guard built.count < count else { return try await body(built) }
            try await with(layout) { fx in try await nest(built + [fx]) }
        }
        try await nest([])
    }
}

/// Four two-instance clusters (prod primary, dr streaming standby) built once for a suite: sandboxes cost
/// seconds each, and every test of the suite moves each cluster to its other site, wherever it stands.
struct FourClusters: SuiteTrait, TestScoping {
    @TaskLocal static var current: [SandboxFixture] = []

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await SandboxFixture.withMany(4, SiteLayout.prodAndDR) { clusters in
            try await Self.$current.withValue(clusters) { try await function() }
        }
    }
}

extension Trait where Self == FourClusters {
    /// The suite's four clusters, in ``FourClusters/current``.
    static var fourClusters: Self { FourClusters() }
}

/// Fleets of real PostgreSQL clusters: order and roles, a failed member and the brake then resume after the
/// fix, and kill -9 of the fleet process while two members are mid-run.
@Suite(.serialized, .fourClusters) struct FleetRealTests {
    /// One cluster as a fleet member: its plan moves it from the site that is primary now to the other.
    struct Member {
        var name: String
        var fixture: SandboxFixture
        var plan: String
        var primary: Instance
        var target: Instance
        var expected: [String: Role]
        /// The rows it holds before the fleet run (table t).
        var rows: Int
    }

    /// Member plans for every cluster (named c0…c3), each switching over to its other site, and rows written on each.
    static func members(_ test: String) async throws -> [Member] {
        var members: [Member] = []
        for (i, fx) in FourClusters.current.enumerated() {
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            let prodIsPrimary = try await fx.driver.status(of: prod).isWritablePrimary
            let (primary, target) = prodIsPrimary ? (prod, dr) : (dr, prod)
            let (from, to) = prodIsPrimary ? ("prod", "dr") : ("dr", "prod")
            let plan = try fx.planFile(
                "\(test)-c\(i)", [Transition(action: .switchover, to: to)], roles: [from: .primary, to: .streamingStandby])
            try await fx.sql(primary, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, note text)")
            let before = Int(try await fx.sql(primary, "SELECT count(*) FROM t").first?.first.flatMap { $0 } ?? "0") ?? 0
            try await fx.insertRows((before + 1)...(before + 10), on: primary)
            try await fx.waitForStreaming(target, from: primary)
            try await fx.waitForRow(before + 10, on: target)
            members.append(
                Member(
                    name: "c\(i)", fixture: fx, plan: plan, primary: primary, target: target,
                    expected: try Planner(plan: PlanLoader.load(plan)).finalRoles().get(), rows: before + 10))
        }
        return members
    }

    /// Writes a fleet file of `members` in a fresh directory.
    static func fleetFile(
        _ name: String, _ members: [Member], concurrency: Int, brake: Int = 1, after: [String: [String]] = [:]
    ) throws -> (directory: String, path: String) {
        let directory = CLI.tempDirectory("failoverd-fleet-real")
        var fleet: [String: Any] = [
            "version": 1, "name": name, "concurrency": concurrency, "brake": brake,
            "members": members.map { ["name": $0.name, "plan": $0.plan] },
        ]
        if !after.isEmpty { fleet["order"] = ["after": after] }
        let path = directory + "/fleet.json"
        try JSONSerialization.data(withJSONObject: fleet, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
        return (directory, path)
    }

    static func memberState(_ state: String, _ fleet: String, _ member: String) -> String {
        FleetPaths(stateDirectory: state, fleet: fleet).member(member)
    }

    /// Every member ended as planned: its journal's roles, its new primary takes writes and has every row,
    /// and its old primary streams from it with every row.
    static func expectPlanned(_ members: [Member], state: String, fleet: String) async throws {
        for m in members {
            let journal = try Journal(stateDirectory: memberState(state, fleet, m.name))
            #expect(try journal.recordedRoles() == m.expected, "\(m.name)")
            let fx = m.fixture
            try await fx.insertRows((m.rows + 1)...(m.rows + 1), on: m.target)
            #expect(try await fx.sql(m.target, "SELECT count(*) FROM t").first?.first == String(m.rows + 1), "\(m.name)")
            try await fx.waitForStreaming(m.primary, from: m.target)
            try await fx.waitForRow(m.rows + 1, on: m.primary)
            #expect(try await fx.sql(m.primary, "SELECT count(*) FROM t").first?.first == String(m.rows + 1), "\(m.name)")
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    /// Waits until the fleet process has printed a line matching `pattern`.
    static func waitForLine(_ process: CLI.Running, _ pattern: String, _ what: String) async throws {
        let regex = try NSRegularExpression(pattern: pattern, options: [.anchorsMatchLines])
        _ = try await Poll.until(what, timeout: 120, interval: 0.05) { () -> Bool? in
            let text = process.outputSoFar()
            return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil ? true : nil
        }
    }

    /// The step of a switchover that waits for the target to replay the old primary's shutdown checkpoint.
    static func awaitReplayStep(_ m: Member) throws -> Int {
        try #require(try Planner(plan: PlanLoader.load(m.plan)).steps().get().first { $0.kind == .awaitReplay }?.number)
    }

    /// Pauses replay on `a`'s and `b`'s targets, starts `fleet run` (concurrency 2: a and b start first),
    /// and waits until both wait at await-replay, their old primaries stopped: two members mid-run.
    /// - Returns: the running fleet process and the await-replay step's number.
    static func startWithTwoMembersWaiting(_ a: Member, _ b: Member, path: String, state: String) async throws -> (CLI.Running, Int) {
        let step = try awaitReplayStep(a)
        try await pauseReplay(a)
        try await pauseReplay(b)
        let fleet = try CLI.start(["fleet", "run", path, "--state", state])
        try await waitForLine(fleet, "\\] \(a.name) +running step \(step)/", "\(a.name) at await-replay")
        try await waitForLine(fleet, "\\] \(b.name) +running step \(step)/", "\(b.name) at await-replay")
        return (fleet, step)
    }

    static func pauseReplay(_ m: Member) async throws {
        try await m.fixture.sql(m.target, "SELECT pg_wal_replay_pause()")
    }

    static func resumeReplay(_ m: Member) async throws {
        try await m.fixture.sql(m.target, "SELECT pg_wal_replay_resume()")
    }

    @Test func fourMembersTwoAtATimeOneAfterAnother() async throws {
        let members = try await Self.members("order")
        let (directory, path) = try Self.fleetFile("order", members, concurrency: 2, after: ["c3": ["c0"]])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = directory + "/state"

        // fleet plan: every member's first gate would pass now, with its lag; nothing is written.
        let plan = try await CLI.run(["fleet", "plan", path, "--json", "--state", state])
        #expect(plan.status == 0, "\(plan.stdout) \(plan.stderr)")
        let report = try JSONDecoder().decode(FleetPlanReport.self, from: Data(plan.stdout.utf8))
        for m in report.members {
            #expect(m.gate == "proceed", "\(m.member): \(m.gateMessage ?? "") \(m.problems)")
            #expect(m.lagBytes != nil && m.lagSeconds != nil && m.target == members.first { $0.name == m.member }?.target.name)
        }
        #expect(!FileManager.default.fileExists(atPath: state))

        let r = try await CLI.run(["fleet", "run", path, "--state", state])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        var runs: [String: (Date, Date)] = [:]
        for m in members {
            let run = try #require(try Journal(stateDirectory: Self.memberState(state, "order", m.name)).lastRun())
            runs[m.name] = (try #require(Journal.date(run.startedAt)), try #require(run.endedAt.flatMap(Journal.date)))
        }
        #expect(runs["c3"]!.0 >= runs["c0"]!.1, "c3 started before c0, which it waits for, ended")
        let overlaps = runs.values.map { run in runs.values.filter { $0.0 <= run.0 && run.0 < $0.1 }.count }
        #expect(overlaps.max() == 2, "at most 2 members at once, and 2 at some point: \(overlaps)")
        try await Self.expectPlanned(members, state: state, fleet: "order")
    }

    @Test func aFailedMemberEngagesTheBrakeAndResumeAfterTheFixFinishesTheFleet() async throws {
        let members = try await Self.members("brake")
        let (directory, path) = try Self.fleetFile("brake", members, concurrency: 2)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = directory + "/state"
        let (a, b) = (members[0], members[1])
        // c0 and c1 start together and wait at await-replay, their targets paused; then c0's target dies.
        let (fleet, step) = try await Self.startWithTwoMembersWaiting(a, b, path: path, state: state)
        // Unreachable: its postmaster stopped by SIGSTOP, so connections to it time out.
        let pid = try #require(Postmaster.livePID(in: a.target.dataDirectory))
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        try await Self.waitForLine(fleet, "\\] c0 +failed: ", "c0 to fail")
        try await Self.waitForLine(fleet, "\\] fleet +brake engaged", "the brake")
        // c1, already running, is not stopped by c0's failure: it finishes once its target replays again.
        try await Self.resumeReplay(b)
        let r = await fleet.wait()
        #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
        #expect(
            r.stdout.contains("c0        failed: step \(step) (wait until \(a.target.name) has replayed")
                && r.stdout.contains("is no longer a running standby (running but not answering SQL"), "\(r.stdout)")
        #expect(
            r.stdout.contains(
                "brake engaged: 1 member failed or refused (c0 failed); brake 1: no new member starts; 1 running member finishes its run, 2 waiting members will be skipped"
            ), "\(r.stdout)")
        #expect(r.stdout.contains("c1        done"))
        for skipped in ["c2", "c3"] {
            #expect(r.stdout.contains("\(skipped)        skipped: skipped by the brake"), "\(skipped)")
            #expect(!FileManager.default.fileExists(atPath: Self.memberState(state, "brake", skipped) + "/journal.sqlite"))
        }
        // The summary names the failed member and why, and how to continue.
        #expect(r.stdout.contains("  c0       failed"))
        #expect(r.stdout.contains("continue with: failoverd fleet resume brake --state \(state)"))
        let status = try await CLI.run(["fleet", "status", "brake", "--state", state])
        #expect(status.stdout.contains("c0       failed") && status.stdout.contains("c2       skipped"), "\(status.stdout)")

        // The fix: c0's target answers and replays again; resume finishes c0 and starts c2 and c3.
        kill(pid, SIGCONT)
        try await Self.resumeReplay(a)
        let resumed = try await CLI.run(["fleet", "resume", "brake", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stdout) \(resumed.stderr)")
        #expect(resumed.stdout.contains("c0        resuming run r-"), "\(resumed.stdout)")
        try await Self.expectPlanned(members, state: state, fleet: "brake")
    }

    @Test func killNineWhileTwoMembersAreMidRunThenResume() async throws {
        let members = try await Self.members("kill")
        let (directory, path) = try Self.fleetFile("kill", members, concurrency: 2)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let state = directory + "/state"
        let (a, b) = (members[0], members[1])
        let (fleet, _) = try await Self.startWithTwoMembersWaiting(a, b, path: path, state: state)
        fleet.signal(SIGKILL)
        let killed = await fleet.wait()
        #expect(killed.killedBySignal && killed.status == SIGKILL)
        let status = try await CLI.run(["fleet", "status", "kill", "--state", state])
        #expect(status.stdout.contains("c0       interrupted") && status.stdout.contains("c1       interrupted"), "\(status.stdout)")
        try await Self.resumeReplay(a)
        try await Self.resumeReplay(b)
        let resumed = try await CLI.run(["fleet", "resume", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stdout) \(resumed.stderr)")
        try await Self.expectPlanned(members, state: state, fleet: "kill")
        // One run per member, and every step that changes a server acted once: journaled started once.
        for m in members {
            let journal = try Journal(stateDirectory: Self.memberState(state, "kill", m.name))
            let runCount = try await journal.db.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM runs") }
            #expect(runCount == 1, "\(m.name)")
            let run = try #require(try journal.lastRun())
            for s in try journal.steps(of: run.id) where s.step.destructive || s.step.kind.changesServer {
                #expect(s.status.isFinished, "\(m.name) step \(s.step.number)")
                #expect(s.attempts <= 1, "\(m.name) step \(s.step.number) (\(s.step.summary)) started \(s.attempts) times")
            }
        }
    }
}
