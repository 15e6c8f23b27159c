import Foundation
import GRDB
import Testing

@_spi(JournalDatabase) @testable import FailoverEngine

/// kill -9 at any step, then resume, ends where an uninterrupted run ends. Real processes: the engine
/// SIGKILLs itself through the fault switch.
@Suite struct CrashResumeTests {
    static let planName = "failback-with-rewind"

    static let stepCount: Int = {
        let plan = try! PlanLoader.load(CLI.plan(planName))
        return try! Planner(plan: plan).steps().get().count
    }()

    static let uninterrupted: (roles: [String: String], servers: [String: String]) = {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try! CLI.run(["run", CLI.plan(planName), "--simulate", "--quiet", "--state", state])
        precondition(r.status == 0, r.stderr)
        return (try! CLI.roles(state: state), servers(state: state))
    }()
    static var uninterruptedRoles: [String: String] { uninterrupted.roles }

    /// Each simulated server's running state, recovery, upstream and timeline.
    static func servers(state: String) -> [String: String] {
        let w = try! SimulatedDriver.load(state + "/simulation.json")
        return w.nodes.mapValues {
            "running=\($0.running) standby=\($0.standbySignal) upstream=\($0.upstream ?? "-") timeline=\($0.timeline)"
        }
    }

    static var crashPoints: [String] {
        (1...stepCount).flatMap { ["\($0):before", "\($0):after"] }
    }

    @Test("kill -9 at a step, resume, same roles, no step done twice", arguments: crashPoints)
    func crashAndResume(at point: String) async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }

        let crashed = try CLI.run(["run", CLI.plan(Self.planName), "--simulate", "--quiet", "--state", state, "--crash-at", point])
        #expect(
            crashed.killedBySignal && crashed.status == SIGKILL,
            "expected SIGKILL at \(point), got status \(crashed.status): \(crashed.stderr)")

        // The journal says where it stopped: the step is in doubt (started, not done), or, for a step
        // whose check found it already satisfied, pending (before) or satisfied (after).
        let journal = try Journal(stateDirectory: state)
        let n = Int(point.split(separator: ":")[0])!
        let run = try #require(try journal.unfinishedRun())
        let stopped = try #require(try journal.steps(of: run.id).first { $0.step.number == n })
        #expect([StepStatus.started, .pending, .satisfied].contains(stopped.status))
        #expect(stopped.status != .pending || point.hasSuffix(":before"))
        #expect(try journal.steps(of: run.id).filter { $0.step.number > n }.allSatisfy { $0.status == .pending })

        // A new run refuses and names the resume command.
        let refused = try CLI.run(["run", CLI.plan(Self.planName), "--simulate", "--quiet", "--state", state])
        #expect(refused.status == 3)
        #expect(refused.stderr.contains("failoverd resume \(run.id)"))

        let resumed = try CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 0, "resume after \(point) failed: \(resumed.stderr)")
        #expect(try CLI.roles(state: state) == Self.uninterruptedRoles)
        #expect(Self.servers(state: state) == Self.uninterrupted.servers)

        let doubleDone = try await journal.db.read { db in
            try Int.fetchOne(
                db,
                sql: "SELECT count(*) FROM (SELECT step FROM step_events WHERE status = 'done' GROUP BY run_id, step HAVING count(*) > 1)")
        }
        #expect(doubleDone == 0)
        let notFinished = try await journal.db.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM steps WHERE status NOT IN ('done','satisfied')")
        }
        #expect(notFinished == 0)
        // The takeover of the dead run's lock raised the fencing epoch, recorded on later rows.
        let epochs = try await journal.db.read { db in try Int64.fetchAll(db, sql: "SELECT DISTINCT epoch FROM step_events ORDER BY epoch")
        }
        #expect(epochs == [0, 1])
        #expect(try await AuditLog(journal: journal).verify().intact)
    }

    @Test("a resume killed in turn is resumed again")
    func crashDuringResume() throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let first = try CLI.run(["run", CLI.plan(Self.planName), "--simulate", "--quiet", "--state", state, "--crash-at", "3:after"])
        #expect(first.killedBySignal)
        let second = try CLI.run(["resume", "--quiet", "--state", state, "--crash-at", "14:before"])
        #expect(second.killedBySignal)
        let third = try CLI.run(["resume", "--quiet", "--state", state])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(try CLI.roles(state: state) == Self.uninterruptedRoles)
        let status = try CLI.run(["status", "--json", "--state", state])
        #expect(status.stdout.contains("\"epoch\" : 2"))
    }

    @Test("--crash-at with a bad value is invalid input and changes nothing")
    func badCrashPoint() throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try CLI.run(["run", CLI.plan(Self.planName), "--simulate", "--state", state, "--crash-at", "3:during"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--crash-at 3:during"))
        #expect(!FileManager.default.fileExists(atPath: state + "/journal.sqlite"))
    }
}
