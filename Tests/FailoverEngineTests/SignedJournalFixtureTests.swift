import Foundation
import Testing

@testable import FailoverEngine

/// A signed journal written by main at 72d41c3 (Tests/Fixtures/journal-main-72d41c3): a signed switchover, a
/// signed refusal and a switchover back killed after step 5. Today's failoverd reads it, hashes its events
/// to the bytes they were written with, verifies its signatures, and resumes it.
@Suite struct SignedJournalFixtureTests {
    static let fixture = CLI.packageRoot + "/Tests/Fixtures/journal-main-72d41c3"
    static let finishedRun = "r-20261207-152721-9bae"
    static let unfinishedRun = "r-20261207-152722-65bb"

    /// A copy of the fixture: tests never write to the checked-in files.
    struct Copy {
        let root: String
        var state: String { root + "/state" }
        var checkpoints: String { root + "/" + AuditKeys.checkpointFile }
        var publicKey: String { root + "/" + AuditKeys.publicKeyFile }

        init() throws {
            root = CLI.tempDirectory("failoverd-signed-fixture")
            try FileManager.default.createDirectory(atPath: root + "/state", withIntermediateDirectories: true)
            for file in ["journal.sqlite", "simulation.json"] {
                try FileManager.default.copyItem(atPath: SignedJournalFixtureTests.fixture + "/" + file, toPath: root + "/state/" + file)
            }
            for file in [AuditKeys.checkpointFile, AuditKeys.publicKeyFile] {
                try FileManager.default.copyItem(atPath: SignedJournalFixtureTests.fixture + "/" + file, toPath: root + "/" + file)
            }
        }

        func verify(_ extra: [String] = []) throws -> CLI.Result {
            try CLI.run(["audit", "verify", "--state", state, "--public-key", publicKey, "--checkpoints", checkpoints] + extra)
        }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    @Test("the signed journal's runs, steps and checkpoints read back")
    func reads() throws {
        let c = try Copy()
        defer { c.remove() }
        let journal = try Journal(stateDirectory: c.state)
        #expect(try journal.run(Self.finishedRun)?.outcome == .succeeded)
        let run = try #require(try journal.unfinishedRun())
        #expect(run.id == Self.unfinishedRun)
        let steps = try journal.steps(of: run.id)
        #expect(steps.count == 11)
        #expect(steps.prefix(4).allSatisfy { $0.status == .done })
        #expect(steps[4].status == .started)
        #expect(steps[4].step.operation == .awaitReplay(target: "prod-0", oldPrimary: "dr-0"))
        let token = try #require(try steps[3].evidence(as: DemotionToken.self))
        #expect(token.checkpointLSN.description == steps[3].evidence["checkpointLSN"])
        #expect(try journal.recordedRoles() == ["dr": .primary, "prod": .streamingStandby])
        let events = try AuditLog(journal: journal).query()
        #expect(events.count == 34)
        #expect(events[22].kind == "run-end" && events[23].kind == "refusal")
        #expect(events.allSatisfy { $0.osUID != nil && $0.host != nil })
        let inJournal = try journal.db.read { try AuditCheckpoint.fetchAll($0) }
        #expect(inJournal.map(\.seq) == [23, 24])
        #expect(try AuditCheckpoint.read(file: c.checkpoints).checkpoints == inJournal)
    }

    @Test("every event hashes to the bytes it was written with, and export carries them")
    func hashes() throws {
        let c = try Copy()
        defer { c.remove() }
        let events = try AuditLog(journal: try Journal(stateDirectory: c.state)).query()
        var prev = AuditLog.genesis
        for e in events {
            #expect(e.prevHash == prev)
            #expect(e.expectedHash == e.hash, "seq \(e.seq)")
            prev = e.hash
        }
        let export = try CLI.run(["audit", "export", "--state", c.state])
        #expect(export.status == 0)
        let lines = export.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 36)
        for (e, line) in zip(events, lines.filter { !$0.contains("\"type\":\"failoverd-audit-checkpoint\"") }) {
            #expect(line.hasPrefix("{\"event\":" + e.canonical + ",\"hash\":\"" + e.hash + "\""))
            #expect(AuditLog.sha256(e.prevHash + e.canonical) == e.hash)
        }
    }

    @Test("status and audit verify --public-key show the signed journal")
    func shows() throws {
        let c = try Copy()
        defer { c.remove() }
        let status = try CLI.run(["status", "--state", c.state])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(
            status.stdout.contains("last run: \(Self.unfinishedRun) plan \"switchover\" running (4 done, 0 satisfied, 1 in doubt of 11)"))
        #expect(status.stdout.contains("continue with: failoverd resume \(Self.unfinishedRun)"))
        let chain = try CLI.run(["audit", "verify", "--state", c.state])
        #expect(chain.status == 0, "\(chain.stdout)")
        #expect(chain.stdout.contains("audit log intact: 34 events, hash chain verified"))
        let signed = try c.verify()
        #expect(signed.status == 0, "\(signed.stdout)")
        #expect(signed.stdout.contains("signed checkpoints: 2 verified and matching the log (latest: seq 24"))
        #expect(signed.stdout.contains("runs and steps tables: 2 runs agree with the log"))
        // The killed run's tail ends no verb's work: not signed yet, and said so.
        #expect(signed.stdout.contains("not proven: events 25…34 come after the last signed checkpoint (seq 24)"))
    }

    @Test("the signed journal's unfinished run resumes, signed with a new key, and verifies with both keys")
    func resumes() throws {
        let c = try Copy()
        defer { c.remove() }
        let keys = try AuditKeys.generate(into: c.root + "/new-key")
        let resumed = try CLI.run([
            "resume", "--quiet", "--state", c.state, "--audit-key", keys.privateKeyPath, "--audit-checkpoints", c.checkpoints,
        ])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try CLI.roles(state: c.state) == ["dr": "streaming-standby", "prod": "primary"])
        let journal = try Journal(stateDirectory: c.state)
        #expect(try journal.steps(of: Self.unfinishedRun).allSatisfy { $0.status.isFinished })
        #expect(try journal.run(Self.unfinishedRun)?.outcome == .succeeded)
        let both = try c.verify(["--public-key", keys.publicKeyPath])
        #expect(both.status == 0, "\(both.stdout)")
        #expect(both.stdout.contains("signed checkpoints: 3 verified and matching the log"))
        #expect(both.stdout.contains("runs and steps tables: 2 runs agree with the log"))
        // With the old key alone the new checkpoint is another key's, and the resumed run's end is unsigned.
        let old = try c.verify()
        #expect(old.status == 1)
        #expect(old.stdout.contains("is signed by key \(keys.keyID), not by the given public key"))
    }
}
