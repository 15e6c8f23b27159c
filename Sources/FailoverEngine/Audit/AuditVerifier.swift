import Crypto
import Foundation
import GRDB

#if canImport(GRDBSQLite)
    import GRDBSQLite
#elseif canImport(SQLite3)
    import SQLite3
#endif

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
    /// recomputed hashes, the newest events deleted, checkpoints that do not match); and cross-checks the log
    /// against the runs and steps tables.
    public func verify(_ options: VerifyOptions = .init()) throws -> Verification {
        var fileCheckpoints: [AuditCheckpoint] = []
        var problems: [Problem] = []
        if let path = options.checkpointFile {
            let read = try AuditCheckpoint.read(file: path)
            fileCheckpoints = read.checkpoints
            problems += read.badLines.map { Problem(seq: nil, reason: "line \($0) of checkpoint file \(path) is not a checkpoint") }
        }
        return try journal.db.read { db in
            let journalCheckpoints = try AuditCheckpoint.fetchAll(db)
            // One checkpoint file may serve several state directories: only this journal's lines count.
            let journalID = try Journal.id(db)
            let otherJournals = fileCheckpoints.filter { $0.journal != journalID }.count
            fileCheckpoints = fileCheckpoints.filter { $0.journal == journalID }
            for c in journalCheckpoints where c.journal != journalID {
                problems.append(
                    Problem(
                        seq: c.seq,
                        reason:
                            "the checkpoint at seq \(c.seq) in the journal names journal \(c.journal), but this journal's id is \(journalID ?? "missing"): the id was changed or the checkpoint copied from another journal"
                    ))
            }
            let all = Array(Set(journalCheckpoints.filter { $0.journal == journalID } + fileCheckpoints))
            let seqs = Array(Set(all.map(\.seq))).sorted()
            // Ed25519 verification of many checkpoints runs on other threads while this one walks the chain.
            let signatures = SignatureCheck()
            let group = DispatchGroup()
            if !options.publicKeys.isEmpty {
                let keys = Dictionary(
                    options.publicKeys.map { (AuditKeys.keyID($0), $0.rawRepresentation) }, uniquingKeysWith: { a, _ in a })
                DispatchQueue.global().async(group: group) { signatures.valid = Self.verifySignatures(all, keys: keys) }
            }
            let walk = try ChainWalk.walk(db, path: journal.path, heads: seqs, collectRuns: options.crossCheck)
            group.wait()
            problems += walk.problems
            let lastSeq = try Int64.fetchOne(db, sql: "SELECT max(seq) FROM audit_events") ?? 0
            var v = Verification(
                checked: walk.checked, lastSeq: lastSeq, problems: problems, checkpointsVerified: 0, lastCheckpoint: nil,
                journalCheckpoints: journalCheckpoints.count, fileCheckpoints: fileCheckpoints.count, runsChecked: 0, caveats: [],
                otherJournalCheckpoints: otherJournals)
            if options.publicKeys.isEmpty {
                v.caveats.append(
                    "without --public-key, failoverd cannot prove that nobody who can write journal.sqlite rewrote events and recomputed their hashes, or deleted the newest events: the hash chain alone cannot show either"
                        + (journalCheckpoints.isEmpty
                            ? ""
                            : " (the journal holds \(journalCheckpoints.count) signed checkpoint\(journalCheckpoints.count == 1 ? "" : "s"), not checked)")
                )
            } else {
                checkCheckpoints(
                    &v, all: all, valid: signatures.valid, journal: journalCheckpoints, file: fileCheckpoints, options: options, walk: walk)
            }
            if options.crossCheck && walk.firstBroken == nil {
                let (runs, found) = try Self.crossCheck(db, walk.runs)
                v.runsChecked = runs
                v.problems += found
                let (captures, altered) = try Self.checkCaptures(db, stateDirectory: (journal.path as NSString).deletingLastPathComponent)
                v.capturesChecked = captures
                v.problems += altered
            }
            v.problems.sort { ($0.seq ?? .max) < ($1.seq ?? .max) }
            return v
        }
    }

    func checkCheckpoints(
        _ v: inout Verification, all: [AuditCheckpoint], valid: [Bool], journal: [AuditCheckpoint], file: [AuditCheckpoint],
        options: VerifyOptions, walk: ChainWalk
    ) {
        let keys = Dictionary(options.publicKeys.map { (AuditKeys.keyID($0), $0) }, uniquingKeysWith: { a, _ in a })
        let inFile = Set(file)
        let inJournal = Set(journal.map { "\($0.seq)/\($0.key)" })
        func source(_ c: AuditCheckpoint) -> String {
            inFile.contains(c) ? "in checkpoint file \(options.checkpointFile ?? "")" : "in the journal"
        }
        var good: [AuditCheckpoint] = []
        for (c, ok) in zip(all, valid) {
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
                        "no checkpoint signed by the given public key covers this log (\(journal.count) in the journal, \(file.count) in the checkpoint file): either it was never signed with this key, or its checkpoints were removed"
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
    }

    /// One Bool per checkpoint: signed by the key its id names, among `keys`.
    static func verifySignatures(_ checkpoints: [AuditCheckpoint], keys: [String: Data]) -> [Bool] {
        var results = [Bool](repeating: false, count: checkpoints.count)
        let chunks = max(1, min(ProcessInfo.processInfo.activeProcessorCount, checkpoints.count / 64))
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let keys = keys.compactMapValues { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }
                var i = chunk
                while i < checkpoints.count {
                    out[i] = keys[checkpoints[i].key].map { checkpoints[i].isSigned(by: $0) } ?? false
                    i += chunks
                }
            }
        }
        return results
    }

    // MARK: cross-check against the runs and steps tables

    /// Every run has its start and end events, every step its events, and the outcomes agree: the runs and
    /// steps tables against what the chain walk gathered.
    static func crossCheck(_ db: Database, _ seen: RunEvents) throws -> (runs: Int, problems: [Problem]) {
        var problems: [Problem] = []
        let expectedKind = ["done": "step-end", "satisfied": "step-skip", "failed": "step-fail", "started": "step-start"]
        var inTable = Set<Int>()
        var runs = 0
        let runRows = try Row.fetchCursor(db, sql: "SELECT id, outcome FROM runs ORDER BY started_at, rowid")
        var outcomes: [Int: (id: String, outcome: String)] = [:]
        while let run = try runRows.next() {
            runs += 1
            let id: String = run["id"]
            let outcome: String = run["outcome"]
            guard let r = seen.index[id] else {
                problems.append(
                    Problem(
                        seq: nil,
                        reason: "run \(id) is in the runs table (\(outcome)) but the log has no event of it, not even its run-start"))
                continue
            }
            inTable.insert(r)
            outcomes[r] = (id, outcome)
            if seen.starts[r] == nil {
                problems.append(
                    Problem(seq: nil, reason: "run \(id) is in the runs table (\(outcome)) but the log has no run-start event for it"))
            }
            if outcome != "running" {
                if let end = seen.ends[r] {
                    if end.outcome != outcome {
                        problems.append(
                            Problem(
                                seq: end.seq,
                                reason:
                                    "run \(id): the runs table says \(outcome), but its last run-end event (seq \(end.seq)) says \(end.outcome)"
                            ))
                    }
                } else {
                    problems.append(
                        Problem(seq: nil, reason: "run \(id) is \(outcome) in the runs table, but the log has no run-end event for it"))
                }
            }
        }
        var seen = seen
        let steps = try db.makeStatement(sql: "SELECT run_id, number, status FROM steps")
        let h = steps.sqliteStatement
        defer { sqlite3_reset(h) }
        var lastRunText: [UInt8] = []
        var lastRun: Int?
        let statuses = ["done", "satisfied", "failed", "started", "pending"].map { (Array($0.utf8), $0) }
        while true {
            let rc = sqlite3_step(h)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
            guard let p = sqlite3_column_text(h, 0) else { continue }
            let runBytes = UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(h, 0)))
            if !ChainWalk.same(runBytes, lastRunText) {
                lastRunText = Array(runBytes)
                lastRun = seen.index[String(decoding: runBytes, as: UTF8.self)]
            }
            guard let r = lastRun, let (id, _) = outcomes[r] else { continue }
            let n = Int(sqlite3_column_int64(h, 1))
            let statusBytes = UnsafeBufferPointer(start: sqlite3_column_text(h, 2), count: Int(sqlite3_column_bytes(h, 2)))
            let status = statuses.first { $0.0.elementsEqual(statusBytes) }?.1 ?? String(decoding: statusBytes, as: UTF8.self)
            let last = seen.last(run: r, step: n).map { (seq: $0 >> 3, kind: RunEvents.stepKinds[Int($0 & 7)]) }
            if last != nil { seen.steps[r][n] |= RunEvents.accounted }
            guard let want = expectedKind[status] else {
                if let last {
                    problems.append(
                        Problem(
                            seq: last.seq,
                            reason:
                                "run \(id) step \(n) is \(status) in the steps table, but the log records \(last.kind) for it at seq \(last.seq)"
                        ))
                }
                continue
            }
            guard let last else {
                problems.append(
                    Problem(
                        seq: nil, reason: "run \(id) step \(n) is \(status) in the steps table, but the log has no \(want) event for it"))
                continue
            }
            if last.kind != want {
                problems.append(
                    Problem(
                        seq: last.seq,
                        reason:
                            "run \(id) step \(n) is \(status) in the steps table, but its last event in the log (seq \(last.seq)) is \(last.kind), not \(want)"
                    ))
            }
        }
        for (r, byStep) in seen.steps.enumerated() {
            guard let (id, _) = outcomes[r] else { continue }
            for (n, value) in byStep.enumerated() where value != 0 && value & RunEvents.accounted == 0 {
                problems.append(
                    Problem(
                        seq: value >> 3, reason: "seq \(value >> 3) records step \(n) of run \(id), which the steps table does not hold"))
            }
        }
        for (r, seq) in seen.starts where !inTable.contains(r) {
            problems.append(
                Problem(
                    seq: seq,
                    reason: "seq \(seq) starts run \(seen.ids[r]), which the runs table does not hold: a run was deleted from the journal"))
        }
        return (runs, problems)
    }
}

/// The signature results handed back from the thread that checks them (written before the group is left).
final class SignatureCheck: @unchecked Sendable {
    var valid: [Bool] = []
}

/// The result of the chain walk's second half, written by its thread before the group is left.
final class SecondHalf: @unchecked Sendable {
    var result: Result<ChainWalk, Error>?
}

/// What the chain walk gathers for the cross-check: each run's start, last end and each step's last event.
struct RunEvents {
    /// Run id → its index.
    var index: [String: Int] = [:]
    /// Index → run id.
    var ids: [String] = []
    /// The first run-start of each run.
    var starts: [Int: Int64] = [:]
    /// The last run-end or abandon of each run, with the outcome it records.
    var ends: [Int: (seq: Int64, outcome: String)] = [:]
    /// By run index, then step number: seq << 3 | kind code (``stepKinds``), 0 when the step has no event.
    var steps: [[Int64]] = []

    static let stepKinds = ["step-?", "step-start", "step-end", "step-skip", "step-fail"]
    /// Set on an entry of ``steps`` once the steps table has accounted for it.
    static let accounted: Int64 = 1 << 62

    mutating func record(run: Int, step: Int, _ value: Int64) {
        while steps.count <= run { steps.append([]) }
        if steps[run].count <= step { steps[run].append(contentsOf: repeatElement(0, count: step + 1 - steps[run].count)) }
        steps[run][step] = value
    }

    func last(run: Int, step: Int) -> Int64? {
        guard run < steps.count, step >= 0, step < steps[run].count, steps[run][step] != 0 else { return nil }
        return steps[run][step] & ~Self.accounted
    }
}

/// The hash chain walked once over the raw column bytes: the canonical event is assembled in one reused buffer
/// and hashed, without decoding rows into Swift values.
struct ChainWalk {
    var checked = 0
    var problems: [AuditLog.Problem] = []
    /// The first seq where the chain breaks.
    var firstBroken: Int64?
    /// The stored hash at each seq a checkpoint names.
    var heads: [Int64: String] = [:]
    /// Run and step events, for the cross-check.
    var runs = RunEvents()
    /// The prev_hash of the first event walked, for a walk that starts after seq 1.
    var firstPrev: String?
    /// The stored hash of the last event walked (the genesis value before any).
    var lastHash: String?

    static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static let kindRunStart = Array("run-start".utf8), kindRunEnd = Array("run-end".utf8), kindAbandon = Array("abandon".utf8)
    static let stepPattern = Array("\"step\":\"".utf8), outcomePattern = Array("\"outcome\":\"".utf8)

    /// Where the string value of `"key":"…"` lies in canonical details (values are escaped, so the pattern is a key).
    static func value(_ pattern: [UInt8], in details: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        let n = pattern.count
        guard details.count > n, let base = details.baseAddress else { return nil }
        return pattern.withUnsafeBufferPointer { pat -> Range<Int>? in
            // The byte after the opening quote is rarer than the quote: test it first.
            let second = pat[1]
            var i = 1
            while i + n <= details.count {
                if details[i + 1] == second && details[i] == pat[0] && (details[i - 1] == 0x7B || details[i - 1] == 0x2C)
                    && memcmp(pat.baseAddress!, base + i, n) == 0
                {
                    var j = i + n
                    while j < details.count && details[j] != 0x22 && details[j] != 0x5C { j += 1 }
                    return (i + n)..<j
                }
                i += 1
            }
            return nil
        }
    }

    /// True when the bytes are equal.
    static func same(_ a: UnsafeBufferPointer<UInt8>, _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard let base = a.baseAddress, !b.isEmpty else { return true }
        return b.withUnsafeBufferPointer { memcmp($0.baseAddress!, base, b.count) == 0 }
    }

    /// Records a run or step event for the cross-check.
    mutating func collect(
        seq: Int64, kind: UnsafeBufferPointer<UInt8>, run: UnsafeBufferPointer<UInt8>, details: UnsafeBufferPointer<UInt8>?,
        cache: inout (bytes: [UInt8], index: Int)
    ) {
        func runIndex() -> Int {
            if ChainWalk.same(run, cache.bytes) { return cache.index }
            let id = String(decoding: run, as: UTF8.self)
            let r: Int
            if let known = runs.index[id] {
                r = known
            } else {
                r = runs.ids.count
                runs.ids.append(id)
                runs.index[id] = r
            }
            cache = (Array(run), r)
            return r
        }
        guard let first = kind.first else { return }
        if first == 0x73, kind.count > 5, kind[1] == 0x74, kind[2] == 0x65, kind[3] == 0x70, kind[4] == 0x2D {  // step-
            guard let details, let digits = Self.value(Self.stepPattern, in: details), !digits.isEmpty, digits.count < 10 else { return }
            var step = 0
            for i in digits {
                let d = details[i]
                guard d >= 0x30 && d <= 0x39 else { return }
                step = step * 10 + Int(d - 0x30)
            }
            let code: Int64
            switch kind.count {
            case 10 where kind[5] == 0x73: code = 1  // step-start
            case 8 where kind[5] == 0x65: code = 2  // step-end
            case 9 where kind[5] == 0x73: code = 3  // step-skip
            case 9 where kind[5] == 0x66: code = 4  // step-fail
            default: code = 0
            }
            runs.record(run: runIndex(), step: step, seq << 3 | code)
        } else if Self.same(kind, Self.kindRunStart) {
            let r = runIndex()
            if runs.starts[r] == nil { runs.starts[r] = seq }
        } else if Self.same(kind, Self.kindRunEnd) || Self.same(kind, Self.kindAbandon) {
            let outcome =
                details.flatMap { d in
                    Self.value(Self.outcomePattern, in: d).map { String(decoding: UnsafeBufferPointer(rebasing: d[$0]), as: UTF8.self) }
                } ?? "?"
            runs.ends[runIndex()] = (seq, outcome)
        }
    }

    /// Every event is checked on its own (its hash over its prev_hash and content) and against its predecessor
    /// (its prev_hash equals the stored hash before it), so the chain can be walked in two halves at once, each
    /// on its own read-only connection, and joined where they meet. Below `splitAbove` events, or on one core,
    /// one walk does it all.
    static func walk(_ db: Database, path: String, heads wanted: [Int64], collectRuns: Bool, splitAbove: Int64 = 200_000) throws
        -> ChainWalk
    {
        let bounds = try Row.fetchOne(db, sql: "SELECT min(seq), max(seq) FROM audit_events")
        guard let low: Int64 = bounds?[0], let high: Int64 = bounds?[1], low >= 1, high - low >= splitAbove,
            ProcessInfo.processInfo.activeProcessorCount > 1, path != ":memory:"
        else {
            return try run(db, heads: wanted, collectRuns: collectRuns)
        }
        // The first half starts at seq 1 whatever the smallest seq is, so deleted first events are named.
        let middle = high / 2
        var configuration = Configuration()
        configuration.readonly = true
        let other = try DatabaseQueue(path: path, configuration: configuration)
        let second = SecondHalf()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            second.result = Result {
                try other.read { try run($0, heads: wanted, collectRuns: collectRuns, range: (middle + 1)...high) }
            }
        }
        var first = try run(db, heads: wanted, collectRuns: collectRuns, range: 1...middle)
        group.wait()
        guard let result = second.result else { return first }
        let later = try result.get()
        // The halves join only when the first is intact up to its end and the second starts where it ends.
        guard first.firstBroken == nil else { return first }
        // A second half that broke before its first link (its first seq missing) names that itself.
        guard later.firstPrev == nil || later.firstPrev == first.lastHash else {
            first.fail(
                middle + 1,
                "seq \(middle + 1) does not follow seq \(middle): its prev_hash does not match (a row was deleted, inserted or reordered)")
            return first
        }
        first.merge(later)
        return first
    }

    /// Appends a later half's findings to this one's.
    mutating func merge(_ later: ChainWalk) {
        checked += later.checked
        problems += later.problems
        firstBroken = firstBroken ?? later.firstBroken
        heads.merge(later.heads) { a, _ in a }
        lastHash = later.lastHash
        // Runs: re-keyed into this walk's indexes; the later half's ends and step events are the later ones.
        for (j, id) in later.runs.ids.enumerated() {
            let r: Int
            if let known = runs.index[id] {
                r = known
            } else {
                r = runs.ids.count
                runs.ids.append(id)
                runs.index[id] = r
            }
            if runs.starts[r] == nil, let start = later.runs.starts[j] { runs.starts[r] = start }
            if let end = later.runs.ends[j] { runs.ends[r] = end }
            if j < later.runs.steps.count {
                for (step, value) in later.runs.steps[j].enumerated() where value != 0 { runs.record(run: r, step: step, value) }
            }
        }
    }

    static func run(_ db: Database, heads wanted: [Int64], collectRuns: Bool, range: ClosedRange<Int64>? = nil) throws -> ChainWalk {
        var walk = ChainWalk()
        let statement = try db.makeStatement(
            sql: "SELECT seq, at, run_id, site, actor, kind, details, prev_hash, hash, os_user, os_uid, host FROM audit_events"
                + (range == nil ? "" : " WHERE seq >= ? AND seq <= ?") + " ORDER BY seq"
        )
        if let range { try statement.setArguments([range.lowerBound, range.upperBound]) }
        let h = statement.sqliteStatement
        defer { sqlite3_reset(h) }
        let hex = Self.hex
        var buf = ByteBuffer(capacity: 4096)
        defer { buf.free() }
        var prev = Array(AuditLog.genesis.utf8)
        var expectedSeq: Int64 = range?.lowerBound ?? 1
        // A later half takes its first event's prev_hash as given; the join checks it against the half before.
        var trustFirstPrev = (range?.lowerBound ?? 1) > 1
        var nextWanted = 0
        var runCache: (bytes: [UInt8], index: Int) = ([], -1)

        func text(_ i: Int32) -> UnsafeBufferPointer<UInt8>? {
            // NULL for a NULL value; an empty text has a non-NULL pointer.
            guard let p = sqlite3_column_text(h, i) else { return nil }
            return UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(h, i)))
        }
        func quoted(_ p: UnsafeBufferPointer<UInt8>?) {
            guard let p else {
                literal("null")
                return
            }
            buf.append(0x22)
            if !p.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
                buf.append(p)
            } else {
                for b in p {
                    switch b {
                    case 0x22: literal("\\\"")
                    case 0x5C: literal("\\\\")
                    case 0x0A: literal("\\n")
                    case 0x0D: literal("\\r")
                    case 0x09: literal("\\t")
                    case 0..<0x20:
                        for c in [0x5C, 0x75, 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 0x0F)]] { buf.append(c) }
                    default: buf.append(b)
                    }
                }
            }
            buf.append(0x22)
        }
        func literal(_ s: StaticString) {
            buf.append(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
        }
        var digits = [UInt8](repeating: 0, count: 20)
        func decimal(_ n: Int64) {
            if n < 0 {
                var s = String(n)
                s.withUTF8 { buf.append($0) }
                return
            }
            var v = UInt64(n)
            var i = 20
            repeat {
                i -= 1
                digits[i] = 0x30 &+ UInt8(v % 10)
                v /= 10
            } while v > 0
            for d in digits[i...] { buf.append(d) }
        }
        func equal(_ a: UnsafeBufferPointer<UInt8>?, _ b: [UInt8]) -> Bool {
            guard let a, a.count == b.count else { return false }
            return b.withUnsafeBufferPointer { memcmp($0.baseAddress!, a.baseAddress!, b.count) == 0 }
        }

        while true {
            let rc = sqlite3_step(h)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
            let seq = sqlite3_column_int64(h, 0)
            if seq != expectedSeq {
                let what =
                    seq > expectedSeq
                    ? "seq \(expectedSeq)\(seq - expectedSeq > 1 ? "…\(seq - 1)" : "") is missing (deleted)" : "seq \(seq) is out of order"
                walk.fail(expectedSeq, what)
                break
            }
            let prevHash = text(7)
            if trustFirstPrev, let given = prevHash, given.count == 64 {
                prev = Array(given)
                walk.firstPrev = String(decoding: given, as: UTF8.self)
                trustFirstPrev = false
            }
            guard equal(prevHash, prev) else {
                walk.fail(
                    seq,
                    "seq \(seq) does not follow seq \(seq - 1): its prev_hash does not match (a row was deleted, inserted or reordered)")
                break
            }
            buf.count = 0
            buf.append(prevHash!)
            literal("{\"actor\":")
            quoted(text(4))
            literal(",\"at\":")
            quoted(text(1))
            literal(",\"details\":")
            if let d = text(6) { buf.append(d) } else { literal("null") }
            if let host = text(11) {
                literal(",\"host\":")
                quoted(host)
            }
            literal(",\"kind\":")
            quoted(text(5))
            if sqlite3_column_type(h, 10) != SQLITE_NULL {
                literal(",\"osUid\":")
                decimal(sqlite3_column_int64(h, 10))
            }
            if let user = text(9) {
                literal(",\"osUser\":")
                quoted(user)
            }
            literal(",\"run\":")
            quoted(text(2))
            literal(",\"seq\":")
            decimal(seq)
            literal(",\"site\":")
            quoted(text(3))
            literal("}")
            var hasher = SHA256()
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buf.base, count: buf.count))
            let digest = hasher.finalize()
            let stored = text(8)
            var matches = stored?.count == 64
            if matches, let stored {
                digest.withUnsafeBytes { raw in
                    for i in 0..<32 where stored[2 * i] != hex[Int(raw[i] >> 4)] || stored[2 * i + 1] != hex[Int(raw[i] & 0x0F)] {
                        matches = false
                        break
                    }
                }
            }
            guard matches, let stored else {
                walk.fail(seq, "seq \(seq) was edited: its content no longer matches its hash")
                break
            }
            prev.withUnsafeMutableBufferPointer { p in _ = memcpy(p.baseAddress!, stored.baseAddress!, 64) }
            while nextWanted < wanted.count && wanted[nextWanted] < seq { nextWanted += 1 }
            if nextWanted < wanted.count && wanted[nextWanted] == seq { walk.heads[seq] = String(decoding: stored, as: UTF8.self) }
            if collectRuns, let run = text(2), let kind = text(5) {
                walk.collect(seq: seq, kind: kind, run: run, details: text(6), cache: &runCache)
            }
            expectedSeq += 1
            walk.checked += 1
        }
        if walk.firstBroken == nil { walk.lastHash = String(decoding: prev, as: UTF8.self) }
        if let range, walk.firstBroken == nil, expectedSeq <= range.upperBound {
            walk.fail(expectedSeq, "seq \(expectedSeq)\(range.upperBound > expectedSeq ? "…\(range.upperBound)" : "") is missing (deleted)")
        }
        return walk
    }

    mutating func fail(_ seq: Int64, _ reason: String) {
        firstBroken = seq
        problems.append(AuditLog.Problem(seq: seq, reason: reason))
    }
}

/// A growable byte buffer written with memcpy: the chain walk assembles every event in one.
struct ByteBuffer {
    var base: UnsafeMutablePointer<UInt8>
    var count = 0
    var capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func free() { base.deallocate() }

    mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: max(capacity * 2, count + n))
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = max(capacity * 2, count + n)
    }

    mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let from = bytes.baseAddress, !bytes.isEmpty else { return }
        reserve(bytes.count)
        (base + count).update(from: from, count: bytes.count)
        count += bytes.count
    }

    mutating func append(_ byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }
}
