import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// File operations for a process that runs as root next to directories an unprivileged user controls.
///
/// failoverd runs as root; data directories, their state directories, the repository and the passfile
/// belong to the PostgreSQL OS user, who (or any database superuser, through COPY … TO PROGRAM) can plant
/// a symbolic link or swap a directory at any moment. So no operation here follows a path the way `open(2)`
/// does:
/// - a path is walked from `/` one segment at a time, each opened with O_NOFOLLOW relative to the one
///   before; a symbolic link is followed only where only root could have placed it (owned by root, in a
///   root-owned directory that others cannot write, or a sticky one), and refused elsewhere, naming it;
/// - the last segment is opened with O_NOFOLLOW (and O_EXCL when created), so a symbolic link in place of
///   postgresql.conf, the recovery file, the fence marker or the passfile is refused, naming it;
/// - in a directory the OS user can write, the operation runs as that user (this thread's file-system uid
///   and gid, ``FileSystemIdentity``): the kernel then checks it as it would check the user, so nothing
///   reaches further than the user could reach alone;
/// - mode and owner are set on the open descriptor (fchmod, fchown), never by path afterwards.
@_spi(Benchmarks) public enum Files {
    /// Writes `text` to `path` atomically (a new file in the same directory, then rename), with `mode`, owned
    /// by `owner` when this process is root.
    ///
    /// - Throws: ``FailoverError`` (refused) when `path` is a symbolic link or not a regular file, or a
    ///   directory on the way is a symbolic link that the OS user could have planted.
    static func write(_ text: String, to path: String, mode: mode_t = 0o600, owner: OSUser?) throws {
        let (directory, name) = try split(path)
        let parent = try Directory.open(directory)
        defer { close(parent.fd) }
        let actor = parent.actor(for: owner)
        try refuseAnythingButAFile(at: name, in: parent, path: path, as: actor)
        let temporary = ".\(name).failoverd-\(UInt32.random(in: 0...UInt32.max))"
        let fd = FileSystemIdentity.run(as: actor) {
            openat(parent.fd, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        }
        guard fd >= 0 else {
            throw FailoverError.failed(
                "could not write \(path): \(String(cString: strerror(errno))); check that \(directory) is writable by \(actor?.name ?? "failoverd")"
            )
        }
        var written = false
        defer {
            close(fd)
            if !written { _ = FileSystemIdentity.run(as: actor) { unlinkat(parent.fd, temporary, 0) } }
        }
        try writeAll(Array(text.utf8), to: fd, path: path)
        try setMode(mode, owner: owner, on: fd, path: path)
        guard fsync(fd) == 0 else { throw FailoverError.failed("could not flush \(path): \(String(cString: strerror(errno)))") }
        guard FileSystemIdentity.run(as: actor, { renameat(parent.fd, temporary, parent.fd, name) }) == 0 else {
            throw FailoverError.failed("could not replace \(path): \(String(cString: strerror(errno)))")
        }
        written = true
    }

    /// Appends `text` to the existing regular file at `path`, keeping its owner, mode and inode (as `owner`
    /// when the directory that holds it is one the OS user can write).
    ///
    /// - Throws: ``FailoverError`` (refused) when `path` is a symbolic link or not a regular file, or a
    ///   directory on the way is a symbolic link that the OS user could have planted; failed when it does not exist.
    static func append(_ text: String, to path: String, owner: OSUser?) throws {
        let (directory, name) = try split(path)
        let parent: Directory
        do {
            parent = try Directory.open(directory)
        } catch is Directory.Missing {
            throw FailoverError.failed("could not append to \(path): \(directory) does not exist")
        }
        defer { close(parent.fd) }
        let actor = parent.actor(for: owner)
        let fd = FileSystemIdentity.run(as: actor) { openat(parent.fd, name, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else {
            switch errno {
            case ELOOP: throw symbolicLink(path)
            case let code:
                throw FailoverError.failed(
                    "could not append to \(path) as \(actor?.name ?? "failoverd"): \(String(cString: strerror(code)))")
            }
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw FailoverError.refused("\(path) is not a regular file: failoverd refuses to append to it. Remove it and retry.")
        }
        try writeAll(Array(text.utf8), to: fd, path: path)
        guard fsync(fd) == 0 else { throw FailoverError.failed("could not flush \(path): \(String(cString: strerror(errno)))") }
    }

    /// The text of `path`; nil when it does not exist. The file is read as `owner` when the directory that
    /// holds it is one the OS user can write.
    ///
    /// - Throws: ``FailoverError`` (refused) when `path` is a symbolic link, a device, a FIFO or a directory,
    ///   or a directory on the way is a symbolic link that the OS user could have planted.
    ///
    /// With `mustBeOwn`, the file must also belong to the user running failoverd and be writable by no one else
    /// (failoverd's own state: a sandbox manifest).
    static func readText(_ path: String, owner: OSUser?, mustBeOwn: Bool = false) throws -> String? {
        let (directory, name) = try split(path)
        let parent: Directory
        do {
            parent = try Directory.open(directory)
        } catch let error as Directory.Missing {
            _ = error
            return nil
        }
        defer { close(parent.fd) }
        let actor = parent.actor(for: owner)
        let fd = FileSystemIdentity.run(as: actor) { openat(parent.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else {
            switch errno {
            case ENOENT: return nil
            case ELOOP: throw symbolicLink(path)
            case let code:
                throw FailoverError.failed("could not read \(path) as \(actor?.name ?? "failoverd"): \(String(cString: strerror(code)))")
            }
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw FailoverError.refused(
                "\(path) is not a regular file: failoverd refuses to read it. Remove it, or restore the file failoverd expects there.")
        }
        if mustBeOwn && (status.st_uid != geteuid() || status.st_mode & 0o022 != 0) {
            throw FailoverError.refused(
                "\(path) is owned by uid \(status.st_uid) with mode \(String(status.st_mode & 0o7777, radix: 8)); failoverd only trusts a file of its own state that belongs to uid \(geteuid()) and that no one else can write. Inspect it and remove it by hand."
            )
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw FailoverError.failed("could not read \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The text of `path`, or nil when it does not exist or cannot be read safely (a symbolic link, not a
    /// regular file): for pid files, logs and /proc, where "cannot tell" is the answer.
    @_spi(Benchmarks) public static func read(_ path: String) -> String? {
        (try? readText(path, owner: nil)) ?? nil
    }

    /// True when something (a symbolic link included, followed or not) is at `path`.
    static func exists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0
    }

    /// Creates `path` (and missing parents) with `mode`, giving every directory it creates to `owner`.
    /// Returns the directories it created, outermost first.
    ///
    /// A directory is created as root (and then given to `owner` with fchown on its descriptor) only inside a
    /// directory that only root can write; elsewhere it is created as `owner`.
    @discardableResult
    @_spi(Benchmarks) public static func makeDirectory(_ path: String, mode: mode_t = 0o700, owner: OSUser?) throws -> [String] {
        var created: [String] = []
        let directory = try Directory.open(path, creating: (mode, owner), created: &created)
        close(directory.fd)
        return created
    }

    /// Removes the file or directory tree at `path` without following any symbolic link in it, as `owner`
    /// wherever the OS user can write. Nothing when it does not exist.
    ///
    /// - Throws: ``FailoverError`` (refused) when `path` itself is a symbolic link: what it points to was
    ///   never failoverd's to remove.
    static func removeTree(_ path: String, owner: OSUser?) throws {
        let (directory, name) = try split(path)
        let parent: Directory
        do {
            parent = try Directory.open(directory)
        } catch is Directory.Missing {
            return
        }
        defer { close(parent.fd) }
        var status = stat()
        guard fstatat(parent.fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        if status.st_mode & S_IFMT == S_IFLNK { throw symbolicLink(path) }
        if status.st_mode & S_IFMT == S_IFDIR {
            let fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw FailoverError.failed("could not open \(path) to remove it: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            try removeContents(of: fd, path: path, owner: owner)
        }
        let actor = parent.actor(for: owner)
        let flags = status.st_mode & S_IFMT == S_IFDIR ? AT_REMOVEDIR : 0
        guard FileSystemIdentity.run(as: actor, { unlinkat(parent.fd, name, flags) }) == 0 || errno == ENOENT else {
            throw FailoverError.failed("could not remove \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes a file (not a directory) at `path`; nothing when it does not exist.
    ///
    /// - Throws: ``FailoverError`` (refused) when `path` is a symbolic link or a directory.
    static func removeFile(_ path: String, owner: OSUser?) throws {
        let (directory, name) = try split(path)
        let parent: Directory
        do {
            parent = try Directory.open(directory)
        } catch is Directory.Missing {
            return
        }
        defer { close(parent.fd) }
        let actor = parent.actor(for: owner)
        try refuseAnythingButAFile(at: name, in: parent, path: path, as: actor)
        guard FileSystemIdentity.run(as: actor, { unlinkat(parent.fd, name, 0) }) == 0 || errno == ENOENT else {
            throw FailoverError.failed("could not remove \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The last `count` lines of a text file, joined with ` | `, for error messages.
    static func tail(_ path: String, lines count: Int = 8) -> String {
        guard let text = read(path) else { return "" }
        return text.split(separator: "\n").suffix(count).joined(separator: " | ")
    }

    // MARK: Helpers

    /// The refusal for a symbolic link where failoverd expects a file or directory of its own.
    static func symbolicLink(_ path: String) -> FailoverError {
        FailoverError.refused(
            "\(path) is a symbolic link: failoverd does not follow links that the PostgreSQL OS user could have planted. Remove the link and let failoverd write the file again."
        )
    }

    /// Splits an absolute or relative path into its directory and its last segment.
    static func split(_ path: String) throws -> (directory: String, name: String) {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", trimmed) }
        let name = String(trimmed[trimmed.index(after: slash)...])
        guard !name.isEmpty, name != ".", name != ".." else {
            throw FailoverError.invalid("\(path) does not name a file: failoverd needs a path whose last segment is a name")
        }
        let directory = String(trimmed[..<slash])
        return (directory.isEmpty ? "/" : directory, name)
    }

    private static func refuseAnythingButAFile(at name: String, in parent: Directory, path: String, as actor: OSUser?) throws {
        var status = stat()
        guard FileSystemIdentity.run(as: actor, { fstatat(parent.fd, name, &status, AT_SYMLINK_NOFOLLOW) }) == 0 else { return }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFLNK: throw symbolicLink(path)
        default: throw FailoverError.refused("\(path) is not a regular file: failoverd refuses to replace it. Remove it and retry.")
        }
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw FailoverError.failed("could not write \(path): \(String(cString: strerror(errno)))") }
            offset += count
        }
    }

    /// fchmod and (as root) fchown on the descriptor.
    static func setMode(_ mode: mode_t, owner: OSUser?, on fd: Int32, path: String) throws {
        guard fchmod(fd, mode) == 0 else { throw FailoverError.failed("could not chmod \(path): \(String(cString: strerror(errno)))") }
        if let owner, OSUser.isRoot, fchown(fd, owner.uid, owner.gid) != 0 {
            throw FailoverError.failed(
                "could not give \(path) to \(owner.name): \(String(cString: strerror(errno))). Check that it is on a local file system.")
        }
    }

    private static func removeContents(of fd: Int32, path: String, owner: OSUser?) throws {
        let duplicate = dup(fd)
        guard duplicate >= 0, let stream = fdopendir(duplicate) else {
            throw FailoverError.failed("could not list \(path): \(String(cString: strerror(errno)))")
        }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(stream)
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw FailoverError.failed("could not inspect \(path): \(String(cString: strerror(errno)))") }
        let actor = Directory(fd: fd, path: path, status: status).actor(for: owner)
        for name in names {
            var entry = stat()
            guard fstatat(fd, name, &entry, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            let isDirectory = entry.st_mode & S_IFMT == S_IFDIR
            if isDirectory {
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw FailoverError.failed("could not open \(path)/\(name): \(String(cString: strerror(errno)))") }
                defer { close(child) }
                try removeContents(of: child, path: path + "/" + name, owner: owner)
            }
            guard FileSystemIdentity.run(as: actor, { unlinkat(fd, name, isDirectory ? AT_REMOVEDIR : 0) }) == 0 || errno == ENOENT else {
                throw FailoverError.failed(
                    "could not remove \(path)/\(name) as \(actor?.name ?? "failoverd"): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// An open directory reached without following a symbolic link that someone other than root could have placed.
struct Directory {
    /// The descriptor (O_RDONLY | O_DIRECTORY); the caller closes it.
    let fd: Int32
    /// The path it was opened as.
    let path: String
    /// Its status when opened.
    let status: stat

    /// A directory on the way does not exist.
    struct Missing: Error {}

    /// True when only root (or this process's own user) can add, remove or rename entries here: owned by
    /// root or by this process's user, and not writable by group or others.
    var onlyOwnerWrites: Bool {
        (status.st_uid == 0 || status.st_uid == geteuid()) && status.st_mode & 0o022 == 0
    }

    /// Who acts in this directory for files of `owner`: `owner` when this process is root and the directory is
    /// one others can write (the OS user's own, say); nil (this process, as itself) when only root writes here.
    func actor(for owner: OSUser?) -> OSUser? {
        guard let owner, OSUser.isRoot, owner.uid != 0, !onlyOwnerWrites else { return nil }
        return owner
    }

    /// Walks `path` from `/` (or from the working directory for a relative path), segment by segment.
    ///
    /// With `creating`, missing directories are made with that mode and given to that owner, and listed in `created`.
    static func open(_ path: String) throws -> Directory {
        var ignored: [String] = []
        return try open(path, creating: nil, created: &ignored)
    }

    static func open(_ path: String, creating: (mode: mode_t, owner: OSUser?)?, created: inout [String]) throws -> Directory {
        let absolute = path.hasPrefix("/")
        var fd = absolute ? Glibc.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : Glibc.open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw FailoverError.failed("could not open \(absolute ? "/" : "the working directory"): \(String(cString: strerror(errno)))")
        }
        var current = absolute ? "" : "."
        let segments = path.split(separator: "/").map(String.init).filter { $0 != "." && !$0.isEmpty }
        for (index, segment) in segments.enumerated() {
            var parent = stat()
            fstat(fd, &parent)
            let here = Directory(fd: fd, path: current.isEmpty ? "/" : current, status: parent)
            current += "/" + segment
            if segment == ".." {
                close(fd)
                throw FailoverError.invalid("\(path) has a \"..\" segment: failoverd only uses normal absolute paths")
            }
            var next = openat(fd, segment, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT, let (mode, owner) = creating {
                let last = index == segments.count - 1
                let wanted: mode_t = last ? mode : 0o755
                let actor = here.actor(for: owner)
                if FileSystemIdentity.run(as: actor, { mkdirat(fd, segment, wanted) }) != 0 && errno != EEXIST {
                    let reason = String(cString: strerror(errno))
                    close(fd)
                    throw FailoverError.failed("could not create directory \(current) as \(actor?.name ?? "failoverd"): \(reason)")
                }
                next = openat(fd, segment, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if next >= 0 {
                    do {
                        try Files.setMode(wanted, owner: owner, on: next, path: current)
                    } catch {
                        close(next)
                        close(fd)
                        throw error
                    }
                    created.append(current)
                }
            }
            if next < 0 && (errno == ELOOP || errno == ENOTDIR) {
                var link = stat()
                if fstatat(fd, segment, &link, AT_SYMLINK_NOFOLLOW) == 0, link.st_mode & S_IFMT == S_IFLNK {
                    let sticky = parent.st_mode & S_ISVTX != 0
                    let trusted =
                        (link.st_uid == 0 || link.st_uid == geteuid()) && (parent.st_uid == 0 || parent.st_uid == geteuid())
                        && (parent.st_mode & 0o022 == 0 || sticky)
                    guard trusted else {
                        close(fd)
                        throw Files.symbolicLink(current)
                    }
                    next = openat(fd, segment, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                } else {
                    close(fd)
                    throw FailoverError.invalid("\(current) is not a directory (on the way to \(path))")
                }
            }
            guard next >= 0 else {
                let code = errno
                close(fd)
                if code == ENOENT { throw Missing() }
                throw FailoverError.failed("could not open \(current): \(String(cString: strerror(code)))")
            }
            close(fd)
            fd = next
        }
        var status = stat()
        fstat(fd, &status)
        return Directory(fd: fd, path: path, status: status)
    }
}

/// Runs file-system calls with another user's file-system uid and gid, on the calling thread only.
///
/// Linux keeps the file-system ids per thread (setfsuid(2)); while they are a non-root user's, the kernel
/// also drops the file-system capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN…), so every permission check is the
/// one that user would get. The body is synchronous: no other task can run on the thread meanwhile.
enum FileSystemIdentity {
    private typealias SetID = @convention(c) (UInt32) -> Int32
    private static let setfsuid: SetID? = dlsym(nil, "setfsuid").map { unsafeBitCast($0, to: SetID.self) }
    private static let setfsgid: SetID? = dlsym(nil, "setfsgid").map { unsafeBitCast($0, to: SetID.self) }

    /// Runs `body` as `user` (file-system ids only); as this process when `user` is nil or this is not root.
    static func run<T>(as user: OSUser?, _ body: () throws -> T) rethrows -> T {
        guard let user, OSUser.isRoot, user.uid != 0 else { return try body() }
        guard let setfsuid, let setfsgid else {
            // Without setfsuid the operation cannot be confined: fail closed rather than act as root.
            preconditionFailure("setfsuid is not available in this C library")
        }
        let savedErrno = errno
        let previousGroup = UInt32(bitPattern: setfsgid(user.gid))
        let previousUser = UInt32(bitPattern: setfsuid(user.uid))
        // setfsuid returns the previous id whatever happens; an invalid id (-1) reads back the current one.
        precondition(
            UInt32(bitPattern: setfsuid(UInt32.max)) == user.uid && UInt32(bitPattern: setfsgid(UInt32.max)) == user.gid,
            "could not switch the file-system ids to \(user.name)")
        errno = savedErrno
        defer {
            let code = errno
            _ = setfsuid(previousUser)
            _ = setfsgid(previousGroup)
            errno = code
        }
        return try body()
    }
}
