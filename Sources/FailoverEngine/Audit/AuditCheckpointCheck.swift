import Crypto
import Foundation
import GRDB

/// The checkpoints a verification weighs: the journal's and the checkpoint file's, only those of this journal.
struct CheckpointSet: Sendable {
    /// Every checkpoint the journal holds.
    var journal: [AuditCheckpoint]
    /// The checkpoint file's lines that name this journal.
    var file: [AuditCheckpoint]
    /// The checkpoint file's lines that name other journals, left aside.
    var otherJournals: Int
    /// Checkpoints in the journal that name another journal.
    var foreign: [AuditLog.Problem]
    /// This journal's checkpoints, from both, each once, in seq order.
    var all: [AuditCheckpoint]

    init(journal: [AuditCheckpoint], file: [AuditCheckpoint], journalID: String?) {
        self.journal = journal
        // One checkpoint file may serve several state directories: only this journal's lines count.
        self.file = file.filter { $0.journal == journalID }
        otherJournals = file.count - self.file.count
        foreign = journal.filter { $0.journal != journalID }.map { c in
            AuditLog.Problem(
                seq: c.seq,
                reason:
                    "the checkpoint at seq \(c.seq) in the journal names journal \(c.journal), but this journal's id is \(journalID ?? "missing"): the id was changed or the checkpoint copied from another journal"
            )
        }
        all = Set(journal.filter { $0.journal == journalID } + self.file).sorted { ($0.seq, $0.key, $0.at) < ($1.seq, $1.key, $1.at) }
    }

    /// The seqs the checkpoints name, ascending, each once: the chain walk keeps the hash at each.
    var seqs: [Int64] { Array(Set(all.map(\.seq))).sorted() }
}

extension AuditLog {
    /// One Bool per checkpoint: signed by the key its id names, among `keys` (raw public keys by key id).
    /// Results in `known` are taken as they are. Ed25519 is the costly part of a signed verification: the
    /// checkpoints are shared among child tasks, one per core.
    static func verifySignatures(_ checkpoints: [AuditCheckpoint], keys: [String: Data], known: [AuditCheckpoint: Bool] = [:]) async
        -> [Bool]
    {
        var results = checkpoints.map { known[$0] ?? false }
        let todo = keys.isEmpty ? [] : checkpoints.indices.filter { known[checkpoints[$0]] == nil }
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, todo.count / 64))
        await withTaskGroup(of: [(Int, Bool)].self) { group in
            for chunk in 0..<chunks {
                group.addTask {
                    let keys = keys.compactMapValues { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }
                    var out: [(Int, Bool)] = []
                    for i in stride(from: chunk, to: todo.count, by: chunks) {
                        let c = checkpoints[todo[i]]
                        out.append((todo[i], keys[c.key].map { c.isSigned(by: $0) } ?? false))
                    }
                    return out
                }
            }
            for await checked in group {
                for (i, ok) in checked { results[i] = ok }
            }
        }
        return results
    }

    /// Weighs the checkpoints whose signatures were checked (`valid`, one per `set.all`) against the walked
    /// log: foreign keys and bad signatures, checkpoints that no longer match the log, a log cut back past a
    /// checkpoint, checkpoints missing from the journal. Returns the highest seq a good signature covers.
    func checkCheckpoints(_ v: inout Verification, set: CheckpointSet, valid: [Bool], options: VerifyOptions, walk: ChainWalk) -> Int64? {
        let keys = Dictionary(options.publicKeys.map { (AuditKeys.keyID($0), $0) }, uniquingKeysWith: { a, _ in a })
        let inFile = Set(set.file)
        let inJournal = Set(set.journal.map { "\($0.seq)/\($0.key)" })
        func source(_ c: AuditCheckpoint) -> String {
            inFile.contains(c) ? "in checkpoint file \(options.checkpointFile ?? "")" : "in the journal"
        }
        var good: [AuditCheckpoint] = []
        for (c, ok) in zip(set.all, valid) {
            if ok {
                good.append(c)
            } else if keys[c.key] == nil {
                v.problems.append(
                    Problem(
                        seq: c.seq,
                        reason:
                            "the checkpoint at seq \(c.seq) \(source(c)) is signed by key \(c.key), not by the given public key (\(keys.keys.sorted().joined(separator: ", "))): a checkpoint from another key, or a forged one"
                    ))
            } else {
                v.problems.append(
                    Problem(
                        seq: c.seq,
                        reason:
                            "the checkpoint at seq \(c.seq) \(source(c)) has a signature that does not verify with key \(c.key): it was altered or forged"
                    ))
            }
        }
        v.checkpointsVerified = good.count
        var lastMatch: Int64 = 0
        var mismatch = false
        for c in good.sorted(by: { ($0.seq, $0.at) < ($1.seq, $1.at) }) {
            if let broken = walk.firstBroken, c.seq >= broken { continue }
            if c.seq > v.lastSeq { continue }
            if walk.heads[c.seq] != c.head {
                // Later heads differ as a consequence: the first mismatch is the finding.
                if mismatch { continue }
                mismatch = true
                let first = lastMatch + 1
                v.problems.append(
                    Problem(
                        seq: first,
                        reason:
                            "seq \(first)\(c.seq > first ? "…\(c.seq)" : ""): the log's hash at seq \(c.seq) does not match the checkpoint signed at \(c.at) \(source(c)); events in this range were rewritten, reordered or replaced and the hashes recomputed"
                            + (lastMatch > 0 ? " (the checkpoint at seq \(lastMatch) still matches)" : "")))
                continue
            }
            if mismatch { continue }
            lastMatch = c.seq
            if v.lastCheckpoint.map({ $0.seq < c.seq }) ?? true { v.lastCheckpoint = c }
            if inFile.contains(c), !inJournal.contains("\(c.seq)/\(c.key)") {
                v.problems.append(
                    Problem(
                        seq: c.seq,
                        reason:
                            "the journal lacks the checkpoint at seq \(c.seq) that checkpoint file \(options.checkpointFile ?? "") holds: checkpoints were deleted from the journal"
                    ))
            }
        }
        // A checkpoint beyond the log's end: the newest events were deleted back past it.
        if walk.firstBroken == nil, let beyond = good.filter({ $0.seq > v.lastSeq }).max(by: { $0.seq < $1.seq }) {
            let first = v.lastSeq + 1
            v.problems.append(
                Problem(
                    seq: first,
                    reason:
                        "events \(first)\(beyond.seq > first ? "…\(beyond.seq)" : "") were deleted: the log ends at seq \(v.lastSeq), but the checkpoint signed at \(beyond.at) \(source(beyond)) covers up to seq \(beyond.seq)"
                ))
        }
        if good.isEmpty && v.lastSeq > 0 {
            v.problems.append(
                Problem(
                    seq: nil,
                    reason:
                        "no checkpoint signed by the given public key covers this log (\(set.journal.count) in the journal, \(set.file.count) in the checkpoint file): either it was never signed with this key, or its checkpoints were removed"
                ))
        }
        if options.checkpointFile == nil {
            v.caveats.append(
                "without the checkpoint file kept outside the database (--checkpoints), deleting the newest events together with their checkpoints in the journal cannot be detected"
            )
        }
        if let last = v.lastCheckpoint, last.seq < v.lastSeq {
            v.caveats.append(
                "events \(last.seq + 1)…\(v.lastSeq) come after the last signed checkpoint (seq \(last.seq)): no signature covers them yet")
        }
        return good.map(\.seq).max()
    }

    /// The events after `covered` (the last seq a good signature covers) through `last` that end a verb's work
    /// (``AuditSigner/closingKinds``). failoverd signs a checkpoint in the same transaction as each, so one
    /// that no checkpoint covers is evidence: its checkpoint was deleted, from the journal and the checkpoint
    /// file, perhaps with the events before it rewritten and their hashes recomputed; or the verb ran without
    /// the signing key. The events are append-only, so any read after the walk sees the same ones up to `last`.
    func unsignedClosingEvents(after covered: Int64, through last: Int64) async throws -> [Problem] {
        guard covered < last else { return [] }
        let kinds = AuditSigner.closingKinds.map(\.rawValue).sorted()
        let placeholders = kinds.map { _ in "?" }.joined(separator: ", ")
        let closing = try await journal.db.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT seq, kind, run_id FROM audit_events WHERE seq > ? AND seq <= ? AND kind IN (\(placeholders)) ORDER BY seq",
                arguments: StatementArguments([covered, last] as [any DatabaseValueConvertible] + kinds)
            ).map { (seq: $0["seq"] as Int64, kind: $0["kind"] as String, run: $0["run_id"] as String?) }
        }
        return closing.map { e in
            let first = covered + 1
            return Problem(
                seq: e.seq,
                reason:
                    "seq \(e.seq) (\(e.kind)\(e.run.map { " of run \($0)" } ?? "")) ends a verb's work, but no checkpoint signed by the given public key covers it; failoverd signs one with every run-end, abandon, refusal and adopt, so either its checkpoint was deleted from the journal and the checkpoint file, and events \(first)\(e.seq > first ? "…\(e.seq)" : "") may have been rewritten with their hashes recomputed, or the verb ran without the signing key (--audit-key, $FAILOVERD_AUDIT_KEY)"
            )
        }
    }
}
