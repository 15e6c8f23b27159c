import Foundation

/// Where one instance's files live: its data directory, and next to it a state directory that failoverd owns.
///
/// The state directory (`<dataDirectory>.failoverd`) holds the unix socket, the server log and the fence
/// marker. It sits outside the data directory on purpose: pg_rewind and `pgbackrest restore --delta`
/// rewrite the data directory (they would copy another server's log or socket, or delete the fence marker).
public struct InstancePaths: Sendable, Equatable {
    /// The data directory (PGDATA), without a trailing slash.
    public var dataDirectory: String

    /// The paths of `instance`.
    public init(_ instance: Instance) {
        var dir = instance.dataDirectory
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        dataDirectory = dir
    }

    /// failoverd's per-instance directory next to the data directory (socket, log, fence marker).
    public var stateDirectory: String { dataDirectory + ".failoverd" }
    /// The unix socket directory (passed with `pg_ctl -o "-k …"`).
    public var socketDirectory: String { stateDirectory }
    /// The server log that `pg_ctl -l` writes.
    public var logFile: String { stateDirectory + "/postgresql.log" }
    /// The fence marker: while it exists the instance must not start as a primary.
    public var fenceMarker: String { stateDirectory + "/fenced" }

    /// PG_VERSION, present when the data directory holds a cluster.
    public var pgVersion: String { dataDirectory + "/PG_VERSION" }
    /// postmaster.pid, present while a server runs (or after a crash).
    public var postmasterPID: String { dataDirectory + "/postmaster.pid" }
    /// standby.signal: the server starts in standby mode.
    public var standbySignal: String { dataDirectory + "/standby.signal" }
    /// postgresql.conf.
    public var postgresqlConf: String { dataDirectory + "/postgresql.conf" }
    /// postgresql.auto.conf (ALTER SYSTEM, and what pgbackrest restore and pg_rewind leave behind).
    public var autoConf: String { dataDirectory + "/postgresql.auto.conf" }
    /// The standby settings file failoverd owns, included from postgresql.conf.
    public var recoveryFile: String { dataDirectory + "/" + Self.recoveryFileName }

    /// The name of failoverd's standby settings file inside the data directory.
    public static let recoveryFileName = "failoverd.recovery.conf"
    /// The line that makes postgresql.conf read failoverd's standby settings.
    public static let includeLine = "include_if_exists = '\(recoveryFileName)'"
}
