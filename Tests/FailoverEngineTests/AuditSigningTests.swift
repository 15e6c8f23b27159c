import Crypto
import Foundation
import GRDB
import Testing

@testable import FailoverEngine

/// Signed checkpoints hold against someone who can rewrite journal.sqlite: the tampering below is done with
/// the sqlite3 shell after dropping the triggers, with every hash recomputed as an attacker would.
@Suite struct AuditSigningTests {
    /// A key pair, a state directory and a checkpoint file in one temporary directory.
    struct Setup {
        let root: String
        let keys: AuditKeys.Generated
        var state: String { root + "/state" }
        var checkpoints: String { root + "/keys/" + AuditKeys.checkpointFile }
        var db: String { state + "/journal.sqlite" }

        init() throws {
            root = CLI.tempDirectory("failoverd-signing")
            keys = try AuditKeys.generate(into: root + "/keys")
        }

        /// A journal whose signer checkpoints every `interval` events.
        func journal(interval: Int64 = 100) throws -> Journal {
            try Journal(stateDirectory: state, auditSigner: try AuditSigner(keyPath: keys.privateKeyPath, interval: interval))
        }

        /// `failoverd audit verify` with the public key (and the checkpoint file beside it).
        func verifyCLI(key: Bool = true, _ extra: [String] = []) async throws -> CLI.Result {
            try await CLI.run(["audit", "verify", "--state", state] + (key ? ["--public-key", keys.publicKeyPath] : []) + extra)
        }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    /// The attacker's rewrite: `edit` changes events, then every hash from the first changed one is recomputed,
    /// and the SQL that stores them is returned (triggers dropped first).
    static func rewriteSQL(_ journal: Journal, edit: (inout [AuditEvent]) -> Void) throws -> String {
        let original = try AuditLog(journal: journal).query()
        var events = original
        edit(&events)
        var prev = AuditLog.genesis
        var sql = "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;\n"
        func q(_ s: String?) -> String { s.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" } ?? "NULL" }
        for i in events.indices {
            events[i].prevHash = prev
            events[i].hash = events[i].expectedHash
            prev = events[i].hash
            if events[i] != original[i] {
                let e = events[i]
                sql +=
                    "UPDATE audit_events SET kind = \(q(e.kind)), details = \(q(e.details)), run_id = \(q(e.runID)), site = \(q(e.site)), at = \(q(e.at)), prev_hash = \(q(e.prevHash)), hash = \(q(e.hash)) WHERE seq = \(e.seq);\n"
            }
        }
        return sql
    }

    /// Twenty events, checkpoints every five.
    func twentyEvents(_ s: Setup) throws -> Journal {
        let journal = try s.journal(interval: 5)
        for i in 1...20 { try AuditLog(journal: journal).append(kind: .stepEnd, run: "r-t", site: "prod", details: ["step": String(i)]) }
        return journal
    }

    @Test func keygenWritesAPrivateKeyOnlyItsOwnerReadsAndNeverReplacesOne() async throws {
        let dir = CLI.tempDirectory("failoverd-keygen") + "/keys"
        defer { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }
        let r = try await CLI.run(["audit", "keygen", "--out", dir])
        #expect(r.status == 0, "\(r.stderr)")
        let priv = try FileManager.default.attributesOfItem(atPath: dir + "/" + AuditKeys.privateKeyFile)
        #expect((priv[.posixPermissions] as? Int) == 0o600)
        #expect((try FileManager.default.attributesOfItem(atPath: dir)[.posixPermissions] as? Int) == 0o700)
        let key = try AuditKeys.loadPrivateKey(dir + "/" + AuditKeys.privateKeyFile)
        let pub = try AuditKeys.loadPublicKey(dir + "/" + AuditKeys.publicKeyFile)
        #expect(key.publicKey.rawRepresentation == pub.rawRepresentation)
        let before = try String(contentsOfFile: dir + "/" + AuditKeys.privateKeyFile, encoding: .utf8)
        let again = try await CLI.run(["audit", "keygen", "--out", dir])
        #expect(again.status == 2)
        #expect(again.stderr.contains("already exists"))
        #expect(try String(contentsOfFile: dir + "/" + AuditKeys.privateKeyFile, encoding: .utf8) == before)
    }

    @Test func aKeyOpenToOthersOrBehindASymlinkIsRefusedBeforeAnythingRuns() async throws {
        let s = try Setup()
        defer { s.remove() }
        chmod(s.keys.privateKeyPath, 0o644)
        let open = try await CLI.run([
            "run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state, "--audit-key", s.keys.privateKeyPath,
        ])
        #expect(open.status == 2)
        #expect(open.stderr.contains("chmod 600"))
        #expect(!FileManager.default.fileExists(atPath: s.db))
        chmod(s.keys.privateKeyPath, 0o600)
        let link = s.root + "/link.key"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: s.keys.privateKeyPath)
        let linked = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state, "--audit-key", link])
        #expect(linked.status == 2)
        #expect(linked.stderr.contains("symbolic link"))
        let target = s.root + "/elsewhere.jsonl"
        FileManager.default.createFile(atPath: target, contents: nil)
        try FileManager.default.createSymbolicLink(atPath: s.root + "/cp.jsonl", withDestinationPath: target)
        let cp = try await CLI.run([
            "run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state, "--audit-key", s.keys.privateKeyPath,
            "--audit-checkpoints",
            s.root + "/cp.jsonl",
        ])
        #expect(cp.status == 2)
        #expect(!FileManager.default.fileExists(atPath: s.db))
        // Bad input with a good key: refused, and no checkpoint file appears either.
        let bad = try await CLI.run(["run", s.root + "/no-such-plan.json", "--state", s.state, "--audit-key", s.keys.privateKeyPath])
        #expect(bad.status == 2)
        #expect(!FileManager.default.fileExists(atPath: s.checkpoints))
        #expect(!FileManager.default.fileExists(atPath: s.db))
    }

    @Test func aRunSignsACheckpointAtItsEndAndVerifies() async throws {
        let s = try Setup()
        defer { s.remove() }
        let r = try await CLI.run(
            ["run", CLI.plan("failback-with-rewind"), "--simulate", "--quiet", "--state", s.state],
            env: ["FAILOVERD_AUDIT_KEY": s.keys.privateKeyPath])
        #expect(r.status == 0, "\(r.stderr)")
        let journal = try Journal(stateDirectory: s.state)
        let last = try #require(try AuditLog(journal: journal).query(.init(limit: 1)).first)
        #expect(last.kind == "run-end")
        let file = try AuditCheckpoint.read(file: s.checkpoints).checkpoints
        #expect(file.map(\.seq) == [last.seq])
        #expect(file.first?.head == last.hash)
        #expect(try await journal.db.read { try AuditCheckpoint.fetchAll($0) } == file)
        let v = try await s.verifyCLI()
        #expect(v.status == 0, "\(v.stdout)")
        #expect(v.stdout.contains("signed checkpoints: 1 verified"))
        #expect(v.stdout.contains("1 run agrees with the log"))
    }

    @Test func aCheckpointAtLeastEveryHundredEvents() async throws {
        let s = try Setup()
        defer { s.remove() }
        let journal = try s.journal()
        for i in 1...250 { try AuditLog(journal: journal).append(kind: .stepStart, run: "r-t", details: ["step": String(i)]) }
        #expect(try AuditCheckpoint.read(file: s.checkpoints).checkpoints.map(\.seq) == [100, 200])
        try AuditLog(journal: journal).append(kind: .refusal, details: ["reason": "test"])
        #expect(try AuditCheckpoint.read(file: s.checkpoints).checkpoints.map(\.seq) == [100, 200, 251])
        #expect(try await s.verifyCLI().status == 0)
    }

    @Test func rewriteWithRecomputedHashesAndCutTailIsNamed() async throws {
        let s = try Setup()
        defer { s.remove() }
        let journal = try twentyEvents(s)
        // Edit seq 12, recompute every hash, cut the last three events and the journal's own checkpoints after seq 10.
        var sql = try Self.rewriteSQL(journal) { $0[11].details = "{\"step\":\"99\"}" }
        sql +=
            "DELETE FROM audit_events WHERE seq > 17; DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints WHERE seq > 10;"
        try await CLI.sqlite3(s.db, sql)

        let withoutKey = try await s.verifyCLI(key: false)
        #expect(withoutKey.status == 0)
        #expect(withoutKey.stdout.contains("hash chain verified"))
        #expect(withoutKey.stdout.contains("not proven: without --public-key"))
        #expect(withoutKey.stdout.contains("recomputed their hashes, or deleted the newest events"))

        let v = try await AuditLog(journal: journal).verify(
            .init(publicKeys: [try AuditKeys.loadPublicKey(s.keys.publicKeyPath)], checkpointFile: s.checkpoints))
        #expect(!v.intact)
        #expect(v.brokenSeq == 11)
        #expect(v.reason?.contains("seq 11…15: the log's hash at seq 15 does not match the checkpoint") == true)
        #expect(v.problems.contains { $0.seq == 18 && $0.reason.contains("events 18…20 were deleted") })
        let cli = try await s.verifyCLI()
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("audit log BROKEN at seq 11"))
        #expect(cli.stdout.contains("events 18…20 were deleted"))
    }

    @Test func tailCutBackPastTheLastExportedCheckpointIsNamed() async throws {
        let s = try Setup()
        defer { s.remove() }
        _ = try twentyEvents(s)
        try await CLI.sqlite3(
            s.db,
            "DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_events WHERE seq > 12; DELETE FROM audit_checkpoints WHERE seq > 12;"
        )
        let cli = try await s.verifyCLI()
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("audit log BROKEN at seq 13: events 13…20 were deleted: the log ends at seq 12"))
        // Without the checkpoint file the journal alone cannot tell, and verify says so.
        try FileManager.default.removeItem(atPath: s.checkpoints)
        let alone = try await s.verifyCLI()
        #expect(alone.status == 0)
        #expect(alone.stdout.contains("not proven: without the checkpoint file"))
    }

    @Test func reorderedEventsWithRecomputedHashesAreNamed() async throws {
        let s = try Setup()
        defer { s.remove() }
        let journal = try twentyEvents(s)
        try await CLI.sqlite3(
            s.db,
            try Self.rewriteSQL(journal) { e in
                let seventh = e[6]
                e[6].details = e[7].details
                e[7].details = seventh.details
            })
        #expect(try await AuditLog(journal: journal).verify().intact, "the chain alone cannot see a recomputed reorder")
        let cli = try await s.verifyCLI()
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("audit log BROKEN at seq 6: seq 6…10: the log's hash at seq 10 does not match"))
    }

    @Test func aCheckpointSignedByAnotherKeyFails() async throws {
        let s = try Setup()
        defer { s.remove() }
        let journal = try twentyEvents(s)
        let other = try AuditKeys.generate(into: s.root + "/other")
        let head = try #require(try AuditLog(journal: journal).query(.init(limit: 1)).first)
        let id = try await journal.db.read { try Journal.id($0) }!
        let forged = try AuditSigner(keyPath: other.privateKeyPath, checkpointPath: s.checkpoints).sign(
            journal: id, seq: head.seq, head: head.hash, run: "r-t")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: s.checkpoints))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((forged.jsonLine + "\n").utf8))
        try handle.close()
        let cli = try await s.verifyCLI()
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("audit log BROKEN at seq 20: the checkpoint at seq 20 in checkpoint file"))
        #expect(cli.stdout.contains("is signed by key \(other.keyID), not by the given public key (\(s.keys.keyID))"))
        // The same checkpoint with its key id claimed as ours: the signature does not verify.
        var claimed = forged
        claimed.key = s.keys.keyID
        #expect(!claimed.isSigned(by: try AuditKeys.loadPublicKey(s.keys.publicKeyPath)))
        // Verified against the other key alone, none of the real checkpoints holds.
        let wrongKey = try await CLI.run([
            "audit", "verify", "--state", s.state, "--public-key", other.publicKeyPath, "--checkpoints", s.checkpoints,
        ])
        #expect(wrongKey.status == 1)
    }

    @Test func checkpointsThatDoNotMatchTheLogFail() async throws {
        let s = try Setup()
        defer { s.remove() }
        _ = try twentyEvents(s)
        // The journal's checkpoints removed, the log untouched: the file shows they were there.
        try await CLI.sqlite3(s.db, "DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints;")
        let missing = try await s.verifyCLI()
        #expect(missing.status == 1)
        #expect(missing.stdout.contains("audit log BROKEN at seq 5: the journal lacks the checkpoint at seq 5"))
        // A checkpoint file line altered: its signature no longer verifies.
        let text = try String(contentsOfFile: s.checkpoints, encoding: .utf8)
        try text.replacingOccurrences(of: "\"seq\":10,", with: "\"seq\":9,").write(toFile: s.checkpoints, atomically: true, encoding: .utf8)
        let altered = try await s.verifyCLI()
        #expect(altered.status == 1)
        #expect(altered.stdout.contains("the checkpoint at seq 9 in checkpoint file"))
        #expect(altered.stdout.contains("does not verify"))
    }

    /// `plans/switchover.json` run back: prod is the standby and becomes the primary again.
    func switchoverBack(_ s: Setup) throws -> String {
        let path = s.root + "/switchover-back.json"
        let plan = try String(contentsOfFile: CLI.plan("switchover"), encoding: .utf8)
            .replacingOccurrences(of: "\"role\": \"primary\"", with: "\"role\": \"was-primary\"")
            .replacingOccurrences(of: "\"role\": \"streaming-standby\"", with: "\"role\": \"primary\"")
            .replacingOccurrences(of: "\"role\": \"was-primary\"", with: "\"role\": \"streaming-standby\"")
            .replacingOccurrences(of: "\"to\": \"dr\"", with: "\"to\": \"prod\"")
        try plan.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Issue #20: two signed runs; as root, the triggers dropped, the second run's events rewritten with
    /// recomputed hashes, its checkpoint deleted from the journal and from the checkpoint file. The first
    /// checkpoint still matches, so the chain and the signatures hold; but the second run's run-end is a
    /// closing event that no checkpoint covers, and failoverd signs at every one: verify refuses the log.
    @Test func aRewrittenRunWhoseCheckpointWasDeletedEverywhereIsNamedByItsUnsignedRunEnd() async throws {
        let s = try Setup()
        defer { s.remove() }
        let env = ["FAILOVERD_AUDIT_KEY": s.keys.privateKeyPath]
        let first = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state], env: env)
        #expect(first.status == 0, "\(first.stderr)")
        let second = try await CLI.run(["run", try switchoverBack(s), "--simulate", "--quiet", "--state", s.state], env: env)
        #expect(second.status == 0, "\(second.stderr)")
        let journal = try Journal(stateDirectory: s.state)
        let events = try AuditLog(journal: journal).query()
        let firstEnd = try #require(events.first { $0.kind == "run-end" })
        let lastEnd = try #require(events.last)
        #expect(lastEnd.kind == "run-end" && lastEnd.runID != firstEnd.runID)
        let run2 = try #require(lastEnd.runID)
        let lines = try String(contentsOfFile: s.checkpoints, encoding: .utf8).split(separator: "\n")
        #expect(try AuditCheckpoint.read(file: s.checkpoints).checkpoints.map(\.seq) == [firstEnd.seq, lastEnd.seq])
        #expect(try await s.verifyCLI().status == 0)

        // The attack: every step-end of the second run says something else, hashes recomputed from there on;
        // its checkpoint removed from the journal and from the checkpoint file.
        var sql = try Self.rewriteSQL(journal) { e in
            for i in e.indices where e[i].runID == run2 && e[i].kind == "step-end" {
                e[i].details = e[i].details.replacingOccurrences(of: "\"epoch\":\"0\"", with: "\"epoch\":\"0\",\"note\":\"rewritten\"")
            }
        }
        sql += "DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_checkpoints WHERE seq = \(lastEnd.seq);"
        try await CLI.sqlite3(s.db, sql)
        try (String(lines[0]) + "\n").write(toFile: s.checkpoints, atomically: true, encoding: .utf8)
        #expect(try AuditLog(journal: journal).query().contains { $0.details.contains("rewritten") })
        // The chain alone holds: the hashes were recomputed.
        #expect(try await s.verifyCLI(key: false).status == 0)

        let v = try await s.verifyCLI()
        #expect(v.status == 1, "\(v.stdout)")
        let range = "events \(firstEnd.seq + 1)…\(lastEnd.seq)"
        #expect(v.stdout.contains("audit log BROKEN at seq \(lastEnd.seq): seq \(lastEnd.seq) (run-end of run \(run2)) ends a verb's work"))
        #expect(v.stdout.contains("but no checkpoint signed by the given public key covers it"))
        #expect(v.stdout.contains("\(range) may have been rewritten with their hashes recomputed"))
        #expect(!v.stdout.contains("intact"))
    }

    /// The tail of a run killed before its end is not signed yet: verify says so and holds; a verb that ran
    /// without the key after signed ones leaves an unsigned closing event, which verify names.
    @Test func anUnfinishedTailIsACaveatButAnUnsignedRunEndIsNot() async throws {
        let s = try Setup()
        defer { s.remove() }
        let env = ["FAILOVERD_AUDIT_KEY": s.keys.privateKeyPath]
        #expect(try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state], env: env).status == 0)
        let back = try switchoverBack(s)
        let crashed = try await CLI.run(["run", back, "--simulate", "--quiet", "--state", s.state, "--crash-at", "5:after"], env: env)
        #expect(crashed.killedBySignal)
        let signed = try AuditCheckpoint.read(file: s.checkpoints).checkpoints.map(\.seq)
        #expect(signed.count == 1)
        let tail = try await s.verifyCLI()
        #expect(tail.status == 0, "\(tail.stdout)")
        #expect(tail.stdout.contains("not proven: events \(signed[0] + 1)…"))

        // Resumed without the key: its run-end has no checkpoint.
        let resumed = try await CLI.run(["resume", "--quiet", "--state", s.state], env: ["FAILOVERD_AUDIT_KEY": ""])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let last = try #require(try AuditLog(journal: try Journal(stateDirectory: s.state)).query(.init(limit: 1)).first)
        #expect(last.kind == "run-end")
        let v = try await s.verifyCLI()
        #expect(v.status == 1, "\(v.stdout)")
        #expect(
            v.stdout.contains(
                "audit log BROKEN at seq \(last.seq): seq \(last.seq) (run-end of run \(last.runID ?? "")) ends a verb's work"))
        #expect(v.stdout.contains("or the verb ran without the signing key"))
        // Without the key nothing about signatures is claimed, and the chain holds.
        #expect(try await s.verifyCLI(key: false).status == 0)
    }

    @Test func twoStateDirectoriesShareACheckpointFileAndAJournalIdCannotBeSwapped() async throws {
        let s = try Setup()
        defer { s.remove() }
        let env = ["FAILOVERD_AUDIT_KEY": s.keys.privateKeyPath]
        let second = s.root + "/second"
        #expect(try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state], env: env).status == 0)
        #expect(try await CLI.run(["run", CLI.plan("failover"), "--simulate", "--quiet", "--state", second], env: env).status == 0)
        #expect(try AuditCheckpoint.read(file: s.checkpoints).checkpoints.count == 2)
        let first = try await s.verifyCLI()
        #expect(first.status == 0, "\(first.stdout)")
        #expect(first.stdout.contains("(and 1 of other journals, left aside)"))
        #expect(try await CLI.run(["audit", "verify", "--state", second, "--public-key", s.keys.publicKeyPath]).status == 0)
        // Taking the other journal's id does not let this journal borrow its checkpoints.
        let otherID = try await Journal(stateDirectory: second).db.read { try Journal.id($0) }!
        try await CLI.sqlite3(s.db, "DROP TRIGGER journal_info_no_update; UPDATE journal_info SET value = '\(otherID)';")
        let swapped = try await s.verifyCLI()
        #expect(swapped.status == 1)
        #expect(swapped.stdout.contains("in the journal names journal"))
    }

    @Test func verifyCrossChecksRunsAndSteps() async throws {
        let s = try Setup()
        defer { s.remove() }
        #expect(try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state]).status == 0)
        let journal = try Journal(stateDirectory: s.state)
        let run = try #require(try journal.lastRun()).id
        #expect(try await AuditLog(journal: journal).verify().intact)
        try await CLI.sqlite3(s.db, "UPDATE steps SET status = 'pending' WHERE number = 3; UPDATE runs SET outcome = 'failed';")
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.problems.contains { $0.reason.contains("run \(run) step 3 is pending in the steps table, but the log records step-") })
        #expect(v.problems.contains { $0.reason.contains("run \(run): the runs table says failed, but its last run-end event") })
        try await CLI.sqlite3(s.db, "DELETE FROM steps; DELETE FROM runs;")
        let cli = try await s.verifyCLI(key: false)
        #expect(cli.status == 1)
        #expect(cli.stdout.contains("audit log BROKEN at seq 1: seq 1 starts run \(run), which the runs table does not hold"))
    }

    @Test func verifyOfAMissingJournalIsAnErrorThatCreatesNothing() async throws {
        let root = CLI.tempDirectory("failoverd-missing")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let state = root + "/nowhere"
        for verb in [["verify"], ["export", "--format", "jsonl"], ["list"]] {
            let r = try await CLI.run(["audit"] + verb + ["--state", state])
            #expect(r.status == 2)
            #expect(r.stderr.contains("no journal in state directory \(state)"))
            #expect(!FileManager.default.fileExists(atPath: state))
        }
    }

    @Test func eventsRecordTheOSUserAndHostBesideTheClaimedActor() async throws {
        let s = try Setup()
        defer { s.remove() }
        let r = try await CLI.run(
            ["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", s.state], env: ["FAILOVERD_ACTOR": "alice"])
        #expect(r.status == 0)
        let events = try AuditLog(journal: try Journal(stateDirectory: s.state)).query()
        let name = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) }
        #expect(!events.isEmpty)
        for e in events {
            #expect(e.actor == "alice@\(ProcessInfo.processInfo.hostName)")
            #expect(e.osUser == name)
            #expect(e.osUID == Int64(getuid()))
            #expect(e.host == ProcessInfo.processInfo.hostName)
        }
    }

    @Test func exportCarriesEveryEventWithItsHashAndTheCheckpoints() async throws {
        let s = try Setup()
        defer { s.remove() }
        _ = try twentyEvents(s)
        let r = try await CLI.run(["audit", "export", "--format", "jsonl", "--state", s.state])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 24)
        var prev = AuditLog.genesis
        var checkpoints: [AuditCheckpoint] = []
        for line in lines {
            if let c = AuditCheckpoint(jsonLine: line) {
                checkpoints.append(c)
                continue
            }
            // The event text is what the hash covers: recompute it from the line alone.
            let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let start = line.index(line.startIndex, offsetBy: "{\"event\":".count)
            let end = line.range(of: ",\"hash\":\"", options: .backwards)!.lowerBound
            #expect(json["prevHash"] as? String == prev)
            #expect(AuditLog.sha256(prev + String(line[start..<end])) == json["hash"] as? String)
            prev = json["hash"] as! String
        }
        #expect(checkpoints.map(\.seq) == [5, 10, 15, 20])
        let pub = try AuditKeys.loadPublicKey(s.keys.publicKeyPath)
        #expect(checkpoints.allSatisfy { $0.isSigned(by: pub) })
        #expect(try await CLI.run(["audit", "export", "--format", "csv", "--state", s.state]).status == 2)
        let tail = try await CLI.run(["audit", "export", "--after-seq", "18", "--state", s.state])
        #expect(tail.stdout.split(separator: "\n").count == 3)
    }

    @Test func aJournalFromBeforeCheckpointsKeepsItsChainAndGrowsIt() async throws {
        let state = CLI.tempDirectory("failoverd-v1")
        defer { try? FileManager.default.removeItem(atPath: state) }
        // Written as failoverd wrote journals before migration v3-audit-signing: no OS user, host or checkpoints.
        do {
            let queue = try DatabaseQueue(path: state + "/journal.sqlite")
            try JournalSchema.migrator.migrate(queue, upTo: "v1")
            try await queue.write { db in
                var prev = AuditLog.genesis
                for i in 1...5 {
                    var e = AuditEvent(
                        seq: Int64(i), at: Journal.now(), runID: "r-old", site: "prod", actor: "bob@old", kind: "step-end",
                        details: "{\"step\":\"\(i)\"}", prevHash: prev, hash: "")
                    e.hash = e.expectedHash
                    prev = e.hash
                    try db.execute(
                        sql:
                            "INSERT INTO audit_events (seq, at, run_id, site, actor, kind, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        arguments: [e.seq, e.at, e.runID, e.site, e.actor, e.kind, e.details, e.prevHash, e.hash])
                }
            }
        }
        let journal = try Journal(stateDirectory: state)
        #expect(try await AuditLog(journal: journal).verify().intact)
        try AuditLog(journal: journal).append(kind: .refusal, details: ["reason": "after the upgrade"])
        let v = try await AuditLog(journal: journal).verify()
        #expect(v.intact)
        #expect(v.checked == 6)
        #expect(try AuditLog(journal: journal).query().map(\.osUser).compactMap { $0 }.count == 1)
    }
}
