import Foundation
import GRDB
import Testing

@testable import FailoverEngine

/// The audit chain detects an edited, a deleted and a reordered row, even one made with the sqlite3
/// shell after dropping the triggers.
@Suite struct AuditLogTests {
    /// A state directory with ten events.
    func journalWithEvents() throws -> (String, Journal) {
        let state = CLI.tempDirectory("failoverd-audit")
        let journal = try Journal(stateDirectory: state)
        let log = AuditLog(journal: journal)
        for i in 1...10 {
            try log.append(
                kind: i % 2 == 0 ? .stepEnd : .stepStart, run: "r-test", site: i < 5 ? "prod" : "dr", details: ["step": String(i)])
        }
        return (state, journal)
    }

    @Test func intactChainVerifies() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.intact)
        #expect(v.checked == 10)
        let cli = try await CLI.run(["audit", "verify", "--state", state])
        #expect(cli.status == 0)
        #expect(cli.stdout.contains("intact: 10 events"))
    }

    @Test func verifyHashesEscapedAndNonASCIITextAsItWasWritten() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let log = AuditLog(journal: journal)
        try log.append(
            kind: .refusal, run: "r-\"quoted\"\n\r\t", site: "dr\\site\u{02}é",
            details: ["reason": "line one\nline two\ttab \u{01}\u{1F} \"q\" \\ back é 漢字 🐘", "key\"odd": "\r"])
        try log.append(kind: .stepEnd, run: nil, site: nil, details: [:])
        let v = try await log.verify()
        #expect(v.intact, "\(v.problems)")
        #expect(v.checked == 12)
        // And a one-character edit inside the escaped text is still seen.
        try await CLI.sqlite3(
            journal.path,
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = replace(details, '漢', '汉') WHERE seq = 11;")
        #expect(try await log.verify().brokenSeq == 11)
    }

    /// The one encoder writes the form every log was hashed with (docs/journal.md): pinned here byte for byte,
    /// with escapes, a NULL run, a negative uid and fields absent from old events.
    @Test func theCanonicalEventIsTheFormEveryLogWasWrittenWith() throws {
        let prev = String(repeating: "a", count: 64)
        var e = AuditEvent(
            seq: 7, at: "2026-11-27T04:15:02.123Z", runID: nil, site: "dr\\\"x", actor: "bob@h\n\u{08}", osUser: "é\t",
            osUID: Int64.min, host: "h\u{01}\u{1F}\r", kind: "step-end", details: "{\"a\":\"b\"}", prevHash: prev, hash: "")
        let expected =
            #"{"actor":"bob@h\n\u0008","at":"2026-11-27T04:15:02.123Z","details":{"a":"b"},"host":"h\u0001\u001f\r","kind":"step-end","osUid":-9223372036854775808,"osUser":"é\t","run":null,"seq":7,"site":"dr\\\"x"}"#
        #expect(e.canonical == expected)
        #expect(e.expectedHash == AuditLog.sha256(prev + expected))
        // An event from before the OS user, uid and host were recorded: those keys are absent.
        e.osUser = nil
        e.osUID = nil
        e.host = nil
        e.runID = "r-1"
        #expect(
            e.canonical
                == #"{"actor":"bob@h\n\u0008","at":"2026-11-27T04:15:02.123Z","details":{"a":"b"},"kind":"step-end","run":"r-1","seq":7,"site":"dr\\\"x"}"#
        )
        #expect(JSONString.literal("\u{00}\u{7F}\\/漢") == "\"\\u0000\u{7F}\\\\/漢\"")
    }

    /// A run started while verify walks the log: the runs table then holds a run the walked log has no event
    /// of. verify sees the commit (from this connection or another) and verifies again in one read.
    @Test(arguments: ["this connection", "another connection"])
    func aCommitWhileVerifyWalksIsVerifiedAgainInOneRead(writer: String) async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let steps = try Planner(plan: PlanLoader.load(CLI.plan("switchover"))).steps().get()
        func run(_ id: String) -> RunRecord {
            RunRecord(
                id: id, planName: "switchover", planJSON: "{}", planSHA256: "", driver: "simulated", isDrill: false, allowDataLoss: false,
                actor: "test", stepCount: steps.count, outcome: .running, error: nil, startedAt: Journal.now(), endedAt: nil)
        }
        try journal.createRun(run("r-first"), steps: steps, epoch: 0)
        let writerJournal = writer == "this connection" ? journal : try Journal(stateDirectory: state)
        let v = try await AuditLog(journal: journal).verify(.init()) {
            try writerJournal.createRun(run("r-second"), steps: steps, epoch: 0)
        }
        #expect(v.intact, "\(v.problems)")
        #expect(v.checked == 12)
        #expect(v.lastSeq == 12)
        #expect(v.runsChecked == 2)
    }

    @Test func triggersRefuseUpdateAndDelete() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        #expect(throws: DatabaseError.self) {
            try journal.db.write { try $0.execute(sql: "UPDATE audit_events SET kind = 'x' WHERE seq = 3") }
        }
        #expect(throws: DatabaseError.self) { try journal.db.write { try $0.execute(sql: "DELETE FROM audit_events WHERE seq = 3") } }
        #expect(try await AuditLog(journal: journal).verify().intact)
    }

    @Test func editedRowIsNamed() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await CLI.sqlite3(
            journal.path, "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = '{\"step\":\"99\"}' WHERE seq = 4;")
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.brokenSeq == 4)
        #expect(v.reason?.contains("edited") == true)
        let cli = try await CLI.run(["audit", "verify", "--state", state])
        #expect(cli.status != 0)
        #expect(cli.stdout.contains("seq 4"))
    }

    @Test func deletedRowIsNamed() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await CLI.sqlite3(journal.path, "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 6;")
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.brokenSeq == 6)
        #expect(v.reason?.contains("missing") == true)
    }

    @Test func deletedAndRenumberedRowIsNamed() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        // Hide the gap: delete seq 6 and shift every later row down by one.
        try await CLI.sqlite3(
            journal.path,
            "DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_events_no_update; DELETE FROM audit_events WHERE seq = 6; UPDATE audit_events SET seq = -(seq - 1) WHERE seq > 6; UPDATE audit_events SET seq = -seq WHERE seq < 0;"
        )
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.brokenSeq == 6)
    }

    @Test func reorderedRowsAreNamed() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        try await CLI.sqlite3(
            journal.path,
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET seq = -1 WHERE seq = 7; UPDATE audit_events SET seq = 7 WHERE seq = 8; UPDATE audit_events SET seq = 8 WHERE seq = -1;"
        )
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.brokenSeq == 7)
    }

    @Test func secretsAreRedacted() throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let e = try AuditLog(journal: journal).append(
            kind: .stepEnd, details: ["password": "hunter2", "conninfo": "host=a port=5 password=hunter2 user=r", "lsn": "0/3000060"])
        #expect(!e.details.contains("hunter2"))
        #expect(e.details.contains("\"password\":\"[redacted]\""))
        #expect(e.details.contains("password=[redacted] user=r"))
        #expect(e.details.contains("0/3000060"))
    }

    /// Every evidence key failoverd writes (the step runner and its gates, whatever the driver). A key added
    /// there belongs here: ``everyEvidenceKeyARunWritesIsListedAndKept`` fails until it is.
    static let evidenceKeys: Set<String> = [
        "primaryLSN", "targetReplayLSN", "lagBytes", "timeline", "override", "targetLSN", "candidate.*", "systemIdentifier",
        "checkpointLSN",
        "demotionToken", "promotedAtLSN", "previousTimeline", "firstWriteLSN", "lastKnownLSN", "reachable", "wasRunning", "lastKnownFrom",
        "delta", "upstream", "segment", "pgRewind", "fallback", "role.*", "oldPrimaryLastKnownLSN", "walLossEstimateBytes",
        "targetTimeline", "overwriteCheck", "targetSystemIdentifier", "targetState", "resumedWith",
        "receiveLSNBeforePromotion", "replayLSNBeforePromotion", "switchLSN", "forkNote",
        "directory", "fork", "diverged", "walBytes", "transactions", "walFrom", "rows", "manifestSHA256", "skipped",
        "slots", "confirmedFlushLSN", "droppedOn",
    ]

    @Test func evidenceThatIsNotASecretIsNeverRedacted() throws {
        var evidence: [String: String] = [:]
        for key in Self.evidenceKeys { evidence["evidence." + key.replacingOccurrences(of: "*", with: "dr")] = "7350238476/2/0/3000028" }
        #expect(AuditLog.redact(evidence) == evidence)
        // The journal's steps table keeps the same evidence unredacted too.
        #expect(AuditLog.redact(["demotionToken": "1/2/0/3"]) == ["demotionToken": "1/2/0/3"])
        // Secret names match exactly, in any case, with or without the evidence. prefix; names that merely contain one do not.
        for secret in ["password", "evidence.password", "PGPASSWORD", "evidence.token", "secret", "private_key", "privateKey"] {
            #expect(AuditLog.redact([secret: "s3cr3t"])[secret] == "[redacted]", "\(secret)")
        }
        for kept in ["passwordFile", "tokenCount", "evidence.demotionToken", "secretary"] {
            #expect(AuditLog.redact([kept: "v"])[kept] == "v", "\(kept)")
        }
    }

    @Test("every evidence key a run writes is listed and kept", arguments: ExecutorTests.shippedPlans)
    func everyEvidenceKeyARunWritesIsListedAndKept(plan: String) async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try await CLI.run(["run", CLI.plan(plan), "--simulate", "--quiet", "--state", state])
        #expect(r.status == 0, "\(r.stderr)")
        let journal = try Journal(stateDirectory: state)
        for e in try AuditLog(journal: journal).query() {
            #expect(!e.details.contains("[redacted]"), "seq \(e.seq): \(e.details)")
            let details = try JSONSerialization.jsonObject(with: Data(e.details.utf8)) as! [String: String]
            for key in details.keys where key.hasPrefix("evidence.") {
                let name = String(key.dropFirst("evidence.".count))
                let pattern = name.contains(".") ? String(name.prefix { $0 != "." }) + ".*" : name
                #expect(Self.evidenceKeys.contains(pattern), "evidence key \(name) is not in AuditLogTests.evidenceKeys")
            }
        }
        if ["switchover", "failback-with-rewind"].contains(plan) {
            let tokens = try AuditLog(journal: journal).query(.init(kind: .stepEnd)).filter {
                $0.details.contains("evidence.demotionToken")
            }
            #expect(!tokens.isEmpty)
            #expect(tokens.allSatisfy { !$0.details.contains("\"evidence.demotionToken\":\"[redacted]\"") })
        }
    }

    @Test func filtersByRunSiteKindAndSince() async throws {
        let (state, journal) = try journalWithEvents()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let log = AuditLog(journal: journal)
        try log.append(kind: .refusal, run: "r-other", site: "dr", details: [:])
        #expect(try log.query(.init(run: "r-other")).map(\.kind) == ["refusal"])
        #expect(try log.query(.init(site: "prod")).count == 4)
        #expect(try log.query(.init(kind: .stepEnd)).count == 5)
        #expect(try log.query(.init(since: "2999-01-01T00:00:00.000Z")).isEmpty)
        let cli = try await CLI.run(["audit", "--state", state, "--site", "dr", "--kind", "refusal", "--json"])
        #expect(cli.status == 0)
        let decoded = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [[String: Any]]
        #expect(decoded?.count == 1)
        #expect(decoded?.first?["kind"] as? String == "refusal")
        let bad = try await CLI.run(["audit", "--state", state, "--since", "yesterday"])
        #expect(bad.status == 2)
        // A date alone means its midnight UTC: every event of today is after 2000-01-01, none after 2999-01-01.
        let day = try await CLI.run(["audit", "--state", state, "--since", "2000-01-01", "--json"])
        #expect(day.status == 0, "\(day.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(day.stdout.utf8)) as? [[String: Any]])?.count == 11)
        let future = try await CLI.run(["audit", "--state", state, "--since", "2999-01-01", "--json"])
        #expect(future.status == 0, "\(future.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(future.stdout.utf8)) as? [[String: Any]])?.isEmpty == true)
    }
}
