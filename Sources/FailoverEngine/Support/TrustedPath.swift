import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Paths that only root (or the user running failoverd) controls: what failoverd runs as root, and the
/// directories the lab writes keys and hooks into.
///
/// A path is trusted when it is absolute, every directory on the way from `/` is owned by root or by the
/// user running failoverd and writable by no one else, and no segment is a symbolic link. A sticky directory
/// (such as /tmp) counts as writable by no one else for what lies below it: others may add entries there
/// but cannot rename or remove root's, and the next segment is itself checked to be root's. The walk is
/// made on descriptors (each segment opened with O_NOFOLLOW relative to the one before, then fstat), so
/// what was checked is what is used: ``openExecutable(_:)`` returns the descriptor that is then run.
enum TrustedPath {
    /// Linux's O_PATH (010000000 on every architecture Swift runs on), which Swift's Glibc module leaves out:
    /// a descriptor to walk, inspect and execute through, that reads nothing.
    static let O_PATH: Int32 = 0o10000000

    /// Why `path` is not a trusted executable (a regular file, executable, owned by root or the user running
    /// failoverd and writable by no one else, in trusted directories); nil when it is.
    static func executableProblem(_ path: String) -> String? {
        do {
            let fd = try openExecutable(path)
            close(fd)
            return nil
        } catch let error as FailoverError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    /// Opens `path` (O_PATH, close-on-exec) after proving it a trusted executable; the caller closes the
    /// descriptor, and runs that descriptor (``CommandRunner/run(_:_:executable:environment:workingDirectory:timeout:)``), never the path again.
    ///
    /// - Throws: ``FailoverError`` (invalid input, exit 2) naming the path and what is wrong with it.
    static func openExecutable(_ path: String) throws -> Int32 {
        let (parent, name) = try walk(path)
        defer { close(parent) }
        let fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw refusal(path, reason(errno, at: path)) }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            close(fd)
            throw refusal(path, "\(path) cannot be inspected: \(String(cString: strerror(errno)))")
        }
        if let problem = fileProblem(status, at: path) {
            close(fd)
            throw refusal(path, problem)
        }
        return fd
    }

    /// Why `path` cannot be trusted as a file failoverd reads as root with a credential in it (a TLS
    /// certificate or key of the coordination store): it must be a regular file, reached without a symbolic
    /// link through trusted directories, owned by root or the user running failoverd, writable by no one
    /// else, and with `secret`, readable by no one else (mode 0600 or stricter). Nil when it can.
    static func fileProblem(_ path: String, secret: Bool) -> String? {
        do {
            let (parent, name) = try walk(path)
            defer { close(parent) }
            let fd = openat(parent, name, O_PATH | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { return reason(errno, at: path) }
            defer { close(fd) }
            var status = stat()
            guard fstat(fd, &status) == 0 else { return "\(path) cannot be inspected: \(String(cString: strerror(errno)))" }
            if status.st_mode & S_IFMT == S_IFLNK { return "\(path) is a symbolic link: name the real path" }
            guard status.st_mode & S_IFMT == S_IFREG else { return "\(path) is not a regular file" }
            guard status.st_uid == 0 || status.st_uid == geteuid() else {
                return "\(path) is owned by uid \(status.st_uid): it must belong to root\(geteuid() == 0 ? "" : " or uid \(geteuid())")"
            }
            let mode = String(status.st_mode & 0o7777, radix: 8)
            guard status.st_mode & 0o022 == 0 else { return "\(path) is writable by others (mode \(mode)): run `chmod go-w \(path)`" }
            if secret, status.st_mode & 0o044 != 0 {
                return "\(path) holds a key and is readable by others (mode \(mode)): run `chmod 600 \(path)`"
            }
            return nil
        } catch let error as FailoverError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    /// Refuses `path` unless it is a trusted directory (every directory on the way from `/`, itself included).
    ///
    /// - Throws: ``FailoverError`` (refused, exit 3) naming the path and what is wrong with it.
    static func checkDirectory(_ path: String, purpose: String) throws {
        do {
            let (parent, _) = try walk(path, lastIsDirectory: true)
            close(parent)
        } catch let error as FailoverError {
            throw FailoverError.refused("\(purpose): \(error.message)")
        }
    }

    // MARK: The walk

    /// Opens every directory of `path` but its last segment, from `/`, checking each; returns the descriptor
    /// of the last directory (O_PATH) and the last segment's name. With `lastIsDirectory`, every segment is a
    /// directory to check, and the descriptor is `path`'s own.
    private static func walk(_ path: String, lastIsDirectory: Bool = false) throws -> (Int32, String) {
        guard path.hasPrefix("/") else { throw refusal(path, "\(path) is not an absolute path") }
        var segments = path.split(separator: "/").map(String.init)
        guard !segments.contains(".."), !segments.contains(".") else { throw refusal(path, "\(path) is not a normal absolute path") }
        let last = lastIsDirectory ? "." : segments.popLast() ?? ""
        guard !last.isEmpty else { throw refusal(path, "\(path) names no file") }
        var fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw refusal(path, "cannot open /: \(String(cString: strerror(errno)))") }
        var current = "/"
        do {
            try checkDirectory(fd, at: current, in: path)
            for segment in segments {
                let next = current == "/" ? "/" + segment : current + "/" + segment
                let child = openat(fd, segment, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw refusal(path, reason(errno, at: next, in: fd, name: segment)) }
                close(fd)
                fd = child
                current = next
                try checkDirectory(fd, at: current, in: path)
            }
        } catch {
            close(fd)
            throw error
        }
        return (fd, last)
    }

    /// Refuses a directory someone other than root or this user owns, or could write (unless sticky).
    private static func checkDirectory(_ fd: Int32, at directory: String, in path: String) throws {
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw refusal(path, "\(directory) cannot be inspected: \(String(cString: strerror(errno)))")
        }
        guard status.st_uid == 0 || status.st_uid == geteuid() else {
            throw refusal(
                path,
                "\(directory) is owned by uid \(status.st_uid): whoever owns a directory on the way can replace what lies below it. Keep it in directories owned by root\(geteuid() == 0 ? "" : " or uid \(geteuid())")"
            )
        }
        if status.st_mode & 0o022 != 0 && status.st_mode & S_ISVTX == 0 {
            throw refusal(
                path,
                "\(directory) is writable by \(status.st_mode & 0o002 != 0 ? "everyone" : "its group") (mode \(String(status.st_mode & 0o7777, radix: 8))): others could replace what lies below it. Run `chmod go-w \(directory)`, or keep it elsewhere"
            )
        }
    }

    /// Refuses a file that is not regular, not executable, or that someone other than root or this user owns or could write.
    private static func fileProblem(_ status: stat, at path: String) -> String? {
        if status.st_mode & S_IFMT == S_IFLNK {
            return "\(path) is a symbolic link: name the real path, so that what is checked is what runs"
        }
        guard status.st_mode & S_IFMT == S_IFREG else { return "\(path) is not a regular file" }
        guard status.st_uid == 0 || status.st_uid == geteuid() else {
            return
                "\(path) is owned by uid \(status.st_uid): failoverd runs it as root, so it must belong to root\(geteuid() == 0 ? "" : " or uid \(geteuid())"). Run `chown root \(path)` after checking what it does"
        }
        guard status.st_mode & 0o022 == 0 else {
            return
                "\(path) is writable by \(status.st_mode & 0o002 != 0 ? "everyone" : "its group") (mode \(String(status.st_mode & 0o7777, radix: 8))): anyone who can write it could run code as root. Run `chmod go-w \(path)`"
        }
        guard status.st_mode & 0o111 != 0 else { return "\(path) is not executable (mode \(String(status.st_mode & 0o7777, radix: 8)))" }
        return nil
    }

    /// Why a segment could not be opened without following a link.
    private static func reason(_ code: Int32, at segment: String, in parent: Int32? = nil, name: String? = nil) -> String {
        switch code {
        case ENOENT: return "\(segment) does not exist"
        case ELOOP: return "\(segment) is a symbolic link: name the real path, so that what is checked is what runs"
        case ENOTDIR:
            var link = stat()
            if let parent, let name, fstatat(parent, name, &link, AT_SYMLINK_NOFOLLOW) == 0, link.st_mode & S_IFMT == S_IFLNK {
                return "\(segment) is a symbolic link: name the real path, so that what is checked is what runs"
            }
            return "\(segment) is not a directory"
        default: return "\(segment) cannot be opened: \(String(cString: strerror(code)))"
        }
    }

    /// The refusal naming `path`: the problem as is when it names `path` itself, else after it.
    private static func refusal(_ path: String, _ problem: String) -> FailoverError {
        FailoverError.invalid(problem.hasPrefix(path + " ") ? problem : "\(path): \(problem)")
    }
}
