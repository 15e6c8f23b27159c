import Foundation

/// One WAL record as pg_waldump prints it, reduced to what the lost-transaction report needs.
public struct WALRecord: Sendable, Equatable {
    /// The resource manager (`Heap`, `Transaction`…).
    public var rmgr: String
    /// The transaction id that wrote it; 0 when none.
    public var xid: UInt32
    /// Where it starts.
    public var lsn: LSN
    /// The description pg_waldump prints, without its block references.
    public var desc: String
    /// The relations whose blocks it references (main fork and others alike).
    public var relations: [RelFileNode]
}

/// Parses pg_waldump's record lines: `rmgr: Heap len (rec/tot): 59/59, tx: 735, lsn: 0/03000060, prev …,
/// desc: INSERT off 2 flags 0x00, blkref #0: rel 1663/5/16384 blk 0`.
public enum WALDumpParser {
    /// The record of one line; nil for any other line.
    public static func record(_ line: Substring) -> WALRecord? {
        guard line.hasPrefix("rmgr: ") else { return nil }
        let afterRmgr = line.dropFirst(6)
        guard let space = afterRmgr.firstIndex(of: " ") else { return nil }
        let rmgr = String(afterRmgr[..<space])
        guard let txRange = line.range(of: ", tx:"), let lsnRange = line.range(of: ", lsn: ", range: txRange.upperBound..<line.endIndex),
            let descRange = line.range(of: ", desc: ", range: lsnRange.upperBound..<line.endIndex)
        else { return nil }
        guard let xid = UInt32(line[txRange.upperBound..<lsnRange.lowerBound].trimmingCharacters(in: .whitespaces)) else { return nil }
        let lsnText = line[lsnRange.upperBound...].prefix { $0 != "," }
        guard let lsn = LSN(String(lsnText)) else { return nil }
        var desc = line[descRange.upperBound...]
        var relations: [RelFileNode] = []
        if let first = desc.range(of: ", blkref #") {
            var rest = desc[first.lowerBound...]
            desc = desc[..<first.lowerBound]
            while let ref = rest.range(of: ": rel ") {
                let spec = rest[ref.upperBound...].prefix { $0 != " " && $0 != "," }
                let parts = spec.split(separator: "/")
                if parts.count == 3, let spc = UInt32(parts[0]), let db = UInt32(parts[1]), let rel = UInt32(parts[2]) {
                    let node = RelFileNode(tablespace: spc, database: db, relation: rel)
                    if !relations.contains(node) { relations.append(node) }
                }
                rest = rest[ref.upperBound...]
            }
        }
        return WALRecord(rmgr: rmgr, xid: xid, lsn: lsn, desc: String(desc.trimmingCharacters(in: .whitespaces)), relations: relations)
    }

    /// The records of pg_waldump's whole output, in order.
    public static func records(_ text: String) -> [WALRecord] {
        text.split(separator: "\n").compactMap { record($0) }
    }
}

/// What a record's description says, for the records the report reads.
public enum WALEvent: Sendable, Equatable {
    /// A top-level commit (COMMIT, or COMMIT_PREPARED of `preparedXid`).
    case commit(time: String, subxacts: [UInt32], droppedFiles: [RelFileNode], invalidatesCatalog: Bool, preparedXid: UInt32?)
    /// A rollback (ABORT, or ABORT_PREPARED of `preparedXid`).
    case abort(time: String, subxacts: [UInt32], preparedXid: UInt32?)
    /// PREPARE TRANSACTION.
    case prepare(gid: String, time: String, subxacts: [UInt32])
    /// Subtransactions assigned to their top-level transaction.
    case assignment(top: UInt32, subxacts: [UInt32])
    /// A heap change: `rows` tuples of `operation` (insert, update, delete, lock) on the record's relation.
    case heap(operation: String, rows: Int)
    /// TRUNCATE of relations named by OID.
    case truncate(relationOIDs: [UInt32])
    /// A relation file created (CREATE TABLE, TRUNCATE, a rewrite).
    case storageCreate(RelFileNode)
    /// A checkpoint record: its redo point, the next xid then and the oldest running one.
    case checkpoint(redo: LSN, nextXid: UInt32, oldestRunning: UInt32)
    /// A running-transactions snapshot.
    case runningXacts(nextXid: UInt32, oldestRunning: UInt32, xids: [UInt32], overflowed: Bool)
    /// Anything else.
    case other

    /// Interprets `record`.
    public init(_ record: WALRecord) {
        let d = Substring(record.desc)
        switch record.rmgr {
        case "Transaction":
            self = Self.transaction(d)
        case "Heap":
            if d.hasPrefix("TRUNCATE") {
                self = .truncate(relationOIDs: Self.numbers(after: " relids ", in: d))
                return
            }
            let word = d.prefix { $0 != " " }
            switch word {
            case "INSERT", "INSERT+INIT": self = .heap(operation: "insert", rows: 1)
            case "UPDATE", "HOT_UPDATE", "UPDATE+INIT", "HOT_UPDATE+INIT": self = .heap(operation: "update", rows: 1)
            case "DELETE": self = .heap(operation: "delete", rows: 1)
            case "LOCK": self = .heap(operation: "lock", rows: 0)
            default: self = .other
            }
        case "Heap2":
            if d.hasPrefix("MULTI_INSERT"), let n = Self.numbers(after: " ", in: d.drop { $0 != " " }).first {
                self = .heap(operation: "insert", rows: Int(n))
            } else if d.hasPrefix("LOCK_UPDATED") {
                self = .heap(operation: "lock", rows: 0)
            } else {
                self = .other
            }
        case "Storage":
            if d.hasPrefix("CREATE "), let node = RelFileNode(path: d.dropFirst(7).prefix { $0 != " " }) {
                self = .storageCreate(node)
            } else {
                self = .other
            }
        case "XLOG":
            // `…; xid 0:725; …` is the next xid as epoch:xid.
            let nextText = d.range(of: "; xid ").map { d[$0.upperBound...].prefix { $0 != ";" } } ?? ""
            guard d.hasPrefix("CHECKPOINT"), let redo = Self.lsn(after: "redo ", in: d),
                let nextXid = nextText.split(separator: ":").last.flatMap({ UInt32($0) }),
                let oldest = Self.numbers(after: "oldest running xid ", in: d).first
            else {
                self = .other
                return
            }
            self = .checkpoint(redo: redo, nextXid: nextXid, oldestRunning: oldest)
        case "Standby":
            guard d.hasPrefix("RUNNING_XACTS"), let next = Self.numbers(after: "nextXid ", in: d).first,
                let oldest = Self.numbers(after: "oldestRunningXid ", in: d).first
            else {
                self = .other
                return
            }
            var xids: [UInt32] = []
            for marker in [" xacts: ", " subxacts: "] { xids += Self.numbers(after: marker, in: d) }
            self = .runningXacts(nextXid: next, oldestRunning: oldest, xids: xids, overflowed: d.contains("overflowed"))
        default:
            self = .other
        }
    }

    static func transaction(_ d: Substring) -> WALEvent {
        let word = d.prefix { $0 != " " }
        let clauses = d.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        let subxacts = clauses.first { $0.hasPrefix("subxacts:") }.map { numbers(after: "subxacts:", in: Substring($0)) } ?? []
        switch word {
        case "COMMIT", "COMMIT_PREPARED":
            let prepared = word == "COMMIT_PREPARED" ? numbers(after: "COMMIT_PREPARED ", in: d).first : nil
            let rels =
                clauses.first { $0.hasPrefix("rels:") }.map {
                    $0.dropFirst(5).split(separator: " ").compactMap { RelFileNode(path: $0) }
                } ?? []
            let inval = clauses.first { $0.hasPrefix("inval msgs:") } ?? ""
            return .commit(
                time: time(in: d), subxacts: subxacts, droppedFiles: rels,
                invalidatesCatalog: inval.contains("catcache") || inval.contains("relcache"), preparedXid: prepared)
        case "ABORT", "ABORT_PREPARED":
            let prepared = word == "ABORT_PREPARED" ? numbers(after: "ABORT_PREPARED ", in: d).first : nil
            return .abort(time: time(in: d), subxacts: subxacts, preparedXid: prepared)
        case "PREPARE":
            // `PREPARE gid NAME: TIME; …`: the gid ends at the last `: ` before the time.
            let head = clauses.first ?? ""
            let body = head.dropFirst("PREPARE gid ".count)
            let t = time(in: Substring(head))
            let gid = t.isEmpty ? String(body) : String(body.dropLast(t.count + 2))
            return .prepare(gid: gid, time: t, subxacts: subxacts)
        case "ASSIGNMENT":
            guard let top = numbers(after: "xtop ", in: d).first else { return .other }
            return .assignment(top: top, subxacts: numbers(after: "subxacts:", in: d))
        default:
            return .other
        }
    }

    /// The `YYYY-MM-DD HH:MM:SS[.ffffff] ZONE` timestamp in the first clause of `d`, or "".
    static func time(in d: Substring) -> String {
        let head = d.prefix { $0 != ";" }
        let bytes = Array(head.utf8)
        guard bytes.count >= 19 else { return "" }
        for i in 0...(bytes.count - 19) where isDigit(bytes[i]) && bytes[i + 4] == UInt8(ascii: "-") && bytes[i + 10] == UInt8(ascii: " ") {
            guard i == 0 || bytes[i - 1] == UInt8(ascii: " ") else { continue }
            return String(decoding: bytes[i...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
        return ""
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }

    /// The unsigned numbers that follow `marker` in `d`, up to the next `;` or `,`.
    static func numbers(after marker: String, in d: Substring) -> [UInt32] {
        guard let r = d.range(of: marker) else { return [] }
        return d[r.upperBound...].prefix { $0 != ";" && $0 != "," }.split(separator: " ").compactMap {
            UInt32($0.hasSuffix(":") ? $0.dropLast() : $0)
        }
    }

    static func lsn(after marker: String, in d: Substring) -> LSN? {
        guard let r = d.range(of: marker) else { return nil }
        return LSN(String(d[r.upperBound...].prefix { $0 != ";" && $0 != " " }))
    }
}
