import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// failoverd's state directory (journal, run lock, audit log, sandbox manifests): 0700, owned by the user
/// running failoverd, and refused when anyone else owns it or could write it.
public enum StateDirectory {
    /// The default state directory for `environment`: `$FAILOVERD_STATE`, else one per machine:
    /// `/var/lib/failoverd` as root, `$XDG_STATE_HOME/failoverd` (default `~/.local/state/failoverd`) otherwise.
    ///
    /// Per machine, not per working directory, so that two operators on one host share one journal and one run lock.
    public static func defaultPath(environment: [String: String], isRoot: Bool, home: String) -> String {
        if let state = environment["FAILOVERD_STATE"], !state.isEmpty { return state }
        if isRoot { return "/var/lib/failoverd" }
        if let xdg = environment["XDG_STATE_HOME"], xdg.hasPrefix("/") { return xdg + "/failoverd" }
        return home + "/.local/state/failoverd"
    }

    /// Creates `path` (mode 0700, missing parents 0755) or checks it: owned by the user running failoverd and
    /// writable by no one else; an existing one readable by others is narrowed to 0700.
    ///
    /// - Throws: ``FailoverError`` (invalid input) when `path` is owned by someone else, is writable by group or
    ///   others, is a symbolic link someone else could have placed, or cannot be created.
    public static func prepare(_ path: String) throws {
        var created: [String] = []
        let directory = try Directory.open(path, creating: (0o700, nil), created: &created)
        defer { close(directory.fd) }
        guard directory.status.st_uid == geteuid() else {
            throw FailoverError.invalid(
                "state directory \(path) is owned by uid \(directory.status.st_uid), not by the user running failoverd (uid \(geteuid())): whoever owns it can rewrite the journal and the run lock. Use a directory of your own (--state or $FAILOVERD_STATE), or give this one to uid \(geteuid()) with mode 0700."
            )
        }
        guard directory.status.st_mode & 0o022 == 0 else {
            throw FailoverError.invalid(
                "state directory \(path) is writable by \(directory.status.st_mode & 0o002 != 0 ? "everyone" : "its group") (mode \(String(directory.status.st_mode & 0o7777, radix: 8))): others could plant files in it. Run `chmod 700 \(path)` after checking what it holds."
            )
        }
        if directory.status.st_mode & 0o777 != 0o700 && fchmod(directory.fd, 0o700) != 0 {
            throw FailoverError.invalid("could not set mode 0700 on state directory \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates `name` in `path` (mode 0600) or narrows an existing one to 0600; refuses a symbolic link or a
    /// file owned by someone else. For the journal, whose -wal and -shm files SQLite creates with its mode.
    static func preparePrivateFile(_ name: String, in path: String) throws {
        let directory = try Directory.open(path)
        defer { close(directory.fd) }
        let fd = openat(directory.fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw Files.symbolicLink(path + "/" + name) }
            throw FailoverError.invalid("could not open \(path)/\(name): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_uid == geteuid() else {
            throw FailoverError.invalid(
                "\(path)/\(name) is not a regular file owned by uid \(geteuid()); failoverd will not use it. Inspect it.")
        }
        if status.st_mode & 0o777 != 0o600 && fchmod(fd, 0o600) != 0 {
            throw FailoverError.invalid("could not set mode 0600 on \(path)/\(name): \(String(cString: strerror(errno)))")
        }
    }
}
