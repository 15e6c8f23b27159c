import Foundation
import GRDB
import Testing

@testable import FailoverEngine

/// One run per state directory, with two real processes; a dead holder's lock is taken over and the
/// fencing epoch increases.
@Suite struct RunLockTests {
    /// A copy of a shipped plan whose failback waits (maxLagBytes 0 never holds while the primary writes),
    /// so the first process stays alive holding the lock. Its step timeout is an hour: the test kills it, so
    /// the holder's own deadline only has to outlast the test, however loaded the machine.
    func waitingPlan(in dir: String) throws -> String {
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: CLI.plan("failback-with-rewind"))))
            as! [String: Any]
        json["policy"] = ["maxLagBytes": 0, "stepTimeoutSeconds": 3600, "archiveTimeoutSeconds": 2]
        let path = dir + "/waiting.json"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func secondRunExitsFourNamingTheHolderThenTakesOverWhenItDies() async throws {
        let state = CLI.tempDirectory("failoverd-lock")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let plan = try waitingPlan(in: state)
        let holder = try CLI.start(["run", plan, "--simulate", "--state", state])
        defer { holder.signal(SIGKILL) }
        // Wait by condition: the holder is past step 11, on its way to the catch-up wait (the step count
        // depends on the plan: failback-with-rewind gained a step with the lost-transactions capture).
        let reached = try await Wait.until(timeout: 30, interval: 0.05) { holder.outputSoFar().contains("[11/") ? true : nil }
        #expect(reached == true)

        let second = try await CLI.run(["run", plan, "--simulate", "--state", state])
        #expect(second.status == 4)
        #expect(second.stderr.contains("pid \(holder.pid)"))
        #expect(second.stderr.contains(ProcessInfo.processInfo.hostName))
        #expect(second.stderr.contains("since 20"))
        let resume = try await CLI.run(["resume", "--state", state])
        #expect(resume.status == 4)

        holder.signal(SIGKILL)
        _ = await holder.wait()
        let journal = try Journal(stateDirectory: state)
        let run = try #require(try journal.unfinishedRun())
        let abandon = try await CLI.run(["abandon", run.id, "--state", state, "--reason", "lock test"])
        #expect(abandon.status == 0, "\(abandon.stderr)")
        let status = try StatusReport.read(stateDirectory: state)
        #expect(status.epoch == 1)
        #expect(status.lock == nil)
        let takeovers = try AuditLog(journal: journal).query(.init(kind: .lockTakeover))
        #expect(takeovers.count == 1)
        #expect(takeovers.first?.details.contains("\"previousPid\":\"\(holder.pid)\"") == true)
        #expect(try AuditLog(journal: journal).query(.init(kind: .abandon)).count == 1)
    }

    @Test func leaseDecidesForAHolderOnAnotherHost() throws {
        let state = CLI.tempDirectory("failoverd-lease")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let journal = try Journal(stateDirectory: state)
        let lock = RunLock(journal: journal, leaseSeconds: 30)
        try journal.db.write { db in
            try db.execute(
                sql:
                    "UPDATE run_lock SET run_id = 'r-remote', pid = 1, host = 'other-host', acquired_at = ?, renewed_at = ?, lease_seconds = 30",
                arguments: [Journal.now(), Journal.now()])
        }
        expectFailure(.lockHeld, "another failoverd run holds this state directory: run r-remote") {
            _ = try lock.acquire(runID: "r-local")
        }
        try journal.db.write { db in
            try db.execute(sql: "UPDATE run_lock SET renewed_at = ?", arguments: [Journal.timestamp(Date().addingTimeInterval(-120))])
        }
        let holder = try lock.acquire(runID: "r-local")
        #expect(holder.tookOver)
        #expect(holder.epoch == 1)
        try lock.verify(holder)
        // Someone else takes it over: this holder is fenced out of destructive steps.
        try journal.db.write { db in try db.execute(sql: "UPDATE run_lock SET epoch = 2, pid = 2") }
        expectFailure(.refused, "run r-local lost the run lock (epoch 1)") { try lock.verify(holder) }
    }
}
