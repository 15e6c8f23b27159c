import Crypto
import Foundation
import GRDB

extension AuditLog {
    /// What ``verify(_:)`` checks beyond the hash chain.
    public struct VerifyOptions {
        /// The public keys whose signatures count; none: only the chain and the journal's tables are checked.
        public var publicKeys: [Curve25519.Signing.PublicKey]
        /// The checkpoint file kept outside the database, if any.
        public var checkpointFile: String?
        /// Cross-check the log against the runs and steps tables.
        public var crossCheck: Bool

        /// Creates options.
        public init(publicKeys: [Curve25519.Signing.PublicKey] = [], checkpointFile: String? = nil, crossCheck: Bool = true) {
            self.publicKeys = publicKeys
            self.checkpointFile = checkpointFile
            self.crossCheck = crossCheck
        }
    }

    /// One thing wrong with the log.
    public struct Problem: Sendable, Equatable {
        /// The first sequence number it concerns, when it concerns one.
        public var seq: Int64?
        /// What is wrong.
        public var reason: String
    }

    /// The outcome of ``verify(_:)``.
    public struct Verification: Sendable, Equatable {
        /// How many events the chain walk checked (up to the first broken link).
        public var checked: Int
        /// The highest sequence number in the log.
        public var lastSeq: Int64
        /// Everything found wrong, the lowest sequence number first.
        public var problems: [Problem]
        /// Distinct checkpoints whose signature verified.
        public var checkpointsVerified: Int
        /// The latest checkpoint that verified and matches the log.
        public var lastCheckpoint: AuditCheckpoint?
        /// Checkpoints the journal holds.
        public var journalCheckpoints: Int
        /// Checkpoints the checkpoint file holds.
        public var fileCheckpoints: Int
        /// Runs cross-checked against the runs and steps tables.
        public var runsChecked: Int
        /// What this verification could not prove, in the user's terms.
        public var caveats: [String]
        /// Lines of the checkpoint file that belong to other journals (other state directories), left aside.
        public var otherJournalCheckpoints: Int = 0
        /// Captures of lost transactions checked against the digests the log recorded.
        public var capturesChecked: Int = 0

        /// True when nothing is wrong.
        public var intact: Bool { problems.isEmpty }
        /// The first bad sequence number, or nil when intact (or when the first problem names none).
        public var brokenSeq: Int64? { problems.first?.seq }
        /// What is wrong at ``brokenSeq``.
        public var reason: String? { problems.first?.reason }
    }

    /// Walks the chain from the first event and names the first broken link (an edited, deleted, inserted or
    /// reordered row); checks every signed checkpoint against the given public keys and the log (a rewrite with
    /// recomputed hashes, the newest events deleted, checkpoints that do not match, a run-end, abandon, refusal
    /// or adopt that no checkpoint covers); and cross-checks the log against the runs and steps tables.
    ///
    /// The chain walk (in two halves on two connections when the log is long) and the Ed25519 signatures run
    /// at once, as child tasks; the walks run in GRDB's reader queues, so no thread of the cooperative pool
    /// waits on them. Everything describes one state of the journal: when anything was committed while the
    /// log was walked (a run going on), the log is verified again in a single read.
    public func verify(_ options: VerifyOptions = .init()) async throws -> Verification {
        try await verify(options, afterWalk: {})
    }

    /// ``verify(_:)``, with `afterWalk` run between the walk and the cross-check (tests commit there).
    func verify(_ options: VerifyOptions, afterWalk: () async throws -> Void) async throws -> Verification {
        // The file is read before the journal, so it never holds a checkpoint the journal could not yet have.
        let file = try options.checkpointFile.map { try AuditCheckpoint.read(file: $0) }
        let fileCheckpoints = file?.checkpoints ?? []
        let fileProblems = (file?.badLines ?? []).map {
            Problem(seq: nil, reason: "line \($0) of checkpoint file \(options.checkpointFile ?? "") is not a checkpoint")
        }
        let keys = Dictionary(
            options.publicKeys.map { (AuditKeys.keyID($0), $0.rawRepresentation) }, uniquingKeysWith: { a, _ in a })
        let crossCheck = options.crossCheck
        let stateDirectory = (journal.path as NSString).deletingLastPathComponent

        let state = try await journal.db.read { db in try LogState(db) }
        let set = CheckpointSet(journal: state.checkpoints, file: fileCheckpoints, journalID: state.journalID)
        async let signatures = Self.verifySignatures(set.all, keys: keys)
        let walk = try await ChainWalk.walk(
            journal, first: state.firstSeq, last: state.lastSeq, heads: set.seqs, collectRuns: crossCheck)
        try await afterWalk()
        // The runs and steps tables must be those of the log that was walked.
        let crossChecked = try await journal.db.read { db -> CrossCheck? in
            guard try LogState.version(db) == state.version else { return nil }
            return try CrossCheck(db, walk: walk, enabled: crossCheck, stateDirectory: stateDirectory)
        }
        let valid = await signatures
        if let crossChecked {
            return try await report(
                state: state, set: set, valid: valid, walk: walk, crossCheck: crossChecked, fileProblems: fileProblems, options: options)
        }

        // Something was committed meanwhile: verify again in one read, where nothing can change. Checkpoints are
        // only ever added, so the signatures already checked stand.
        let again = try await journal.db.read { db in
            let state = try LogState(db)
            let set = CheckpointSet(journal: state.checkpoints, file: fileCheckpoints, journalID: state.journalID)
            let walk = try ChainWalk.run(db, heads: set.seqs, collectRuns: crossCheck)
            let crossChecked = try CrossCheck(db, walk: walk, enabled: crossCheck, stateDirectory: stateDirectory)
            return (state: state, set: set, walk: walk, crossCheck: crossChecked)
        }
        let known = Dictionary(zip(set.all, valid), uniquingKeysWith: { a, _ in a })
        return try await report(
            state: again.state, set: again.set, valid: await Self.verifySignatures(again.set.all, keys: keys, known: known),
            walk: again.walk, crossCheck: again.crossCheck, fileProblems: fileProblems, options: options)
    }

    /// The verification of one state of the log, from what was read and walked.
    func report(
        state: LogState, set: CheckpointSet, valid: [Bool], walk: ChainWalk, crossCheck: CrossCheck, fileProblems: [Problem],
        options: VerifyOptions
    ) async throws -> Verification {
        var v = Verification(
            checked: walk.checked, lastSeq: state.lastSeq ?? 0, problems: fileProblems + set.foreign + walk.problems,
            checkpointsVerified: 0, lastCheckpoint: nil, journalCheckpoints: set.journal.count, fileCheckpoints: set.file.count,
            runsChecked: crossCheck.runs, caveats: [], otherJournalCheckpoints: set.otherJournals)
        if options.publicKeys.isEmpty {
            v.caveats.append(
                "without --public-key, failoverd cannot prove that nobody who can write journal.sqlite rewrote events and recomputed their hashes, or deleted the newest events: the hash chain alone cannot show either"
                    + (set.journal.isEmpty
                        ? ""
                        : " (the journal holds \(set.journal.count) signed checkpoint\(set.journal.count == 1 ? "" : "s"), not checked)"))
        } else if let covered = checkCheckpoints(&v, set: set, valid: valid, options: options, walk: walk), walk.firstBroken == nil {
            v.problems += try await unsignedClosingEvents(after: covered, through: v.lastSeq)
        }
        v.problems += crossCheck.problems
        v.capturesChecked = crossCheck.captures
        v.problems.sort { ($0.seq ?? .max) < ($1.seq ?? .max) }
        return v
    }
}

/// What a verification reads of the journal before walking the log: its id, its checkpoints, the first and
/// last seq, and a version that changes with any commit (another connection's or this one's).
struct LogState: Sendable {
    var journalID: String?
    var checkpoints: [AuditCheckpoint]
    var firstSeq: Int64?
    var lastSeq: Int64?
    var version: [Int64]

    init(_ db: Database) throws {
        journalID = try Journal.id(db)
        checkpoints = try AuditCheckpoint.fetchAll(db)
        let bounds = try Row.fetchOne(db, sql: "SELECT min(seq), max(seq) FROM audit_events")
        firstSeq = bounds?[0]
        lastSeq = bounds?[1]
        version = try Self.version(db)
    }

    /// `PRAGMA data_version` (changed by other connections' commits) and `total_changes()` (this one's).
    static func version(_ db: Database) throws -> [Int64] {
        [try Int64.fetchOne(db, sql: "PRAGMA data_version") ?? -1, try Int64.fetchOne(db, sql: "SELECT total_changes()") ?? -1]
    }
}

/// The runs and steps tables checked against the events the walk gathered.
struct CrossCheck: Sendable {
    /// Runs checked.
    var runs = 0
    /// Captures of lost transactions checked against their audited manifests.
    var captures = 0
    /// What disagrees.
    var problems: [AuditLog.Problem] = []

    /// Checks when `enabled` and the chain is intact (a broken chain's runs are not all known); then every
    /// audited capture of lost transactions under `stateDirectory` against its manifest.
    init(_ db: Database, walk: ChainWalk, enabled: Bool, stateDirectory: String) throws {
        guard enabled && walk.firstBroken == nil else { return }
        (runs, problems) = try AuditLog.crossCheck(db, walk.runs)
        let (checked, altered) = try AuditLog.checkCaptures(db, stateDirectory: stateDirectory)
        captures = checked
        problems += altered
    }
}
