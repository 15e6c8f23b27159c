import Crypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Files of a capture in failoverd's state directory: created new (never through a link), 0600, with their
/// SHA-256; the drivers fill them from a command's standard output (`cat` as the OS user, here or over SSH).
enum CaptureFiles {
    /// Creates `directory/relativePath` (and its parent, 0700) for writing; refuses an existing file or a link.
    static func create(_ relativePath: String, in directory: String) throws -> Int32 {
        let path = directory + "/" + relativePath
        let parent = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FailoverError.failed("cannot create \(path): \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Fills `directory/relativePath` with what `fill` writes to the descriptor; removes it and returns nil
    /// when `fill` says the source does not exist; returns its size and SHA-256 otherwise.
    static func write(
        _ relativePath: String, in directory: String, _ fill: (Int32) async throws -> Bool
    ) async throws -> CopiedFile? {
        let path = directory + "/" + relativePath
        let fd = try create(relativePath, in: directory)
        let found: Bool
        do {
            found = try await fill(fd)
            guard fsync(fd) == 0 else { throw FailoverError.failed("cannot flush \(path): \(String(cString: strerror(errno)))") }
            close(fd)
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        guard found else {
            unlink(path)
            return nil
        }
        let (bytes, digest) = try digest(of: path)
        return CopiedFile(path: relativePath, bytes: bytes, sha256: digest)
    }

    /// Size and hex SHA-256 of a file, read in 1 MiB chunks.
    static func digest(of path: String) throws -> (UInt64, String) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FailoverError.failed("cannot read \(path)") }
        defer { try? handle.close() }
        var hash = SHA256()
        var bytes: UInt64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hash.update(data: chunk)
            bytes += UInt64(chunk.count)
        }
        return (bytes, hash.finalize().map { String(format: "%02x", $0) }.joined())
    }

    /// Writes `data` as a new file (0600) and flushes it.
    static func write(_ data: Data, to relativePath: String, in directory: String) throws {
        let fd = try create(relativePath, in: directory)
        defer { close(fd) }
        try data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                guard n > 0 else {
                    throw FailoverError.failed("cannot write \(directory)/\(relativePath): \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
        guard fsync(fd) == 0 else { throw FailoverError.failed("cannot flush \(directory)/\(relativePath)") }
    }

    /// Flushes a directory's entries (after a rename into it).
    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
