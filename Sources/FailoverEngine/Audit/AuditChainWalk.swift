import Foundation
import GRDB

#if canImport(GRDBSQLite)
    import GRDBSQLite
#elseif canImport(SQLite3)
    import SQLite3
#endif

/// The hash chain walked once over the raw column bytes: each event is assembled by ``AuditEventEncoder`` in
/// one reused buffer and hashed, without decoding rows into Swift values.
struct ChainWalk: Sendable {
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

    /// Walks events up to `last` (the log's end when it was read), in two halves at once on two connections
    /// when the log is long. Every event is checked on its own (its hash over its prev_hash and content) and
    /// against its predecessor (its prev_hash equals the stored hash before it), so the halves need nothing
    /// from each other but the hash where they meet. Below `splitAbove` events, or on one core, one walk does
    /// it all. Each walk runs in GRDB's reader queue for its connection; this task waits without blocking.
    static func walk(
        _ journal: Journal, first: Int64?, last: Int64?, heads: [Int64], collectRuns: Bool, splitAbove: Int64 = 200_000
    ) async throws -> ChainWalk {
        guard let low = first, let high = last, low >= 1, high - low >= splitAbove, ProcessInfo.processInfo.activeProcessorCount > 1,
            journal.path != ":memory:"
        else {
            return try await journal.db.read { db in try run(db, heads: heads, collectRuns: collectRuns, through: last ?? 0) }
        }
        // The first half starts at the first row whatever its seq is, so deleted or inserted first events are named.
        let middle = high / 2
        var configuration = Configuration()
        configuration.readonly = true
        let other = try DatabaseQueue(path: journal.path, configuration: configuration)
        async let later = other.read { db in
            try run(db, heads: heads, collectRuns: collectRuns, from: middle + 1, through: high)
        }
        var walk = try await journal.db.read { db in try run(db, heads: heads, collectRuns: collectRuns, through: middle) }
        let second = try await later
        // The halves join only when the first is intact up to its end and the second starts where it ends.
        guard walk.firstBroken == nil else { return walk }
        // A second half that broke before its first link (its first seq missing) names that itself.
        guard second.firstPrev == nil || second.firstPrev == walk.lastHash else {
            walk.fail(
                middle + 1,
                "seq \(middle + 1) does not follow seq \(middle): its prev_hash does not match (a row was deleted, inserted or reordered)")
            return walk
        }
        walk.merge(second)
        return walk
    }

    /// Appends a later half's findings to this one's.
    mutating func merge(_ later: ChainWalk) {
        checked += later.checked
        problems += later.problems
        firstBroken = firstBroken ?? later.firstBroken
        heads.merge(later.heads) { a, _ in a }
        lastHash = later.lastHash
        runs.merge(later.runs)
    }

    /// Walks the events in seq order, from the first row (or from `from`, taking its prev_hash as given: the
    /// join checks it), through `through` (nil: to the end).
    static func run(_ db: Database, heads wanted: [Int64], collectRuns: Bool, from: Int64? = nil, through: Int64? = nil) throws
        -> ChainWalk
    {
        var walk = ChainWalk()
        var bounds: [String] = []
        var arguments: [Int64] = []
        if let from { bounds.append("seq >= ?"); arguments.append(from) }
        if let through { bounds.append("seq <= ?"); arguments.append(through) }
        let statement = try db.makeStatement(
            sql: "SELECT seq, at, run_id, site, actor, kind, details, prev_hash, hash, os_user, os_uid, host FROM audit_events"
                + (bounds.isEmpty ? "" : " WHERE " + bounds.joined(separator: " AND ")) + " ORDER BY seq"
        )
        try statement.setArguments(StatementArguments(arguments))
        let h = statement.sqliteStatement
        defer { sqlite3_reset(h) }
        var encoder = AuditEventEncoder()
        var prev = Array(AuditLog.genesis.utf8)
        var expectedSeq: Int64 = from ?? 1
        // A later half takes its first event's prev_hash as given; the join checks it against the half before.
        var trustFirstPrev = (from ?? 1) > 1
        var nextWanted = 0
        var runCache: (bytes: [UInt8], index: Int) = ([], -1)

        func text(_ i: Int32) -> UnsafeBufferPointer<UInt8>? {
            // NULL for a NULL value; an empty text has a non-NULL pointer.
            guard let p = sqlite3_column_text(h, i) else { return nil }
            return UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(h, i)))
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
            guard let prevHash, ChainWalk.same(prevHash, prev) else {
                walk.fail(
                    seq,
                    "seq \(seq) does not follow seq \(seq - 1): its prev_hash does not match (a row was deleted, inserted or reordered)")
                break
            }
            encoder.encode(
                prevHash: prevHash,
                .init(
                    actor: text(4), at: text(1), details: text(6), host: text(11), kind: text(5),
                    osUID: sqlite3_column_type(h, 10) == SQLITE_NULL ? nil : sqlite3_column_int64(h, 10), osUser: text(9), run: text(2),
                    seq: seq, site: text(3)))
            guard let stored = text(8), AuditEventEncoder.matches(encoder.digest(), hex: stored) else {
                walk.fail(seq, "seq \(seq) was edited: its content no longer matches its hash")
                break
            }
            prev.withUnsafeMutableBufferPointer { p in _ = memcpy(p.baseAddress!, stored.baseAddress!, 64) }
            while nextWanted < wanted.count && wanted[nextWanted] < seq { nextWanted += 1 }
            if nextWanted < wanted.count && wanted[nextWanted] == seq { walk.heads[seq] = String(decoding: stored, as: UTF8.self) }
            if collectRuns, let run = text(2), let kind = text(5) {
                walk.runs.collect(seq: seq, kind: kind, run: run, details: text(6), cache: &runCache)
            }
            expectedSeq += 1
            walk.checked += 1
        }
        if walk.firstBroken == nil { walk.lastHash = String(decoding: prev, as: UTF8.self) }
        if let through, walk.firstBroken == nil, expectedSeq <= through {
            walk.fail(expectedSeq, "seq \(expectedSeq)\(through > expectedSeq ? "…\(through)" : "") is missing (deleted)")
        }
        return walk
    }

    mutating func fail(_ seq: Int64, _ reason: String) {
        firstBroken = seq
        problems.append(AuditLog.Problem(seq: seq, reason: reason))
    }

    /// True when the bytes are equal.
    static func same(_ a: UnsafeBufferPointer<UInt8>, _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard let base = a.baseAddress, !b.isEmpty else { return true }
        return b.withUnsafeBufferPointer { memcmp($0.baseAddress!, base, b.count) == 0 }
    }
}
