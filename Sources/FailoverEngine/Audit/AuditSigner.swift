import Crypto
import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A signed statement that the audit log held `seq` events ending in the hash `head`.
///
/// The signature covers ``signedText``: the checkpoint as canonical JSON without its signature. With the chain's
/// hashes, one checkpoint vouches for every event up to `seq`.
public struct AuditCheckpoint: Sendable, Equatable, Hashable {
    /// The id of the journal whose log it covers (``Journal/id(_:)``).
    public var journal: String
    /// The last event it covers.
    public var seq: Int64
    /// That event's hash.
    public var head: String
    /// When it was signed (ISO 8601, UTC).
    public var at: String
    /// The run that was going on, if any.
    public var run: String?
    /// The signing key's id (``AuditKeys/keyID(_:)``).
    public var key: String
    /// The Ed25519 signature of ``signedText``, base64.
    public var signature: String

    /// The `type` every checkpoint carries, so that its signature cannot be taken for another document's.
    public static let type = "failoverd-audit-checkpoint"

    /// Creates a checkpoint.
    public init(journal: String, seq: Int64, head: String, at: String, run: String?, key: String, signature: String) {
        self.journal = journal
        self.seq = seq
        self.head = head
        self.at = at
        self.run = run
        self.key = key
        self.signature = signature
    }

    /// The bytes the signature covers.
    public var signedText: String {
        "{\"at\":\(AuditLog.quote(at)),\"head\":\(AuditLog.quote(head)),\"journal\":\(AuditLog.quote(journal)),\"key\":\(AuditLog.quote(key)),\"run\":\(run.map(AuditLog.quote) ?? "null"),\"seq\":\(seq),\"type\":\"\(Self.type)\"}"
    }

    /// One line of the checkpoint file (and of `audit export`): the signed fields and the signature, keys sorted.
    public var jsonLine: String {
        "{\"at\":\(AuditLog.quote(at)),\"head\":\(AuditLog.quote(head)),\"journal\":\(AuditLog.quote(journal)),\"key\":\(AuditLog.quote(key)),\"run\":\(run.map(AuditLog.quote) ?? "null"),\"seq\":\(seq),\"signature\":\(AuditLog.quote(signature)),\"type\":\"\(Self.type)\"}"
    }

    /// True when `key` signed this checkpoint.
    public func isSigned(by key: Curve25519.Signing.PublicKey) -> Bool {
        guard let sig = Data(base64Encoded: signature) else { return false }
        return key.isValidSignature(sig, for: Data(signedText.utf8))
    }

    /// Parses a checkpoint file line; nil when it is not one.
    public init?(jsonLine: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as? [String: Any],
            object["type"] as? String == Self.type, let journal = object["journal"] as? String,
            let seq = (object["seq"] as? NSNumber)?.int64Value, let head = object["head"] as? String,
            let at = object["at"] as? String, let key = object["key"] as? String, let signature = object["signature"] as? String
        else { return nil }
        let run = object["run"] as? String
        guard object["run"] is NSNull || run != nil else { return nil }
        self.init(journal: journal, seq: seq, head: head, at: at, run: run, key: key, signature: signature)
    }

    /// Reads the checkpoints the journal holds (none in a journal from before checkpoints existed).
    public static func fetchAll(_ db: Database) throws -> [AuditCheckpoint] {
        guard try db.tableExists("audit_checkpoints") else { return [] }
        return try Row.fetchAll(
            db, sql: "SELECT journal_id, seq, head, at, run_id, key_id, signature FROM audit_checkpoints ORDER BY seq, key_id"
        ).map {
            AuditCheckpoint(
                journal: $0["journal_id"], seq: $0["seq"], head: $0["head"], at: $0["at"], run: $0["run_id"], key: $0["key_id"],
                signature: $0["signature"])
        }
    }

    /// Reads a checkpoint file; a line that is not a checkpoint is returned as a problem with its line number.
    public static func read(file path: String) throws -> (checkpoints: [AuditCheckpoint], badLines: [Int]) {
        let text = String(decoding: try SecureFile.read(path, what: "checkpoint file", privateKey: false), as: UTF8.self)
        var out: [AuditCheckpoint] = []
        var bad: [Int] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            if let c = AuditCheckpoint(jsonLine: String(line)) { out.append(c) } else { bad.append(i + 1) }
        }
        return (out, bad)
    }
}

/// Signs audit checkpoints with the operator's Ed25519 key: at the end of every run and at least every
/// ``interval`` events. Each checkpoint is stored in the journal with the event it covers, and appended,
/// fsynced, to a checkpoint file outside the database once that transaction commits.
public final class AuditSigner: @unchecked Sendable {
    /// The environment variable naming the private key file.
    public static let keyEnvironment = "FAILOVERD_AUDIT_KEY"
    /// The environment variable naming the checkpoint file.
    public static let checkpointsEnvironment = "FAILOVERD_AUDIT_CHECKPOINTS"
    /// Event kinds that end a verb's work: a checkpoint is signed right after each.
    public static let closingKinds: Set<AuditEventKind> = [.runEnd, .abandon, .refusal, .adopt]

    let key: Curve25519.Signing.PrivateKey
    /// The id of the signing key.
    public let keyID: String
    /// The checkpoint file appended to.
    public let checkpointPath: String
    /// Sign at least every this many events.
    public let interval: Int64
    /// The open checkpoint file; -1 until the first checkpoint creates it (guarded by `lock`).
    var fd: Int32 = -1
    let lock = NSLock()

    /// Loads the private key and opens the checkpoint file (default: `audit-checkpoints.jsonl` beside the key).
    ///
    /// - Throws: ``FailoverError`` (invalid input) when the key cannot be read or is open to others, or the
    ///   checkpoint file cannot be opened: nothing is signed rather than something silently left unsigned.
    public init(keyPath: String, checkpointPath: String? = nil, interval: Int64 = 100) throws {
        key = try AuditKeys.loadPrivateKey(keyPath)
        keyID = AuditKeys.keyID(key.publicKey)
        let path =
            checkpointPath ?? ((keyPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent(AuditKeys.checkpointFile)
        self.checkpointPath = path
        self.interval = max(1, interval)
        // An existing file (or link) is opened and checked now; a missing one is created by the first checkpoint,
        // so a verb refused for bad input leaves nothing behind, but its directory must be writable now.
        var st = stat()
        if lstat(path, &st) == 0 {
            fd = try SecureFile.openAppend(path, what: "checkpoint file")
        } else {
            let dir = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
            guard access(dir, W_OK) == 0 else {
                throw FailoverError.invalid("cannot create checkpoint file \(path): directory \(dir) is missing or not writable")
            }
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The signer the operator configured: `keyPath` (`--audit-key`), else `$FAILOVERD_AUDIT_KEY`; nil when neither is set.
    public static func configured(keyPath: String?, checkpointPath: String?) throws -> AuditSigner? {
        let env = ProcessInfo.processInfo.environment
        guard let key = keyPath ?? env[keyEnvironment].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        return try AuditSigner(
            keyPath: key, checkpointPath: checkpointPath ?? env[checkpointsEnvironment].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Signs a checkpoint of `seq` and `head` in the journal `journal`.
    public func sign(journal: String, seq: Int64, head: String, run: String?) throws -> AuditCheckpoint {
        var c = AuditCheckpoint(journal: journal, seq: seq, head: head, at: Journal.now(), run: run, key: keyID, signature: "")
        c.signature = try key.signature(for: Data(c.signedText.utf8)).base64EncodedString()
        return c
    }

    /// Signs and stores a checkpoint after `event` when it closes a verb's work or `interval` events have passed
    /// since the last checkpoint; the file append follows the commit.
    func checkpointIfDue(_ db: Database, after event: AuditEvent) throws {
        let last = try Int64.fetchOne(db, sql: "SELECT max(seq) FROM audit_checkpoints") ?? 0
        guard event.knownKind.map(Self.closingKinds.contains) == true || event.seq - last >= interval else { return }
        guard let journal = try Journal.id(db) else {
            throw FailoverError.failed(
                "the journal has no id (journal_info was removed): audit checkpoints cannot be signed; restore the journal")
        }
        let c = try sign(journal: journal, seq: event.seq, head: event.hash, run: event.runID)
        try db.execute(
            sql: "INSERT INTO audit_checkpoints (journal_id, seq, head, at, run_id, key_id, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            arguments: [c.journal, c.seq, c.head, c.at, c.run, c.key, c.signature])
        db.afterNextTransaction(onCommit: { [self] _ in export(c) })
    }

    /// Appends the checkpoint to the file and fsyncs it. A failure is reported on standard error: the journal
    /// keeps the checkpoint, and `failoverd audit export` can ship it.
    func export(_ c: AuditCheckpoint) {
        lock.lock()
        defer { lock.unlock() }
        do {
            if fd < 0 { fd = try SecureFile.openAppend(checkpointPath, what: "checkpoint file") }
            try SecureFile.write(fd, Array((c.jsonLine + "\n").utf8), path: checkpointPath)
            guard fsync(fd) == 0 else { throw FailoverError.failed("cannot fsync \(checkpointPath): \(String(cString: strerror(errno)))") }
        } catch {
            let message = (error as? FailoverError)?.message ?? "\(error)"
            FileHandle.standardError.write(
                Data("failoverd: audit checkpoint at seq \(c.seq) is in the journal but not in \(checkpointPath): \(message)\n".utf8))
        }
    }
}
