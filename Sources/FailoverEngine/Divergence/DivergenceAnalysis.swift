import Foundation

/// A relation a lost transaction changed, before and after its name is known.
public struct TouchedRelation: Sendable, Codable, Equatable {
    /// Its files as WAL names them; nil for a relation known only by OID (a TRUNCATE names OIDs).
    public var node: RelFileNode?
    /// Its OID, when a TRUNCATE named it.
    public var oid: UInt32?
    /// The database a TRUNCATE happened in (taken from the files that transaction created or changed).
    public var database: UInt32?
    /// `schema.table`, or what is known of it (`created after the fork: relfilenode N`).
    public var name: String
    /// `table`, `toast` (with the table it belongs to in `name`), `catalog`, or `unknown`.
    public var kind: String
    /// Its file was created after the fork (CREATE TABLE, TRUNCATE, a rewrite on the old primary).
    public var createdAfterFork: Bool
    /// Changes by operation (`insert`, `update`, `delete`, `lock`): tuples as WAL counts them.
    public var operations: [String: Int]
    /// It was truncated: its rows before are gone, how many is not in WAL.
    public var truncated: Bool

    /// Rows inserted, updated and deleted.
    public var rows: Int { (operations["insert"] ?? 0) + (operations["update"] ?? 0) + (operations["delete"] ?? 0) }
}

/// A transaction the old primary committed after the fork: the new primary never got it.
public struct LostTransaction: Sendable, Codable, Equatable {
    /// Its top-level transaction id (32 bits, as WAL records it).
    public var xid: UInt32
    /// The subtransactions that committed with it.
    public var subtransactions: [UInt32]
    /// The commit time as WAL records it (`2026-12-07 14:28:47.454740 UTC`).
    public var commitTime: String
    /// Where its commit record starts.
    public var commitLSN: LSN
    /// The gid, when it committed with COMMIT PREPARED.
    public var preparedAs: String?
    /// It changed the catalog (DDL: its commit invalidates catalog caches, or it created relation files).
    public var ddl: Bool
    /// Its first change lies before the fork (it was open at the fork and committed after it).
    public var wroteBeforeFork: Bool
    /// Where its first change in the captured WAL starts.
    public var firstChangeLSN: LSN?
    /// The relations it changed, user tables first.
    public var relations: [TouchedRelation]
    /// Its status in the old primary's pg_xact, when read (`committed`, `in progress`: pg_xact is written at
    /// checkpoints, so a crash can leave a committed transaction `in progress` there; WAL decides).
    public var pgXact: String?
    /// Row changes decoded from the isolated copy (`captureLostRows`), when asked and available.
    public var rowChanges: [RowChange]?

    /// Rows inserted, updated or deleted in user tables; nil when a TRUNCATE makes the count unknown.
    public var rows: Int? {
        let user = relations.filter { $0.kind == "table" || $0.kind == "unknown" }
        if user.contains(where: \.truncated) { return nil }
        return user.reduce(0) { $0 + $1.rows }
    }

    /// Every transaction id whose changes are this transaction's.
    public var allXids: [UInt32] { [xid] + subtransactions }
}

/// A prepared transaction the WAL leaves neither committed nor rolled back.
public struct InDoubtTransaction: Sendable, Codable, Equatable {
    /// Its transaction id.
    public var xid: UInt32
    /// Its gid.
    public var gid: String
    /// When it was prepared.
    public var prepareTime: String
    /// Where its PREPARE record starts.
    public var prepareLSN: LSN
    /// Prepared before the fork: the new primary holds it prepared too, and can commit or roll it back.
    public var preparedBeforeFork: Bool
    /// The relations it changed.
    public var relations: [TouchedRelation]
}

/// What the diverged WAL says: the transactions committed after the fork, the ones left in doubt, and what
/// did not count.
public struct DivergenceAnalysis: Sendable, Codable, Equatable {
    /// Committed after the fork, in commit order.
    public var lost: [LostTransaction] = []
    /// Prepared and never finished in the captured WAL.
    public var inDoubt: [InDoubtTransaction] = []
    /// ABORT records after the fork (transactions and rolled-back savepoints): not lost.
    public var rolledBack: [UInt32] = []
    /// Transaction ids that changed something and never ended in the captured WAL (open when the old primary
    /// stopped): never committed, not lost.
    public var openAtEnd: [UInt32] = []
    /// Records read.
    public var records: Int = 0
    /// The last record read.
    public var lastRecordLSN: LSN?

    /// Reads `records` (in WAL order, from `start`) against the fork at `fork`.
    public init(records: [WALRecord], fork: LSN, start: LSN) {
        self.init(entries: records.map(WALEntry.init), fork: fork, start: start)
    }

    /// Reads `entries` (in WAL order, from `start`) against the fork at `fork`.
    public init(entries: [WALEntry], fork: LSN, start: LSN) {
        self.init()
        var reader = Reader(fork: fork)
        for entry in entries { reader.read(entry) }
        reader.finish(into: &self, start: start)
    }

    /// An empty analysis.
    public init() {}

    /// Whether WAL read from the capture's start covers every transaction open at the fork: some snapshot
    /// (checkpoint or running-transactions record) before the fork, at or after `start`, was taken before
    /// any of them had an xid. False means the capture should begin earlier.
    public static func coversOpenTransactions(_ records: [WALRecord], fork: LSN, start: LSN) -> (covered: Bool, open: [UInt32]) {
        coversOpenTransactions(records.map(WALEntry.init), fork: fork, start: start)
    }

    /// ``coversOpenTransactions(_:fork:start:)`` over entries.
    public static func coversOpenTransactions(_ records: [WALEntry], fork: LSN, start: LSN) -> (covered: Bool, open: [UInt32]) {
        var ended = Set<UInt32>()
        var wrote = Set<UInt32>()
        var snapshots: [(from: LSN, nextXid: UInt32)] = []
        var lastRunning: [UInt32] = []
        for r in records where r.lsn < fork {
            if r.xid != 0 { wrote.insert(r.xid) }
            switch r.event {
            case .commit(_, let subs, _, _, let prepared), .abort(_, let subs, let prepared):
                ended.insert(prepared ?? r.xid)
                ended.formUnion(subs)
            case .checkpoint(let redo, let next, let oldest):
                if redo >= start { snapshots.append((redo, next)) }
                lastRunning = oldest < next ? [oldest] : []
            case .runningXacts(let next, let oldest, let xids, _):
                snapshots.append((r.lsn, next))
                lastRunning = xids + (oldest < next ? [oldest] : [])
            default: break
            }
        }
        let open = Set(wrote.union(lastRunning)).subtracting(ended).filter { $0 != 0 }.sorted()
        guard let oldest = open.first else { return (!snapshots.isEmpty || records.first.map { $0.lsn >= fork } == true, []) }
        let covered = snapshots.contains { xidPrecedesOrEquals($0.nextXid, oldest) }
        return (covered, open)
    }

    /// `a <= b` in the circular xid space.
    static func xidPrecedesOrEquals(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) <= 0 }

    /// The streaming state of the reader.
    struct Reader {
        let fork: LSN
        var work: [UInt32: Work] = [:]
        var topOf: [UInt32: UInt32] = [:]
        var commits: [(xid: UInt32, lsn: LSN, time: String, subs: [UInt32], ddl: Bool, gid: String?)] = []
        var prepares: [UInt32: (gid: String, time: String, lsn: LSN, subs: [UInt32])] = [:]
        var ended = Set<UInt32>()
        var rolledBack: [UInt32] = []
        var records = 0
        var last: LSN?

        init(fork: LSN) { self.fork = fork }

        /// The Work of the transaction the last heap record belonged to, out of `work` while cached.
        var cached: Work?
        var cachedXid: UInt32 = 0

        mutating func flush() {
            if let c = cached { work[cachedXid] = c }
            cached = nil
            cachedXid = 0
        }

        mutating func read(_ r: WALEntry) {
            if cached != nil && (cachedXid != r.xid || !r.isHeap) { flush() }
            records += 1
            last = r.lsn
            switch r.event {
            case .commit(let time, let subs, _, let inval, let prepared):
                let xid = prepared ?? r.xid
                let prepare = prepared.flatMap { prepares[$0] }
                let all = subs + (prepare?.subs ?? [])
                for s in all { topOf[s] = xid }
                ended.insert(xid)
                ended.formUnion(all)
                if let prepared { prepares[prepared] = nil }
                if r.lsn >= fork { commits.append((xid, r.lsn, time, Array(Set(all)).sorted(), inval, prepare?.gid)) }
            case .abort(_, let subs, let prepared):
                let xid = prepared ?? r.xid
                ended.insert(xid)
                ended.formUnion(subs)
                if let prepared { prepares[prepared] = nil }
                if r.lsn >= fork { rolledBack.append(xid) }
            case .prepare(let gid, let time, let subs):
                prepares[r.xid] = (gid, time, r.lsn, subs)
                for s in subs { topOf[s] = r.xid }
            case .assignment(let top, let subs):
                for s in subs { topOf[s] = top }
            case .heap(let operation, let rows):
                guard r.xid != 0 else { return }
                // Consecutive records of one transaction (most of them) change one cached Work, not the dictionary.
                if cachedXid != r.xid {
                    flush()
                    cachedXid = r.xid
                    cached = work.removeValue(forKey: r.xid) ?? Work(first: r.lsn)
                }
                for node in r.relations { cached!.add(node, operation, rows) }
            case .truncate(let oids):
                guard r.xid != 0 else { return }
                work[r.xid, default: Work(first: r.lsn)].truncated.formUnion(oids)
            case .storageCreate(let node):
                guard r.xid != 0 else { return }
                work[r.xid, default: Work(first: r.lsn)].created[node] = r.lsn
            default:
                if r.xid != 0, work[r.xid] == nil, r.isHeap { work[r.xid] = Work(first: r.lsn) }
            }
        }

        func relations(of xids: [UInt32]) -> (relations: [TouchedRelation], first: LSN?, ddl: Bool) {
            var byNode: [RelFileNode: TouchedRelation] = [:]
            var byOID: [UInt32: TouchedRelation] = [:]
            var first: LSN?
            var ddl = false
            var createdAfterFork = Set<RelFileNode>()
            for x in xids { for (node, at) in work[x]?.created ?? [:] where at >= fork { createdAfterFork.insert(node) } }
            for x in xids {
                guard let w = work[x] else { continue }
                first = min(first ?? w.first, w.first)
                if !w.created.isEmpty { ddl = true }
                for (node, ops) in w.operations {
                    var t =
                        byNode[node]
                        ?? TouchedRelation(
                            node: node, oid: nil, database: nil, name: "", kind: "unknown",
                            createdAfterFork: createdAfterFork.contains(node),
                            operations: [:], truncated: false)
                    for (op, n) in ops.byName { t.operations[op, default: 0] += n }
                    byNode[node] = t
                }
                let database = w.created.keys.first?.database ?? w.operations.keys.first?.database
                for oid in w.truncated {
                    byOID[oid] = TouchedRelation(
                        node: nil, oid: oid, database: database, name: "", kind: "unknown", createdAfterFork: false, operations: [:],
                        truncated: true)
                }
            }
            let list = byNode.values.sorted { $0.node! < $1.node! } + byOID.values.sorted { $0.oid! < $1.oid! }
            return (list, first, ddl)
        }

        mutating func finish(into a: inout DivergenceAnalysis, start: LSN) {
            flush()
            a.records = records
            a.lastRecordLSN = last
            for c in commits {
                let xids = [c.xid] + c.subs
                let (relations, first, created) = relations(of: xids)
                a.lost.append(
                    LostTransaction(
                        xid: c.xid, subtransactions: c.subs, commitTime: c.time, commitLSN: c.lsn, preparedAs: c.gid, ddl: c.ddl || created,
                        wroteBeforeFork: first.map { $0 < fork } ?? false, firstChangeLSN: first, relations: relations, pgXact: nil,
                        rowChanges: nil))
            }
            for (xid, p) in prepares.sorted(by: { $0.value.lsn < $1.value.lsn }) {
                a.inDoubt.append(
                    InDoubtTransaction(
                        xid: xid, gid: p.gid, prepareTime: p.time, prepareLSN: p.lsn, preparedBeforeFork: p.lsn < fork,
                        relations: relations(of: [xid] + p.subs).relations))
            }
            a.rolledBack = rolledBack
            let prepared = Set(prepares.keys).union(prepares.values.flatMap(\.subs))
            a.openAtEnd = work.keys.filter { x in
                !ended.contains(x) && !prepared.contains(x) && !(topOf[x].map { ended.contains($0) || prepared.contains($0) } ?? false)
            }.sorted()
        }
    }

    /// What one transaction id changed.
    struct Work {
        var first: LSN
        var operations: [RelFileNode: Counts] = [:]
        var truncated = Set<UInt32>()
        var created: [RelFileNode: LSN] = [:]

        mutating func add(_ node: RelFileNode, _ operation: String, _ rows: Int) {
            operations[node, default: Counts()].add(operation, rows)
        }
    }

    /// Tuples by operation, without a dictionary per relation.
    struct Counts {
        var insert = 0
        var update = 0
        var delete = 0
        var lock = 0

        mutating func add(_ operation: String, _ rows: Int) {
            switch operation.utf8.first {
            case UInt8(ascii: "i"): insert += rows
            case UInt8(ascii: "u"): update += rows
            case UInt8(ascii: "d"): delete += rows
            default: lock += 1
            }
        }

        /// The non-zero counts by name.
        var byName: [String: Int] {
            var out: [String: Int] = [:]
            for (name, n) in [("insert", insert), ("update", update), ("delete", delete), ("lock", lock)] where n > 0 { out[name] = n }
            return out
        }
    }
}
