import Crypto
import Foundation
import GRDB

/// One audit event as stored: the hash covers every other field and the previous event's hash.
public struct AuditEvent: Codable, Sendable, Equatable, FetchableRecord {
    /// Position in the chain, from 1, without gaps.
    public var seq: Int64
    /// When it happened (ISO 8601, UTC).
    public var at: String
    /// The run it belongs to, if any.
    public var runID: String?
    /// The site it concerns, if any.
    public var site: String?
    /// Who: user@host.
    public var actor: String
    /// What: run-start, run-end, step-start, step-end, step-skip, step-fail, refusal, lock-takeover, override, abandon.
    public var kind: String
    /// Canonical JSON object with sorted keys, secrets redacted.
    public var details: String
    /// The previous event's hash (64 zeros for the first).
    public var prevHash: String
    /// SHA-256 of prevHash and the canonical event.
    public var hash: String

    enum CodingKeys: String, CodingKey {
        case seq, at, runID = "run_id", site, actor, kind, details, prevHash = "prev_hash", hash
    }

    /// The canonical text the hash covers (keys sorted, no whitespace).
    public var canonical: String {
        let fields: [(String, String)] = [
            ("actor", AuditLog.quote(actor)), ("at", AuditLog.quote(at)), ("details", details), ("kind", AuditLog.quote(kind)),
            ("run", runID.map(AuditLog.quote) ?? "null"), ("seq", String(seq)), ("site", site.map(AuditLog.quote) ?? "null"),
        ]
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// The hash this event should carry given its previous hash.
    public var expectedHash: String { AuditLog.sha256(prevHash + canonical) }
}

/// The append-only, hash-chained audit log kept in the journal.
public struct AuditLog: Sendable {
    /// The hash before the first event.
    public static let genesis = String(repeating: "0", count: 64)

    let journal: Journal

    /// An audit log over `journal`.
    public init(journal: Journal) { self.journal = journal }

    /// The actor of this process: user@host, looked up once.
    public static let actor: String = {
        var user = ProcessInfo.processInfo.environment["FAILOVERD_ACTOR"] ?? ""
        if user.isEmpty, let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { user = String(cString: name) }
        if user.isEmpty { user = "uid\(geteuid())" }
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }()

    /// Appends an event in its own transaction.
    @discardableResult
    public func append(kind: String, run: String? = nil, site: String? = nil, details: [String: String] = [:]) throws
        -> AuditEvent
    {
        try journal.db.write { db in try Self.append(db, kind: kind, run: run, site: site, details: details) }
    }

    /// Appends an event inside the caller's write transaction, so it commits with the change it describes.
    @discardableResult
    public static func append(
        _ db: Database, kind: String, run: String? = nil, site: String? = nil, details: [String: String] = [:]
    ) throws -> AuditEvent {
        let last = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        var event = AuditEvent(
            seq: (last?["seq"] as Int64? ?? 0) + 1, at: Journal.now(), runID: run, site: site, actor: actor, kind: kind,
            details: canonicalJSON(redact(details)), prevHash: last?["hash"] ?? genesis, hash: "")
        event.hash = event.expectedHash
        try db.execute(
            sql: """
                INSERT INTO audit_events (seq, at, run_id, site, actor, kind, details, prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [event.seq, event.at, event.runID, event.site, event.actor, event.kind, event.details, event.prevHash, event.hash])
        return event
    }

    /// Filters for ``query(_:)``.
    public struct Filter: Sendable {
        /// Only this run.
        public var run: String?
        /// Only this site.
        public var site: String?
        /// Only events at or after this ISO 8601 time.
        public var since: String?
        /// Only this kind.
        public var kind: String?
        /// At most this many events, newest last.
        public var limit: Int?
        /// Creates a filter.
        public init(run: String? = nil, site: String? = nil, since: String? = nil, kind: String? = nil, limit: Int? = nil) {
            self.run = run
            self.site = site
            self.since = since
            self.kind = kind
            self.limit = limit
        }
    }

    /// The events that match `filter`, in chain order.
    public func query(_ filter: Filter = .init()) throws -> [AuditEvent] {
        var clauses: [String] = []
        var args: [any DatabaseValueConvertible] = []
        if let run = filter.run { clauses.append("run_id = ?"); args.append(run) }
        if let site = filter.site { clauses.append("site = ?"); args.append(site) }
        if let since = filter.since { clauses.append("at >= ?"); args.append(since) }
        if let kind = filter.kind { clauses.append("kind = ?"); args.append(kind) }
        // Without statistics SQLite may pick a broad index: a run has few events, so its index goes first;
        // with only a time filter, walk the time index rather than the whole chain in seq order.
        let from =
            filter.run != nil ? "audit_events INDEXED BY audit_events_run"
            : filter.since != nil && clauses.count == 1 ? "audit_events INDEXED BY audit_events_at" : "audit_events"
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let sql: String
        if let limit = filter.limit {
            sql = "SELECT * FROM (SELECT * FROM \(from) \(whereSQL) ORDER BY seq DESC LIMIT \(limit)) ORDER BY seq"
        } else {
            sql = "SELECT * FROM \(from) \(whereSQL) ORDER BY seq"
        }
        return try journal.db.read { db in try AuditEvent.fetchAll(db, sql: sql, arguments: StatementArguments(args)) }
    }

    /// The outcome of ``verify()``.
    public struct Verification: Sendable, Equatable {
        /// How many events were checked.
        public var checked: Int
        /// The first broken seq, or nil when the chain is intact.
        public var brokenSeq: Int64?
        /// What is wrong at that seq.
        public var reason: String?
        /// True when every link holds.
        public var intact: Bool { brokenSeq == nil }
    }

    /// Walks the chain from the first event and names the first broken link: an edited, deleted,
    /// inserted or reordered row.
    public func verify() throws -> Verification {
        try journal.db.read { db in
            let cursor = try AuditEvent.fetchCursor(db, sql: "SELECT * FROM audit_events ORDER BY seq")
            var expectedSeq: Int64 = 1
            var prev = AuditLog.genesis
            var checked = 0
            while let e = try cursor.next() {
                if e.seq != expectedSeq {
                    let what = e.seq > expectedSeq ? "seq \(expectedSeq)\(e.seq - expectedSeq > 1 ? "…\(e.seq - 1)" : "") is missing (deleted)" : "seq \(e.seq) is out of order"
                    return Verification(checked: checked, brokenSeq: expectedSeq, reason: what)
                }
                if e.prevHash != prev {
                    return Verification(
                        checked: checked, brokenSeq: e.seq,
                        reason: "seq \(e.seq) does not follow seq \(e.seq - 1): its prev_hash does not match (a row was deleted, inserted or reordered)")
                }
                if e.hash != e.expectedHash {
                    return Verification(
                        checked: checked, brokenSeq: e.seq, reason: "seq \(e.seq) was edited: its content no longer matches its hash")
                }
                prev = e.hash
                expectedSeq += 1
                checked += 1
            }
            return Verification(checked: checked, brokenSeq: nil, reason: nil)
        }
    }

    // MARK: canonical form and redaction

    // Compiled once; Regex is immutable after construction, so sharing it across tasks is safe.
    nonisolated(unsafe) static let secretKey = try! Regex("(?i)(password|passwd|secret|token|private.?key)")
    nonisolated(unsafe) static let secretValue = try! Regex("(?i)(password|passwd)\\s*=\\s*('[^']*'|\\S+)")

    /// Replaces secret-looking values: keys that name a secret, and `password=` inside conninfo strings.
    public static func redact(_ details: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        let keyRegex = secretKey
        let valueRegex = secretValue
        for (k, v) in details {
            if k.contains(keyRegex) && k != "demotionToken" {
                out[k] = "[redacted]"
            } else if !v.localizedCaseInsensitiveContains("pass") {
                out[k] = v
            } else {
                out[k] = v.replacing(valueRegex) { m in "\(m.output[1].substring ?? "password")=[redacted]" }
            }
        }
        return out
    }

    /// A JSON object with sorted keys and no whitespace.
    public static func canonicalJSON(_ details: [String: String]) -> String {
        "{" + details.keys.sorted().map { "\(quote($0)):\(quote(details[$0]!))" }.joined(separator: ",") + "}"
    }

    /// A JSON string literal.
    static func quote(_ s: String) -> String { JSONString.literal(s) }

    /// Lower-case hex SHA-256 of the UTF-8 text.
    public static func sha256(_ text: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in SHA256.hash(data: Data(text.utf8)) {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
