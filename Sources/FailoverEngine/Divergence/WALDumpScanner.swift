import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A WAL record reduced to what the analysis reads: who wrote it, where, what it means, and the relations
/// whose blocks it references (heap records only).
public struct WALEntry: Sendable, Equatable {
    /// The transaction id that wrote it; 0 when none.
    public var xid: UInt32
    /// Where it starts.
    public var lsn: LSN
    /// What it means.
    public var event: WALEvent
    /// A heap record (Heap or Heap2).
    public var isHeap: Bool
    /// The relations it references (heap records only).
    public var relations: [RelFileNode]

    /// The entry of a parsed record.
    public init(_ r: WALRecord) {
        xid = r.xid
        lsn = r.lsn
        event = WALEvent(r)
        isHeap = r.rmgr == "Heap" || r.rmgr == "Heap2"
        relations = isHeap ? r.relations : []
    }

    init(xid: UInt32, lsn: LSN, event: WALEvent, isHeap: Bool, relations: [RelFileNode]) {
        self.xid = xid
        self.lsn = lsn
        self.event = event
        self.isHeap = isHeap
        self.relations = relations
    }
}

/// Reads pg_waldump's output byte by byte: a heap record (most of them) becomes an entry without a string
/// being made; the rare records whose description the report reads in full (transactions, checkpoints,
/// snapshots, file creations, TRUNCATE) go through ``WALDumpParser``.
public enum WALDumpScanner {
    /// Every record line of `data`, in order.
    public static func entries(_ data: Data) -> [WALEntry] {
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [WALEntry] in
            guard let start = raw.baseAddress else { return [] }
            let base = start.assumingMemoryBound(to: UInt8.self)
            let count = raw.count
            var out: [WALEntry] = []
            out.reserveCapacity(count / 160)
            var i = 0
            while i < count {
                var end = count
                if let hit = memchr(start + i, 10, count - i) { end = start.distance(to: UnsafeRawPointer(hit)) }
                if let e = entry(base, i, end) { out.append(e) }
                i = end + 1
            }
            return out
        }
    }

    static let rmgrPrefix: StaticString = "rmgr: "
    static let txMarker: StaticString = ", tx:"
    static let lsnMarker: StaticString = ", lsn: "
    static let descMarker: StaticString = ", desc: "
    static let blkrefMarker: StaticString = ", blkref #"
    static let relMarker: StaticString = ": rel "

    /// The first position of `pattern` in [from, to), or nil (memchr for its first byte, memcmp for the rest).
    static func find(_ b: UnsafePointer<UInt8>, _ pattern: StaticString, _ from: Int, _ to: Int) -> Int? {
        let n = pattern.utf8CodeUnitCount
        let p = pattern.utf8Start
        var i = from
        while i <= to - n {
            guard let hit = memchr(b + i, Int32(p[0]), to - n + 1 - i) else { return nil }
            let j = UnsafeRawPointer(b).distance(to: UnsafeRawPointer(hit))
            if memcmp(b + j, p, n) == 0 { return j }
            i = j + 1
        }
        return nil
    }

    /// A decimal number from `i` (spaces skipped); the number and where it ends.
    static func decimal(_ b: UnsafePointer<UInt8>, _ from: Int, _ to: Int) -> (UInt64, Int)? {
        var i = from
        while i < to && b[i] == 32 { i += 1 }
        var v: UInt64 = 0
        let start = i
        while i < to, b[i] >= 48, b[i] <= 57 {
            v = v &* 10 &+ UInt64(b[i] - 48)
            i += 1
        }
        return i > start ? (v, i) : nil
    }

    /// A hexadecimal number from `i`; the number and where it ends.
    static func hexadecimal(_ b: UnsafePointer<UInt8>, _ from: Int, _ to: Int) -> (UInt64, Int)? {
        var i = from
        var v: UInt64 = 0
        while i < to {
            let c = b[i]
            let d: UInt8
            switch c {
            case 48...57: d = c - 48
            case 65...70: d = c - 55
            case 97...102: d = c - 87
            default: return i > from ? (v, i) : nil
            }
            v = v << 4 | UInt64(d)
            i += 1
        }
        return i > from ? (v, i) : nil
    }

    /// Whether the bytes at [from, to) spell `word`.
    static func equals(_ b: UnsafePointer<UInt8>, _ from: Int, _ to: Int, _ word: StaticString) -> Bool {
        guard to - from == word.utf8CodeUnitCount else { return false }
        let w = word.utf8Start
        for k in 0..<(to - from) where b[from + k] != w[k] { return false }
        return true
    }

    static func entry(_ b: UnsafePointer<UInt8>, _ s: Int, _ e: Int) -> WALEntry? {
        guard e - s > 40, find(b, rmgrPrefix, s, s + 6) == s else { return nil }
        var r0 = s + 6
        var r1 = r0
        while r1 < e && b[r1] != 32 { r1 += 1 }
        guard let tx = find(b, txMarker, r1, e), let (xid, afterXid) = decimal(b, tx + txMarker.utf8CodeUnitCount, e),
            let l = find(b, lsnMarker, afterXid, e), let (hi, slash) = hexadecimal(b, l + lsnMarker.utf8CodeUnitCount, e), slash < e,
            b[slash] == 47,
            let (lo, _) = hexadecimal(b, slash + 1, e), let d = find(b, descMarker, slash, e)
        else { return nil }
        let lsn = LSN(hi << 32 | lo)
        let d0 = d + descMarker.utf8CodeUnitCount
        let d1 = find(b, blkrefMarker, d0, e) ?? e
        let heap = equals(b, r0, r1, "Heap")
        let heap2 = equals(b, r0, r1, "Heap2")
        var event = WALEvent.other
        if heap || heap2 {
            var w = d0
            while w < d1 && b[w] != 32 { w += 1 }
            if heap {
                if equals(b, d0, w, "INSERT") || equals(b, d0, w, "INSERT+INIT") {
                    event = .heap(operation: "insert", rows: 1)
                } else if equals(b, d0, w, "UPDATE") || equals(b, d0, w, "HOT_UPDATE") || equals(b, d0, w, "UPDATE+INIT")
                    || equals(b, d0, w, "HOT_UPDATE+INIT")
                {
                    event = .heap(operation: "update", rows: 1)
                } else if equals(b, d0, w, "DELETE") {
                    event = .heap(operation: "delete", rows: 1)
                } else if equals(b, d0, w, "LOCK") {
                    event = .heap(operation: "lock", rows: 0)
                } else if equals(b, d0, w, "TRUNCATE") {
                    event = slow("Heap", xid, lsn, b, d0, d1)
                }
            } else if equals(b, d0, w, "MULTI_INSERT") || equals(b, d0, w, "MULTI_INSERT+INIT") {
                event = .heap(operation: "insert", rows: Int(decimal(b, w, d1)?.0 ?? 0))
            } else if equals(b, d0, w, "LOCK_UPDATED") {
                event = .heap(operation: "lock", rows: 0)
            }
            var relations: [RelFileNode] = []
            var k = d1
            while let rel = find(b, relMarker, k, e) {
                guard let (spc, p1) = decimal(b, rel + relMarker.utf8CodeUnitCount, e), p1 < e, b[p1] == 47,
                    let (db, p2) = decimal(b, p1 + 1, e),
                    p2 < e, b[p2] == 47, let (node, p3) = decimal(b, p2 + 1, e)
                else { break }
                let n = RelFileNode(
                    tablespace: UInt32(truncatingIfNeeded: spc), database: UInt32(truncatingIfNeeded: db),
                    relation: UInt32(truncatingIfNeeded: node))
                if !relations.contains(n) { relations.append(n) }
                k = p3
            }
            return WALEntry(xid: UInt32(truncatingIfNeeded: xid), lsn: lsn, event: event, isHeap: true, relations: relations)
        }
        r0 = s + 6
        for name in ["Transaction", "Storage", "XLOG", "Standby"] where equalsString(b, r0, r1, name) {
            event = slow(name, xid, lsn, b, d0, d1)
            break
        }
        return WALEntry(xid: UInt32(truncatingIfNeeded: xid), lsn: lsn, event: event, isHeap: false, relations: [])
    }

    static func equalsString(_ b: UnsafePointer<UInt8>, _ from: Int, _ to: Int, _ word: String) -> Bool {
        let w = Array(word.utf8)
        guard to - from == w.count else { return false }
        for k in 0..<w.count where b[from + k] != w[k] { return false }
        return true
    }

    /// The event of a record whose description is read in full.
    static func slow(_ rmgr: String, _ xid: UInt64, _ lsn: LSN, _ b: UnsafePointer<UInt8>, _ d0: Int, _ d1: Int) -> WALEvent {
        let desc = String(decoding: UnsafeBufferPointer(start: b + d0, count: d1 - d0), as: UTF8.self).trimmingCharacters(in: .whitespaces)
        return WALEvent(WALRecord(rmgr: rmgr, xid: UInt32(truncatingIfNeeded: xid), lsn: lsn, desc: desc, relations: []))
    }
}
