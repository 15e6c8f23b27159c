import Foundation

/// What the workload saw: every commit a writer attempted, with its outcome as the client knew it.
public struct Ledger: Sendable, Codable {
    /// One attempted commit.
    public struct Entry: Sendable, Codable, Equatable {
        /// The row id the client chose (writer × 10⁹ + sequence).
        public var id: Int64
        /// The writer.
        public var writer: Int
        /// When the client sent it, seconds since the drill's start.
        public var sentAt: Double
        /// When the client saw the outcome, seconds since the drill's start.
        public var at: Double
        /// True when the server acknowledged the commit.
        public var acknowledged: Bool
        /// The port of the server that answered (acknowledged) it, if known.
        public var port: Int?
        /// The transaction id that committed it (`txid_current()` in the same transaction, 32 bits as WAL
        /// records it), when acknowledged.
        public var xid: UInt32? = nil
    }

    /// Every attempt, in no particular order.
    public var entries: [Entry] = []

    /// Creates a ledger.
    public init(entries: [Entry] = []) { self.entries = entries }

    /// Acknowledged commits sorted by acknowledgement time.
    public var acknowledged: [Entry] { entries.filter(\.acknowledged).sorted { $0.at < $1.at } }
}

/// The figures a drill derives from its ledger, the journal and the probes.
public enum DrillMath {
    /// Acknowledged ids missing from `present` (the final primary's rows): the RPO in commits.
    public static func lost(ledger: Ledger, present: Set<Int64>) -> [Int64] {
        ledger.acknowledged.map(\.id).filter { !present.contains($0) }.sorted()
    }

    /// Commits whose client saw an error but whose row exists: unknown outcome, resolved as committed.
    public static func unknownOutcomeCommitted(ledger: Ledger, present: Set<Int64>) -> Int {
        ledger.entries.filter { !$0.acknowledged && present.contains($0.id) }.count
    }

    /// The longest gap between consecutive acknowledged commits that overlaps [from, to].
    public static func longestGap(ledger: Ledger, from: Double, to: Double) -> Double {
        let times = ledger.acknowledged.map(\.at)
        var longest = 0.0
        var previous: Double? = times.last { $0 < from }
        for t in times where t >= from {
            if let p = previous { longest = max(longest, t - p) }
            previous = t
            if t > to { break }
        }
        return longest
    }

    /// Seconds from `start` to the first acknowledged commit after `after` on a server with port `port` (any when nil).
    public static func firstWrite(ledger: Ledger, start: Double, after: Double, port: Int?) -> Double? {
        ledger.acknowledged.first { $0.at >= after && (port == nil || $0.port == port) }.map { $0.at - start }
    }

    /// Acknowledged commits per bucket of `width` seconds from 0 to `end`.
    public static func histogram(ledger: Ledger, width: Double, end: Double) -> [Int] {
        var buckets = [Int](repeating: 0, count: max(1, Int((end / width).rounded(.up))))
        for e in ledger.acknowledged {
            let i = min(buckets.count - 1, max(0, Int(e.at / width)))
            buckets[i] += 1
        }
        return buckets
    }

    /// Median, 95th percentile and maximum of a sample; nil for an empty one.
    public static func summary(_ values: [Double]) -> (median: Double, p95: Double, max: Double)? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        func q(_ p: Double) -> Double { s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))] }
        return (q(0.5), q(0.95), s.last!)
    }
}
