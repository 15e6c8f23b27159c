import Foundation

/// Instances the plan says are started by Debian's pg_ctlcluster: the lab gives them a cluster
/// configuration directory (postgresql-common's layout) before their first start. (systemd units: see
/// Lab+Systemd.swift.)
extension Lab {
    /// Starts `instance` over SSH; a pg_ctlcluster instance gets its configuration directory first, a systemd
    /// instance its host's user manager and its unit.
    public func start(_ instance: Instance, driver: SSHPostgresDriver) async throws {
        if let service = instance.service, service.isPgCtlCluster { try debianize(instance) }
        if let service = instance.service, service.isSystemd { try await prepareUnit(instance) }
        try await driver.start(instance)
    }

    /// Moves what the sandbox wrote in the data directory into ROOT/VERSION/CLUSTER, as pg_createcluster
    /// lays a cluster out: postgresql.conf (with data_directory, port, listen address and socket directory,
    /// which stay out of the data directory and so out of pg_rewind's and restores' copies), pg_hba.conf,
    /// pg_ident.conf, failoverd's standby settings, start.conf `auto` and a `log` link to the server log.
    /// Nothing when the directory already holds a postgresql.conf.
    func debianize(_ instance: Instance) throws {
        let paths = ServerPaths(instance)
        let user = try OSUser.postgresUser(for: plan)
        guard !Files.exists(paths.postgresqlConf) else { return }
        let created = try Files.makeDirectory(paths.configurationDirectory, mode: 0o755, owner: user)
        if var manifest = try LabManifest.load(for: plan, in: stateDirectory) {
            manifest.directories += created
            try manifest.save(for: plan, in: stateDirectory)
        }
        let data = paths.dataDirectory
        for name in ["pg_hba.conf", "pg_ident.conf", InstancePaths.recoveryFileName] {
            if let text = try Files.readText(data + "/" + name, owner: user) {
                try Files.write(text, to: paths.configurationDirectory + "/" + name, owner: user)
            }
        }
        let conf = try Files.readText(data + "/postgresql.conf", owner: user) ?? ""
        try Files.write(
            conf + """

                # failoverd lab: a Debian cluster, started with pg_ctlcluster; these stay out of the data directory.
                data_directory = \(PostgresConf.quoted(data))
                port = \(instance.port)
                listen_addresses = \(PostgresConf.quoted(instance.host))
                unix_socket_directories = \(PostgresConf.quoted(paths.local.socketDirectory))

                """, to: paths.postgresqlConf, owner: user)
        try Files.write("auto\n", to: paths.startConf, mode: 0o644, owner: user)
        try FileManager.default.createSymbolicLink(atPath: paths.configurationDirectory + "/log", withDestinationPath: paths.logFile)
    }
}
