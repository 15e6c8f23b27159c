import Crypto

/// The one encoder of an audit event's hashed bytes, `prev_hash ‖ canonical event`: `AuditLog.append` hashes
/// what it writes, and `verify` what it reads from the journal's columns, and export prints it. The canonical
/// event is `{"actor":…,"at":…,"details":{…},"host":…,"kind":…,"osUid":N,"osUser":…,"run":…,"seq":N,"site":…}`,
/// keys sorted, no whitespace; `host`, `osUid` and `osUser` only when recorded, so events written before they
/// existed keep their hashes. The bytes of every log ever written depend on it: never change its output.
struct AuditEventEncoder: ~Copyable {
    /// One event's fields as UTF-8 bytes, nil for SQL NULL; borrowed for one ``encode(prevHash:_:)``.
    struct Fields {
        var actor: UnsafeBufferPointer<UInt8>?
        var at: UnsafeBufferPointer<UInt8>?
        /// Canonical JSON already, written as is.
        var details: UnsafeBufferPointer<UInt8>?
        var host: UnsafeBufferPointer<UInt8>?
        var kind: UnsafeBufferPointer<UInt8>?
        var osUID: Int64?
        var osUser: UnsafeBufferPointer<UInt8>?
        var run: UnsafeBufferPointer<UInt8>?
        var seq: Int64
        var site: UnsafeBufferPointer<UInt8>?
    }

    private var buffer: ByteBuffer
    /// Where the canonical event starts in ``hashed``: after the previous hash.
    private(set) var canonicalStart = 0

    init(capacity: Int = 4096) { buffer = ByteBuffer(capacity: capacity) }

    /// The bytes the hash covers, from the last ``encode(prevHash:_:)``; valid until the next one.
    var hashed: UnsafeBufferPointer<UInt8> { buffer.bytes }

    /// The canonical event alone, from the last ``encode(prevHash:_:)``.
    var canonical: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(rebasing: buffer.bytes[canonicalStart...]) }

    /// Writes `prevHash ‖ canonical event` over the previous contents.
    mutating func encode(prevHash: UnsafeBufferPointer<UInt8>?, _ f: Fields) {
        buffer.removeAll()
        if let prevHash { buffer.append(prevHash) }
        canonicalStart = buffer.count
        buffer.append("{\"actor\":")
        string(f.actor)
        buffer.append(",\"at\":")
        string(f.at)
        buffer.append(",\"details\":")
        if let details = f.details { buffer.append(details) } else { buffer.append("null") }
        if let host = f.host {
            buffer.append(",\"host\":")
            string(host)
        }
        buffer.append(",\"kind\":")
        string(f.kind)
        if let uid = f.osUID {
            buffer.append(",\"osUid\":")
            buffer.appendDecimal(uid)
        }
        if let user = f.osUser {
            buffer.append(",\"osUser\":")
            string(user)
        }
        buffer.append(",\"run\":")
        string(f.run)
        buffer.append(",\"seq\":")
        buffer.appendDecimal(f.seq)
        buffer.append(",\"site\":")
        string(f.site)
        buffer.append(0x7D)
    }

    private mutating func string(_ s: UnsafeBufferPointer<UInt8>?) {
        if let s { JSONString.append(s, to: &buffer) } else { buffer.append("null") }
    }

    /// SHA-256 of ``hashed``.
    func digest() -> SHA256.Digest {
        var hasher = SHA256()
        hasher.update(bufferPointer: UnsafeRawBufferPointer(hashed))
        return hasher.finalize()
    }

    /// True when `stored` is the lower-case hex of `digest`.
    static func matches(_ digest: SHA256.Digest, hex stored: UnsafeBufferPointer<UInt8>) -> Bool {
        guard stored.count == 2 * SHA256.byteCount else { return false }
        let hex = JSONString.hexDigits
        return digest.withUnsafeBytes { raw in
            for i in 0..<raw.count where stored[2 * i] != hex[Int(raw[i] >> 4)] || stored[2 * i + 1] != hex[Int(raw[i] & 0x0F)] {
                return false
            }
            return true
        }
    }

    /// `digest` in lower-case hex, as the journal stores hashes.
    static func hex(_ digest: SHA256.Digest) -> String {
        let hex = JSONString.hexDigits
        var out = [UInt8]()
        out.reserveCapacity(2 * SHA256.byteCount)
        for b in digest {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension AuditEvent {
    /// Encodes this event with the one encoder (its strings copied into one buffer for the call).
    func encoded<R>(_ body: (borrowing AuditEventEncoder) throws -> R) rethrows -> R {
        var storage: [UInt8] = []
        var ranges: [Range<Int>?] = []
        for field in [prevHash, actor, at, details, host, kind, osUser, runID, site] as [String?] {
            guard let field else {
                ranges.append(nil)
                continue
            }
            let start = storage.count
            storage.append(contentsOf: field.utf8)
            ranges.append(start..<storage.count)
        }
        return try storage.withUnsafeBufferPointer { all in
            func field(_ i: Int) -> UnsafeBufferPointer<UInt8>? { ranges[i].map { UnsafeBufferPointer(rebasing: all[$0]) } }
            var encoder = AuditEventEncoder(capacity: storage.count + 256)
            encoder.encode(
                prevHash: field(0),
                .init(
                    actor: field(1), at: field(2), details: field(3), host: field(4), kind: field(5), osUID: osUID, osUser: field(6),
                    run: field(7), seq: seq, site: field(8)))
            return try body(encoder)
        }
    }
}
