import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The Ed25519 key pair that signs audit checkpoints, kept as PKCS#8 and SubjectPublicKeyInfo PEM files so
/// that `openssl pkey` and `openssl pkeyutl -verify -rawin` read them too.
public enum AuditKeys {
    /// The private key's file name in the directory `failoverd audit keygen --out DIR` writes.
    public static let privateKeyFile = "audit-signing.key"
    /// The public key's file name.
    public static let publicKeyFile = "audit-signing.pub"
    /// The checkpoint file kept beside the key unless another path is given.
    public static let checkpointFile = "audit-checkpoints.jsonl"

    // DER prefixes of an Ed25519 PKCS#8 private key and SubjectPublicKeyInfo (RFC 8410), followed by the 32 raw bytes.
    static let pkcs8Prefix: [UInt8] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
    static let spkiPrefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// What ``generate(into:)`` wrote.
    public struct Generated: Sendable {
        /// The private key file (mode 0600).
        public var privateKeyPath: String
        /// The public key file (mode 0644).
        public var publicKeyPath: String
        /// The key id that checkpoints carry.
        public var keyID: String
    }

    /// Writes a new key pair into `directory` (created 0700 if missing); refuses to replace an existing key.
    public static func generate(into directory: String) throws -> Generated {
        let privatePath = (directory as NSString).appendingPathComponent(privateKeyFile)
        let publicPath = (directory as NSString).appendingPathComponent(publicKeyFile)
        for path in [privatePath, publicPath] {
            var st = stat()
            if lstat(path, &st) == 0 {
                throw FailoverError.invalid(
                    "\(path) already exists: failoverd never replaces a signing key. Choose another --out directory, or move the old key away first (keep its public key to verify the checkpoints it signed)."
                )
            }
        }
        if !FileManager.default.fileExists(atPath: directory) {
            try Files.makeDirectory(directory, mode: 0o700, owner: nil)
        }
        let key = Curve25519.Signing.PrivateKey()
        try SecureFile.create(privatePath, contents: pem("PRIVATE KEY", pkcs8Prefix + Array(key.rawRepresentation)), mode: 0o600)
        do {
            try SecureFile.create(publicPath, contents: publicKeyPEM(key.publicKey), mode: 0o644)
        } catch {
            unlink(privatePath)
            throw error
        }
        return Generated(privateKeyPath: privatePath, publicKeyPath: publicPath, keyID: keyID(key.publicKey))
    }

    /// The public key as a PEM SubjectPublicKeyInfo.
    public static func publicKeyPEM(_ key: Curve25519.Signing.PublicKey) -> String {
        pem("PUBLIC KEY", spkiPrefix + Array(key.rawRepresentation))
    }

    /// Reads a private key file: a regular file (not a symlink), owned by this process's user, readable by nobody else.
    public static func loadPrivateKey(_ path: String) throws -> Curve25519.Signing.PrivateKey {
        let data = try SecureFile.read(path, what: "audit signing key", privateKey: true)
        guard let raw = der(String(decoding: data, as: UTF8.self), label: "PRIVATE KEY", prefix: pkcs8Prefix),
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        else {
            throw FailoverError.invalid(
                "audit signing key \(path) is not an Ed25519 private key in PEM (make one with `failoverd audit keygen --out DIR`)")
        }
        return key
    }

    /// Reads a public key file (PEM SubjectPublicKeyInfo, Ed25519).
    public static func loadPublicKey(_ path: String) throws -> Curve25519.Signing.PublicKey {
        let data = try SecureFile.read(path, what: "public key", privateKey: false)
        guard let raw = der(String(decoding: data, as: UTF8.self), label: "PUBLIC KEY", prefix: spkiPrefix),
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        else {
            throw FailoverError.invalid(
                "public key \(path) is not an Ed25519 public key in PEM (the audit-signing.pub that `failoverd audit keygen` wrote)")
        }
        return key
    }

    /// The key id checkpoints carry: the first 16 hex digits of SHA-256 of the raw public key.
    public static func keyID(_ key: Curve25519.Signing.PublicKey) -> String {
        String(AuditLog.sha256(bytes: Array(key.rawRepresentation)).prefix(16))
    }

    static func pem(_ label: String, _ der: [UInt8]) -> String {
        let b64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(label)-----\n\(b64)\n-----END \(label)-----\n"
    }

    static func der(_ text: String, label: String, prefix: [UInt8]) -> [UInt8]? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(of: "-----BEGIN \(label)-----"), let end = lines.firstIndex(of: "-----END \(label)-----"),
            begin < end, let data = Data(base64Encoded: lines[(begin + 1)..<end].joined())
        else { return nil }
        let bytes = Array(data)
        guard bytes.count == prefix.count + 32, Array(bytes.prefix(prefix.count)) == prefix else { return nil }
        return Array(bytes.suffix(32))
    }
}

/// Files an operator names (keys, checkpoint files): opened without following a symlink, checked to be
/// regular files, so a link planted in their place cannot redirect what failoverd reads or writes as root.
enum SecureFile {
    /// Creates `path` exclusively with `mode` and writes `contents`, fsynced.
    static func create(_ path: String, contents: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FailoverError.invalid("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, mode)
        try write(fd, Array(contents.utf8), path: path)
        guard fsync(fd) == 0 else { throw FailoverError.failed("cannot fsync \(path): \(String(cString: strerror(errno)))") }
        syncDirectory(of: path)
    }

    /// The contents of a regular file. A private key must be owned by this process's user and closed to group and others.
    static func read(_ path: String, what: String, privateKey: Bool) throws -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link; name the file itself" : String(cString: strerror(errno))
            throw FailoverError.invalid("cannot read \(what) \(path): \(reason)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw FailoverError.invalid("\(what) \(path) is not a regular file")
        }
        if privateKey {
            guard st.st_uid == geteuid() else {
                throw FailoverError.invalid(
                    "\(what) \(path) is owned by uid \(st.st_uid), not by this process's user (uid \(geteuid())): chown it")
            }
            guard st.st_mode & 0o077 == 0 else {
                throw FailoverError.invalid(
                    "\(what) \(path) is open to group or others (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 it, and consider the key exposed"
                )
            }
        }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = sysRead(fd, &buffer, buffer.count)
            if n < 0 { throw FailoverError.invalid("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// Opens `path` for appending (created 0644 if missing): a regular file owned by this process's user.
    static func openAppend(_ path: String, what: String) throws -> Int32 {
        let existed = FileManager.default.fileExists(atPath: path)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link; name the file itself" : String(cString: strerror(errno))
            throw FailoverError.invalid("cannot open \(what) \(path) for appending: \(reason)")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid() else {
            close(fd)
            throw FailoverError.invalid("\(what) \(path) must be a regular file owned by this process's user (uid \(geteuid()))")
        }
        if !existed { syncDirectory(of: path) }
        return fd
    }

    /// Writes every byte of `bytes` to `fd`.
    static func write(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { sysWrite(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FailoverError.failed("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// Fsyncs the directory holding `path`, so a newly created entry survives a crash.
    static func syncDirectory(of path: String) {
        let dir = open(
            (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent, O_RDONLY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }
}

// The libc read and write, named apart from the Swift methods they would otherwise shadow.
#if canImport(Glibc)
    private func sysRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { Glibc.read(fd, buffer, count) }
    private func sysWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { Glibc.write(fd, buffer, count) }
#else
    private func sysRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { Darwin.read(fd, buffer, count) }
    private func sysWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { Darwin.write(fd, buffer, count) }
#endif
