import Foundation

/// Standby settings and fencing: the files failoverd owns in and next to a data directory (``PostgresConf``
/// says what they hold).
extension PostgresInstanceDriver {
    /// The settings in failoverd's file; nil without standby.signal, or when failoverd's file is missing
    /// (a standby that failoverd did not set up). One read of the three files.
    public func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        let paths = paths(instance)
        let files = try await transport.read([paths.standbySignal, paths.recoveryFile, paths.autoConf], on: instance)
        guard files[0] != nil, let text = files[1] else { return nil }
        // postgresql.auto.conf is read last: a key failoverd owns there (ALTER SYSTEM) wins over its file.
        let overridden = PostgresConf.overridesOwnedSettings(files[2] ?? "")
        do {
            return RecoverySettings(upstream: try PostgresConf.upstream(inRecoveryFile: text), overridden: overridden)
        } catch .noUpstreamLine {
            throw FailoverError.failed(
                "\(paths.recoveryFile)\(on(instance)) has no \"\(PostgresConf.upstreamTag)\" line; it was edited by hand. Configure \(instance.name)'s recovery again with failoverd."
            )
        } catch .unreadableUpstream(let value) {
            throw FailoverError.failed(
                "\(paths.recoveryFile)\(on(instance)): cannot read the upstream \(value); configure \(instance.name)'s recovery again.")
        }
    }

    /// Writes failoverd's standby settings file, removes the keys it owns from postgresql.auto.conf, makes
    /// sure postgresql.conf includes the file, creates standby.signal, and reloads a server that is not
    /// proven stopped (PostgreSQL 15 applies primary_conninfo and restore_command on reload).
    public func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws {
        try await writeStandbySettings(instance, settings)
        if try await postmasterRuns(instance) { try await reload(instance) }
        logger.info(
            "configured \(instance.name) as \(settings.upstream.map { "a streaming standby of \($0.name)" } ?? "an archive standby")")
    }

    /// Makes failoverd's file the one that decides, in one read and one write of the files (and an append to
    /// postgresql.conf the first time): the settings file, postgresql.conf's include of it, no owned key in
    /// postgresql.auto.conf (read after postgresql.conf, it would win over the include), and, unless `signal`
    /// is false, standby.signal.
    func writeStandbySettings(_ instance: Instance, _ settings: RecoverySettings, signal: Bool = true) async throws {
        let paths = paths(instance)
        let files = try await transport.read([paths.pgVersion, paths.postgresqlConf, paths.autoConf, paths.standbySignal], on: instance)
        guard files[0] != nil else {
            throw FailoverError.failed(
                "cannot configure recovery of \(instance.name): \(paths.dataDirectory)\(on(instance)) holds no cluster. Restore it first.")
        }
        guard let conf = files[1] else {
            throw FailoverError.failed(
                "\(paths.postgresqlConf) does not exist\(on(instance)): failoverd includes its standby settings from the server's postgresql.conf. With a configuration kept elsewhere, name how the instance is started in the plan (service: pg_ctlcluster) or add `\(InstancePaths.includeLine)` there by hand."
            )
        }
        let conninfo = settings.upstream.map { replicationConnInfo(from: $0, for: instance).string } ?? ""
        var writes = [
            HostFile(
                paths.recoveryFile,
                try PostgresConf.recoveryFile(settings, primaryConnInfo: conninfo, restoreCommand: backrest.restoreCommand))
        ]
        if let auto = files[2], let kept = PostgresConf.withoutOwnedSettings(auto) { writes.append(HostFile(paths.autoConf, kept)) }
        if signal && files[3] == nil { writes.append(HostFile(paths.standbySignal, "")) }
        try await transport.write(writes, on: instance)
        if !PostgresConf.includesRecoveryFile(conf) {
            try await transport.append(PostgresConf.includeBlock(after: conf), to: paths.postgresqlConf, on: instance)
        }
    }

    /// Reloads the configuration: pg_reload_conf() over SQL, or `pg_ctl reload` on the host when SQL does not answer.
    func reload(_ instance: Instance) async throws {
        do {
            _ = try await withConnection(instance) { try $0.scalar("SELECT pg_reload_conf()") }
        } catch {
            try await transport.run([bin("pg_ctl"), "reload", "-D", paths(instance).dataDirectory, "-s"], on: instance).checked()
        }
    }

    // MARK: Fencing

    /// Writes the fence marker: from now on ``start(_:)`` refuses to start `instance` unless it has
    /// standby.signal. It does not stop the server; the caller stops it (fast, else immediate).
    ///
    /// With pg_ctlcluster, start.conf becomes `disabled` (its value before is kept to restore it), so a DBA's
    /// or an init script's `pg_ctlcluster start` refuses too; with a systemd unit, its fence drop-in is
    /// checked (for a user manager, written) so that systemd refuses as well.
    public func setFenceMarker(_ instance: Instance, reason: String = "fenced by failoverd") async throws {
        let paths = paths(instance)
        try await transport.makeDirectory(paths.stateDirectory, mode: 0o700, on: instance)
        let stamp = ISO8601DateFormatter().string(from: Date())
        try await transport.write([HostFile(paths.fenceMarker, "\(stamp) \(reason)\n", mode: 0o644)], on: instance)
        if cluster(instance) != nil { try await disableStartConf(instance) }
        if let unit = systemd(instance) { try await ensureFenceDropIn(instance, unit) }
    }

    /// Removes the fence marker (``promote(_:)`` does this once the instance is a primary by decision), and
    /// gives pg_ctlcluster's start.conf back its value from before the fence.
    public func clearFenceMarker(_ instance: Instance) async throws {
        try await transport.remove(paths(instance).fenceMarker, on: instance)
        if cluster(instance) != nil { try await restoreStartConf(instance) }
    }

    /// True when `instance` carries a fence marker (a symbolic link in its place counts); throws when its
    /// host cannot tell.
    public func hasFenceMarker(_ instance: Instance) async throws -> Bool {
        try await transport.exists(paths(instance).fenceMarker, on: instance)
    }
}
