import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An operating-system account, as found in the password database.
///
/// PostgreSQL refuses to run as root, so when failoverd runs as root it runs PostgreSQL, pg_ctl,
/// pg_rewind and pgBackRest as this unprivileged user (see ``CommandRunner``).
public struct OSUser: Sendable, Equatable {
    /// The login name.
    public var name: String
    /// The numeric user id.
    public var uid: uid_t
    /// The primary group id.
    public var gid: gid_t
    /// The home directory.
    public var home: String

    /// Creates a user description.
    public init(name: String, uid: uid_t, gid: gid_t, home: String) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
    }

    /// Looks `name` up in the password database; nil when there is no such user.
    public static func lookup(_ name: String) -> OSUser? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(name, &pwd, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return OSUser(name: name, uid: pwd.pw_uid, gid: pwd.pw_gid, home: String(cString: pwd.pw_dir))
    }

    /// The user this process runs as.
    public static var current: OSUser {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let uid = geteuid()
        if getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, result != nil {
            return OSUser(name: String(cString: pwd.pw_name), uid: uid, gid: pwd.pw_gid, home: String(cString: pwd.pw_dir))
        }
        return OSUser(name: String(uid), uid: uid, gid: getegid(), home: NSTemporaryDirectory())
    }

    /// True when this process runs as root and so must hand PostgreSQL work to an unprivileged user.
    public static var isRoot: Bool { geteuid() == 0 }
}
