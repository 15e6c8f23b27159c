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
    /// Who, as claimed: `$FAILOVERD_ACTOR`, else the effective user, @host.
    public var actor: String
    /// The OS user of the process that wrote it, from its real uid (nil in events written before failoverd recorded it).
    public var osUser: String?
    /// That user's real uid.
    public var osUID: Int64?
    /// The host the process ran on.
    public var host: String?
    /// What, as the text the hash covers: an ``AuditEventKind``'s raw value (``knownKind``), or a kind another
    /// version wrote.
    public var kind: String
    /// Canonical JSON object with sorted keys, secrets redacted.
    public var details: String
    /// The previous event's hash (64 zeros for the first).
    public var prevHash: String
    /// SHA-256 of prevHash and the canonical event.
    public var hash: String

    enum CodingKeys: String, CodingKey {
        case seq, at, runID = "run_id", site, actor, osUser = "os_user", osUID = "os_uid", host, kind, details, prevHash = "prev_hash", hash
    }

    /// Creates an event.
    public init(
        seq: Int64, at: String, runID: String?, site: String?, actor: String, osUser: String? = nil, osUID: Int64? = nil,
        host: String? = nil,
        kind: String, details: String, prevHash: String, hash: String
    ) {
        self.seq = seq
        self.at = at
        self.runID = runID
        self.site = site
        self.actor = actor
        self.osUser = osUser
        self.osUID = osUID
        self.host = host
        self.kind = kind
        self.details = details
        self.prevHash = prevHash
        self.hash = hash
    }

    /// The canonical text the hash covers (keys sorted, no whitespace), as ``AuditEventEncoder`` writes it: the
    /// same bytes `verify` hashes. `host`, `osUid` and `osUser` appear only when recorded, so events written
    /// before they existed keep their hashes.
    public var canonical: String { encoded { String(decoding: $0.canonical, as: UTF8.self) } }

    /// The hash this event should carry given its previous hash: SHA-256 of `prevHash ‖ canonical`.
    public var expectedHash: String { encoded { AuditEventEncoder.hex($0.digest()) } }
}

/// The append-only, hash-chained audit log kept in the journal.
public struct AuditLog: Sendable {
    /// The hash before the first event.
    public static let genesis = String(repeating: "0", count: 64)

    let journal: Journal

    /// An audit log over `journal`.
    public init(journal: Journal) { self.journal = journal }

    /// Who runs this process, as the operating system says: the user of its real uid, and the host.
    public struct Identity: Sendable, Equatable {
        /// The login name of the real uid (`uid N` when the password database has none).
        public var osUser: String
        /// The real uid.
        public var osUID: Int64
        /// The host name.
        public var host: String
    }

    /// This process's identity, looked up once.
    public static let identity: Identity = {
        let uid = getuid()
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let name = getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0 && result != nil ? String(cString: pwd.pw_name) : "uid \(uid)"
        return Identity(osUser: name, osUID: Int64(uid), host: ProcessInfo.processInfo.hostName)
    }()

    /// The actor this process claims: `$FAILOVERD_ACTOR` (or the effective user)@host, looked up once. The
    /// OS user and host are recorded beside it (``identity``), so a claim never replaces them.
    public static let actor: String = {
        var user = ProcessInfo.processInfo.environment["FAILOVERD_ACTOR"] ?? ""
        if user.isEmpty, let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { user = String(cString: name) }
        if user.isEmpty { user = "uid\(geteuid())" }
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }()

    /// Appends an event in its own transaction.
    /// With the journal's signer, a checkpoint is signed after it when one is due.
    @discardableResult
    public func append(kind: AuditEventKind, run: String? = nil, site: String? = nil, details: [String: String] = [:]) throws
        -> AuditEvent
    {
        try journal.write { db in try Self.append(db, kind: kind, run: run, site: site, details: details, signer: journal.auditSigner) }
    }

    /// Appends an event inside the caller's write transaction, so it commits with the change it describes; with
    /// `signer`, a checkpoint is signed in the same transaction when one is due.
    @discardableResult
    public static func append(
        _ db: Database, kind: AuditEventKind, run: String? = nil, site: String? = nil, details: [String: String] = [:],
        signer: AuditSigner? = nil
    ) throws -> AuditEvent {
        let last = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        let me = identity
        var details = details
        // A coordinated run's events say which coordinator wrote them (host, pid, fencing token).
        if let stamp = try? String.fetchOne(db, sql: "SELECT stamp FROM temp.coordinator") { details["coordinator"] = stamp }
        var event = AuditEvent(
            seq: (last?["seq"] as Int64? ?? 0) + 1, at: Journal.now(), runID: run, site: site, actor: actor, osUser: me.osUser,
            osUID: me.osUID,
            host: me.host, kind: kind.rawValue, details: canonicalJSON(redact(details)), prevHash: last?["hash"] ?? genesis, hash: "")
        event.hash = event.expectedHash
        try db.execute(
            sql: """
                INSERT INTO audit_events (seq, at, run_id, site, actor, os_user, os_uid, host, kind, details, prev_hash, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                event.seq, event.at, event.runID, event.site, event.actor, event.osUser, event.osUID, event.host, event.kind, event.details,
                event.prevHash, event.hash,
            ])
        try signer?.checkpointIfDue(db, after: event)
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
        /// Only this kind: its text, so that a kind written by another version can be asked for too.
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

        /// Creates a filter of one kind.
        public init(run: String? = nil, site: String? = nil, since: String? = nil, kind: AuditEventKind, limit: Int? = nil) {
            self.init(run: run, site: site, since: since, kind: kind.rawValue, limit: limit)
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
            filter.run != nil
            ? "audit_events INDEXED BY audit_events_run"
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

    // MARK: canonical form and redaction

    /// Detail and evidence keys whose value is a secret, matched exactly (case-insensitive) against the key's last
    /// dotted component: `evidence.password` is a secret, `evidence.demotionToken` is not.
    public static let secretKeys: Set<String> = [
        "password", "passwd", "pgpassword", "passphrase", "secret", "token", "privatekey", "private_key", "private-key", "apikey",
        "api_key",
        "api-key", "accesskey", "access_key", "secretkey", "secret_key", "clientsecret", "client_secret", "sslpassword",
    ]

    // Compiled once; Regex is immutable after construction, so sharing it across tasks is safe.
    nonisolated(unsafe) static let secretValue = try! Regex("(?i)(password|passwd)\\s*=\\s*('[^']*'|\\S+)")

    /// True when `key` names a secret (see ``secretKeys``).
    public static func isSecretKey(_ key: String) -> Bool {
        let last = key.split(separator: ".", omittingEmptySubsequences: false).last.map(String.init) ?? key
        return secretKeys.contains(last.lowercased())
    }

    /// Replaces secret values: keys that are a secret's name, and `password=` inside conninfo strings. Evidence
    /// that is not a secret (LSNs, tokens of a demotion, summaries) is kept as is.
    public static func redact(_ details: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        let valueRegex = secretValue
        for (k, v) in details {
            if isSecretKey(k) {
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
    public static func sha256(_ text: String) -> String { sha256(bytes: Array(text.utf8)) }

    /// Lower-case hex SHA-256 of `bytes`.
    public static func sha256(bytes: [UInt8]) -> String { AuditEventEncoder.hex(SHA256.hash(data: bytes)) }
}
