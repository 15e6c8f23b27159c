import Foundation
import GRDB
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// Fleet runs rehearsed against the simulated driver with the real `failoverd` executable: the order, the
/// concurrency bound, the brake, kill -9 at any member's step then `fleet resume`, the fleet lock, and a
/// member handled alone through its own state directory.
@Suite struct FleetRehearsalTests {
    /// The shipped example in a fresh directory, with `edit` applied to its fleet file.
    static func fleet(_ edit: (inout [String: Any]) -> Void = { _ in }) throws -> (FleetFiles, String) {
        let files = try FleetFiles()
        var fleet = try FleetFiles.example()
        edit(&fleet)
        return (files, try files.write(fleet))
    }

    static func memberState(_ state: String, _ member: String) -> String {
        FleetPaths(stateDirectory: state, fleet: "evacuate-dc1").member(member)
    }

    /// Each simulated server's running state, recovery, upstream and timeline, per member.
    static func servers(_ state: String) throws -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        for m in FleetFiles.members {
            let w = try SimulatedDriver.load(memberState(state, m) + "/simulation.json")
            out[m] = w.nodes.mapValues {
                "running=\($0.running) standby=\($0.standbySignal) upstream=\($0.upstream ?? "-") timeline=\($0.timeline)"
            }
        }
        return out
    }

    /// Each member's recorded roles.
    static func roles(_ state: String) throws -> [String: [String: Role]] {
        var out: [String: [String: Role]] = [:]
        for m in FleetFiles.members { out[m] = try Journal(stateDirectory: memberState(state, m)).recordedRoles() }
        return out
    }

    /// The example fleet run without interruption: the roles and servers every interrupted run must end with.
    /// One run, shared by every test of the suite.
    static let uninterruptedRun = Task { () throws -> (roles: [String: [String: Role]], servers: [String: [String: String]]) in
        let (files, path) = try fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let r = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state])
        guard r.status == 0 else { throw FailoverError.failed("the uninterrupted fleet run failed: \(r.stdout) \(r.stderr)") }
        return (try roles(state), try servers(state))
    }
    static var uninterrupted: (roles: [String: [String: Role]], servers: [String: [String: String]]) {
        get async throws { try await uninterruptedRun.value }
    }

    @Test func membersRunInOrderUnderTheConcurrencyBound() async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let r = try await CLI.run(["fleet", "run", path, "--simulate", "--state", state])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        // One line per member as it changes, with the overall count.
        #expect(r.stdout.contains("billing   waiting: waits for auth  | 0/6 done, 0 running, 6 waiting"), "\(r.stdout)")
        #expect(r.stdout.contains("running step 5/11 wait until dc2-0 has replayed dc1-0's shutdown checkpoint"))
        #expect(r.stdout.contains("| 6/6 done, 0 running, 0 waiting"))
        var intervals: [String: (Date, Date)] = [:]
        for m in FleetFiles.members {
            let run = try #require(try Journal(stateDirectory: Self.memberState(state, m)).lastRun())
            #expect(run.outcome == .succeeded)
            intervals[m] = (try #require(Journal.date(run.startedAt)), try #require(run.endedAt.flatMap(Journal.date)))
        }
        #expect(intervals["billing"]!.0 >= intervals["auth"]!.1, "billing started before auth ended")
        // At every member's start, at most `concurrency` runs were under way (that one included), and more
        // than one was at some point: the bound is used and kept.
        let overlaps = intervals.values.map { run in intervals.values.filter { $0.0 <= run.0 && run.0 < $0.1 }.count }
        #expect(overlaps.max()! <= 4)
        #expect(overlaps.max()! >= 2)
        #expect(try await Self.roles(state) == Self.uninterrupted.roles)
        for m in FleetFiles.members {
            let plan = try PlanLoader.load(files.directory + "/members/\(m).json")
            #expect(try Self.roles(state)[m] == Planner(plan: plan).finalRoles().get())
        }
        let status = try await CLI.run(["fleet", "status", "--json", "--state", state])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect((json["counts"] as? [String: Int]) == ["succeeded": 6])
        #expect(((json["fleetRun"] as? [String: Any])?["outcome"]) as? String == "succeeded")
    }

    /// A member's first step, a stop (3) and a promote (7) of a switchover, its last step, a failover's
    /// promote, a member that waits for another, and a start.
    static let crashPoints = [
        "auth:1:before", "auth:3:after", "auth:7:before", "auth:11:after", "search:4:after", "billing:1:before", "ledger:9:after",
    ]

    @Test(
        "kill -9 of the fleet process at a member's step, then fleet resume: where an uninterrupted fleet run ends", arguments: crashPoints)
    func killNineThenResume(at point: String) async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let crashed = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state, "--crash-at", point])
        #expect(crashed.killedBySignal && crashed.status == SIGKILL, "expected SIGKILL at \(point): \(crashed.status) \(crashed.stderr)")
        let status = try await CLI.run(["fleet", "status", "--state", state])
        #expect(status.stdout.contains("interrupted"), "\(status.stdout)")
        #expect(status.stdout.contains("continue with: failoverd fleet resume evacuate-dc1 --state \(state)"))
        // A new fleet run refuses and names the resume command.
        let again = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state])
        #expect(again.status == 3 && again.stderr.contains("is unfinished (interrupted); continue it with: failoverd fleet resume"))
        let resumed = try await CLI.run(["fleet", "resume", "--quiet", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stdout) \(resumed.stderr)")
        #expect(try await Self.roles(state) == Self.uninterrupted.roles)
        #expect(try await Self.servers(state) == Self.uninterrupted.servers)
        // No step of any member was done twice, and each member has one run.
        for m in FleetFiles.members {
            let journal = try Journal(stateDirectory: Self.memberState(state, m))
            let doneTwice = try await journal.db.read { db in
                try Int.fetchOne(
                    db,
                    sql:
                        "SELECT count(*) FROM (SELECT run_id, step FROM step_events WHERE status IN ('done','satisfied') GROUP BY run_id, step HAVING count(*) > 1)"
                )
            }
            #expect(doneTwice == 0, "\(m): a step was done twice")
            #expect(try await journal.db.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM runs") } == 1, "\(m)")
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    @Test func theBrakeStopsNewStartsAndSaysWhy() async throws {
        let (files, path) = try Self.fleet { $0["concurrency"] = 1 }
        defer { files.remove() }
        let state = files.directory + "/state"
        // auth's journal records dc2 as its primary (it was moved alone), so its member plan is stale: refused.
        let alone = try await CLI.run([
            "run", files.directory + "/members/auth.json", "--simulate", "--quiet", "--state", Self.memberState(state, "auth"),
        ])
        #expect(alone.status == 0, "\(alone.stderr)")
        let r = try await CLI.run(["fleet", "run", path, "--simulate", "--state", state])
        #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
        #expect(
            r.stdout.contains("auth      refused: site \"dc1\": the plan declares primary but the journal records streaming-standby"),
            "\(r.stdout)")
        #expect(r.stdout.contains("brake engaged: 1 member failed or refused (auth refused); brake 1: no new member starts"))
        for m in FleetFiles.members.dropFirst() {
            #expect(
                r.stdout.contains(
                    "\(m.padding(toLength: 8, withPad: " ", startingAt: 0))  skipped: skipped by the brake: 1 member failed or refused (auth refused)"
                ), "\(m)")
            #expect(!FileManager.default.fileExists(atPath: Self.memberState(state, m) + "/journal.sqlite"), "\(m) was started")
        }
        // Nothing was changed by the fleet: it is closed as refused, and there is nothing to resume.
        #expect(r.stdout.contains("run f-") && r.stdout.contains(" refused: 1 refused, 5 skipped of 6"), "\(r.stdout)")
        let resume = try await CLI.run(["fleet", "resume", "evacuate-dc1", "--state", state])
        #expect(resume.status == 2 && resume.stderr.contains("is refused; there is nothing to resume"), "\(resume.stderr)")
    }

    @Test func aMemberWaitingForARefusedOneIsSkippedAndTheOthersFinish() async throws {
        let (files, path) = try Self.fleet { $0["brake"] = 3 }
        defer { files.remove() }
        let state = files.directory + "/state"
        let alone = try await CLI.run([
            "run", files.directory + "/members/auth.json", "--simulate", "--quiet", "--state", Self.memberState(state, "auth"),
        ])
        #expect(alone.status == 0, "\(alone.stderr)")
        let r = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state])
        #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("skipped: waits for auth, which refused"), "\(r.stdout)")
        #expect(r.stdout.contains(" failed: 4 done, 1 refused, 1 skipped of 6"), "\(r.stdout)")
    }

    @Test func aMemberAloneThroughItsOwnStateDirectory() async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let crashed = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state, "--crash-at", "orders:6:before"])
        #expect(crashed.killedBySignal)
        let member = Self.memberState(state, "orders")
        let status = try await CLI.run(["status", "--state", member])
        #expect(status.status == 0 && status.stdout.contains("plan \"fleet-dc1-orders\" running"), "\(status.stdout)")
        // The member resumed alone, outside the fleet; the fleet then finds it done and finishes the others.
        let alone = try await CLI.run(["resume", "--quiet", "--state", member])
        #expect(alone.status == 0, "\(alone.stderr)")
        let resumed = try await CLI.run(["fleet", "resume", "--state", state])
        #expect(resumed.status == 0, "\(resumed.stdout) \(resumed.stderr)")
        #expect(!resumed.stdout.contains("orders    running"), "\(resumed.stdout)")
        #expect(try await Self.roles(state) == Self.uninterrupted.roles)
    }

    @Test func abandonGivesUpEveryUnfinishedMemberRun() async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let crashed = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state, "--crash-at", "auth:4:after"])
        #expect(crashed.killedBySignal)
        let unfinished = try FleetFiles.members.filter { m in
            let dir = Self.memberState(state, m)
            guard FileManager.default.fileExists(atPath: dir + "/journal.sqlite") else { return false }
            return try Journal(stateDirectory: dir).unfinishedRun() != nil
        }
        #expect(unfinished.contains("auth"))
        let r = try await CLI.run(["fleet", "abandon", "evacuate-dc1", "--reason", "test", "--state", state])
        #expect(r.status == 0, "\(r.stderr)")
        for m in unfinished {
            let run = try #require(try Journal(stateDirectory: Self.memberState(state, m)).lastRun())
            #expect(run.outcome == .abandoned, "\(m)")
            #expect(r.stdout.contains("\(m): \(run.id)"))
        }
        let status = try await CLI.run(["fleet", "status", "--json", "--state", state])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect(((json["fleetRun"] as? [String: Any])?["outcome"]) as? String == "abandoned")
        let again = try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state])
        #expect(!again.stderr.contains("is unfinished"), "\(again.stderr)")
    }

    /// Writes a live holder (a `sleep` process of this test) into the fleet lock of `state`'s example fleet.
    static func holdLock(state: String) throws -> ChildProcess {
        let sleeper = try ChildProcess.start(
            "/bin/sleep", ["sleep", "120"], environment: ["PATH=" + CommandRunner.searchPath], workingDirectory: "/",
            commandLine: "sleep 120")
        let store = try FleetStore(paths: FleetPaths(stateDirectory: state, fleet: "evacuate-dc1"), create: false)
        let start = try #require(ProcessIdentity.of(sleeper.pid)?.startTime)
        try store.db.write { db in
            try db.execute(
                sql: "UPDATE fleet_lock SET fleet_run = 'f-held', pid = ?, host = ?, pid_start_time = ?, acquired_at = ?, renewed_at = ?",
                arguments: [sleeper.pid, RunLock.host, start, Journal.now(), Journal.now()])
        }
        return sleeper
    }

    @Test func aRunningFleetIsNotStartedTwiceNorIsItsClusterDrivenByAnotherFleet() async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        #expect(try await CLI.run(["fleet", "run", path, "--simulate", "--quiet", "--state", state]).status == 0)
        let sleeper = try Self.holdLock(state: state)
        defer { sleeper.signal(SIGKILL) }
        for args in [["fleet", "run", path, "--simulate"], ["fleet", "resume", "evacuate-dc1"], ["fleet", "abandon", "evacuate-dc1"]] {
            let r = try await CLI.run(args + ["--quiet", "--state", state].filter { args[1] != "abandon" || $0 != "--quiet" })
            if args[1] == "abandon" {
                #expect(r.status == 2, "\(r.stderr)")  // a succeeded fleet run has nothing to abandon
            } else {
                #expect(r.status == 4, "\(args): \(r.stdout) \(r.stderr)")
                #expect(r.stderr.contains("fleet \"evacuate-dc1\" is already running: fleet run f-held, pid \(sleeper.pid)"))
            }
        }
        // Another fleet with one of these clusters among its members is refused while this one runs.
        var other = try FleetFiles.example()
        other["name"] = "evacuate-again"
        other["members"] = [["name": "orders-again", "plan": "members/orders.json"]]
        other["order"] = nil
        let otherPath = try files.write(other, "other")
        let r = try await CLI.run(["fleet", "run", otherPath, "--simulate", "--quiet", "--state", state])
        #expect(r.status == 4, "\(r.stdout) \(r.stderr)")
        #expect(
            r.stderr.contains(
                "member \"orders-again\" of fleet \"evacuate-again\" shares a cluster with member \"orders\" of fleet \"evacuate-dc1\""),
            "\(r.stderr)")
    }

    @Test func fleetPlanNumbersEveryMembersStepsWithoutASideEffect() async throws {
        let (files, path) = try Self.fleet()
        defer { files.remove() }
        let state = files.directory + "/state"
        let r = try await CLI.run(["fleet", "plan", path, "--offline", "--state", state])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("member billing (plan \"fleet-dc1-billing\", members/billing.json), starts after auth is done"))
        #expect(r.stdout.contains("    1   gate-switchover"))
        #expect(r.stdout.contains("    6   record-roles"))  // search's failover: 6 steps, numbered in its own run
        #expect(!FileManager.default.fileExists(atPath: state))
        let json = try await CLI.run(["fleet", "plan", path, "--offline", "--json", "--state", state])
        let report = try JSONDecoder().decode(FleetPlanReport.self, from: Data(json.stdout.utf8))
        #expect(report.members.map(\.member) == FleetFiles.members)
        #expect(report.members.allSatisfy { $0.steps.first?.number == 1 && $0.gate == nil })
    }
}
