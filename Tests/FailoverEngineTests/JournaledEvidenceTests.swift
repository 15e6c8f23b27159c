import Foundation
import Testing

@testable import FailoverEngine

/// Evidence is decoded once, where it leaves the journal: a row that does not decode stops a resume with
/// an error naming the run, the step, its kind and the field, and never passes for absent or empty evidence;
/// an outcome or an audit kind this failoverd does not know is reported, not crashed on. Each test works on
/// a copy of the journal main wrote at 54e04ac (Tests/Fixtures/journal-main-54e04ac: steps 1–16 finished
/// with their evidence, step 17 in doubt), changed with the sqlite3 shell as someone tampering by hand would.
@Suite struct JournaledEvidenceTests {
    static let runID = JournalFixtureTests.runID

    /// A copy of the fixture with `sql` applied to its journal.
    func tampered(_ sql: String) async throws -> String {
        let state = CLI.tempDirectory("failoverd-evidence")
        for file in ["journal.sqlite", "simulation.json"] {
            try FileManager.default.copyItem(atPath: JournalFixtureTests.fixture + "/" + file, toPath: state + "/" + file)
        }
        try await CLI.sqlite3(state + "/journal.sqlite", sql)
        return state
    }

    /// The steps' statuses and attempts, to prove a refused resume changed none.
    func progress(_ state: String) throws -> [String] {
        try Journal(stateDirectory: state).steps(of: Self.runID).map { "\($0.step.number) \($0.status) \($0.attempts)" }
    }

    @Test("a demotion token whose checkpoint is not an LSN stops the resume, naming the step and the field")
    func malformedTokenStopsResume() async throws {
        // Step 16 journaled dr-0's demotion token; step 17 (await-replay, in doubt) proves it again.
        let state = try await tampered(
            "UPDATE steps SET evidence = json_set(evidence, '$.checkpointLSN', 'not-an-lsn') WHERE run_id = '\(Self.runID)' AND number = 16"
        )
        defer { try? FileManager.default.removeItem(atPath: state) }
        let before = try progress(state)
        let resumed = try await CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 1, "\(resumed.stdout) \(resumed.stderr)")
        #expect(resumed.stderr.contains("run \(Self.runID) step 16 (read-shutdown-checkpoint)"), "\(resumed.stderr)")
        #expect(resumed.stderr.contains("field checkpointLSN"), "\(resumed.stderr)")
        #expect(resumed.stderr.contains("failoverd abandon \(Self.runID)"), "\(resumed.stderr)")
        // Nothing proceeded: no step started, acted or was skipped, and the run was not reopened.
        #expect(try progress(state) == before)
        #expect(try Journal(stateDirectory: state).run(Self.runID)?.outcome == .running)
        #expect(try AuditLog(journal: Journal(stateDirectory: state)).query(.init(kind: .runResume)).isEmpty)
    }

    @Test("fence evidence with a malformed LSN is an error, not evidence taken for absent")
    func malformedFenceStopsResume() async throws {
        // The fence's evidence is read by the split-brain check and the WAL-loss estimate; before, a decode
        // failure there read as "no fence evidence" and the run went on.
        let state = try await tampered(
            "UPDATE steps SET evidence = json_set(evidence, '$.lastKnownLSN', '0/zz') WHERE run_id = '\(Self.runID)' AND number = 2")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let before = try progress(state)
        let resumed = try await CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 1, "\(resumed.stdout) \(resumed.stderr)")
        #expect(resumed.stderr.contains("run \(Self.runID) step 2 (fence)"), "\(resumed.stderr)")
        #expect(resumed.stderr.contains("field lastKnownLSN"), "\(resumed.stderr)")
        #expect(try progress(state) == before)
        // The typed read names the same step and field.
        let fence = try Journal(stateDirectory: state).steps(of: Self.runID)[1]
        let error = try #require(throws: FailoverError.self) { try fence.evidence(as: FenceEvidence.self) }
        #expect(error.code == .stepFailed && error.message.contains("step 2 (fence)") && error.message.contains("lastKnownLSN"))
    }

    @Test("evidence that is not a JSON object of strings is an error naming the step, never empty evidence")
    func evidenceNotTextStopsResume() async throws {
        // Before, such a row read back as empty evidence, in silence.
        // Step 5 switched WAL and journaled the segment.
        let state = try await tampered("UPDATE steps SET evidence = '{\"segment\":5}' WHERE run_id = '\(Self.runID)' AND number = 5")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let resumed = try await CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 1, "\(resumed.stdout) \(resumed.stderr)")
        #expect(resumed.stderr.contains("run \(Self.runID) step 5 (switch-wal)"), "\(resumed.stderr)")
        #expect(resumed.stderr.contains("not a JSON object of strings") && resumed.stderr.contains("segment"), "\(resumed.stderr)")
        #expect(try Journal(stateDirectory: state).run(Self.runID)?.outcome == .running)
    }

    @Test("evidence that cannot be journaled as text is an error naming the step and the field")
    func unencodableEvidence() throws {
        struct Nested: StepEvidence { var inner: [String: Int] }
        var step = Step(transition: 1, action: .switchover, site: "prod", .switchWAL(instance: "a"), summary: "switch WAL on a")
        step.number = 4
        let error = try #require(throws: FailoverError.self) {
            try Nested(inner: ["a": 1]).journalFields(run: "r-x", step: step)
        }
        #expect(error.code == .stepFailed)
        #expect(error.message.contains("run r-x step 4 (switch-wal)") && error.message.contains("field inner"), "\(error.message)")
    }

    @Test("a run outcome this failoverd does not know is reported, not crashed on")
    func unknownOutcome() async throws {
        let state = try await tampered(
            "PRAGMA ignore_check_constraints = ON; UPDATE runs SET outcome = 'paused' WHERE id = '\(Self.runID)'")
        defer { try? FileManager.default.removeItem(atPath: state) }
        for verb in [["status"], ["resume", "--quiet"], ["resume", Self.runID, "--quiet"]] {
            let r = try await CLI.run(verb + ["--state", state])
            #expect(r.status == 2, "\(verb): \(r.stdout) \(r.stderr)")
            #expect(r.stderr.contains("outcome \"paused\", which this failoverd does not know"), "\(verb): \(r.stderr)")
        }
        let status = try await CLI.run(["status", "--state", state])
        #expect(status.stderr.contains("run \(Self.runID)"), "\(status.stderr)")
        // audit verify reads the runs table as text: it names the outcome the log does not account for.
        let verify = try await CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 1 && !verify.killedBySignal, "\(verify.stdout) \(verify.stderr)")
        #expect(
            verify.stdout.contains("run \(Self.runID) is paused in the runs table, but the log has no run-end event for it"),
            "\(verify.stdout) \(verify.stderr)")
    }

    @Test("an audit kind this failoverd does not know is kept as written: it verifies and lists")
    func unknownAuditKind() async throws {
        let state = try await tampered("SELECT 1")
        defer { try? FileManager.default.removeItem(atPath: state) }
        // An event another version wrote, chained and hashed as that version would.
        let journal = try Journal(stateDirectory: state)
        let last = try #require(try AuditLog(journal: journal).query(.init(limit: 1)).last)
        var e = AuditEvent(
            seq: last.seq + 1, at: Journal.now(), runID: nil, site: nil, actor: "future@host", kind: "future-kind", details: "{}",
            prevHash: last.hash, hash: "")
        e.hash = e.expectedHash
        try await CLI.sqlite3(
            state + "/journal.sqlite",
            "INSERT INTO audit_events (seq, at, actor, kind, details, prev_hash, hash) VALUES (\(e.seq), '\(e.at)', '\(e.actor)', 'future-kind', '{}', '\(e.prevHash)', '\(e.hash)')"
        )
        let read = try #require(try AuditLog(journal: Journal(stateDirectory: state)).query(.init(kind: "future-kind")).first)
        #expect(read.kind == "future-kind" && read.knownKind == nil)
        let show = try await CLI.run(["audit", "list", "--kind", "future-kind", "--state", state])
        #expect(show.status == 0 && show.stdout.contains("future-kind"), "\(show.stdout) \(show.stderr)")
        let verify = try await CLI.run(["audit", "verify", "--state", state])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }
}
