/// Where one instance's files live on its host, by how it is started: ``InstancePaths`` (the data directory
/// and failoverd's state directory next to it), and the configuration directory, which is the data directory
/// with pg_ctl and /etc/postgresql/VERSION/CLUSTER (or the plan's root) with Debian's pg_ctlcluster.
public struct ServerPaths: Sendable, Equatable {
    /// The data directory and failoverd's directory next to it (log, socket, fence marker).
    public var local: InstancePaths
    /// The directory holding postgresql.conf (and failoverd's standby settings file, included from it).
    public var configurationDirectory: String

    /// The paths of `instance`: as its service lays them out, or (`service` false) as pg_ctl does, whatever
    /// its service.
    public init(_ instance: Instance, service applies: Bool = true) {
        local = InstancePaths(instance)
        if applies, let service = instance.service, service.manager == "pg_ctlcluster", let version = service.version,
            let cluster = service.cluster
        {
            configurationDirectory = (service.configurationRoot ?? "/etc/postgresql") + "/\(version)/\(cluster)"
        } else {
            configurationDirectory = local.dataDirectory
        }
    }

    /// PGDATA.
    public var dataDirectory: String { local.dataDirectory }
    /// failoverd's directory next to the data directory.
    public var stateDirectory: String { local.stateDirectory }
    /// The unix socket directory (passed with `pg_ctl -o "-k …"`).
    public var socketDirectory: String { local.socketDirectory }
    /// The server log (pg_ctl -l).
    public var logFile: String { local.logFile }
    /// The fence marker.
    public var fenceMarker: String { local.fenceMarker }
    /// standby.signal.
    public var standbySignal: String { local.standbySignal }
    /// PG_VERSION.
    public var pgVersion: String { local.pgVersion }
    /// postmaster.pid.
    public var postmasterPID: String { local.postmasterPID }
    /// postgresql.auto.conf (always in the data directory).
    public var autoConf: String { local.autoConf }
    /// postgresql.conf.
    public var postgresqlConf: String { configurationDirectory + "/postgresql.conf" }
    /// failoverd's standby settings, next to the postgresql.conf that includes them.
    public var recoveryFile: String { configurationDirectory + "/" + InstancePaths.recoveryFileName }
    /// pg_ctlcluster's start.conf (`auto`, `manual` or `disabled`).
    public var startConf: String { configurationDirectory + "/start.conf" }
    /// start.conf's value before failoverd fenced the instance (`disabled` while fenced).
    public var savedStartConf: String { stateDirectory + "/start.conf.before-fence" }
}
