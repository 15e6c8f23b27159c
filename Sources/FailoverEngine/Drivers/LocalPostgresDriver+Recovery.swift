import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Standby settings and fencing: the files failoverd owns in and next to a data directory.
extension LocalPostgresDriver {
    /// The settings failoverd's file sets, and which it therefore removes from postgresql.auto.conf.
    static let ownedSettings = ["restore_command", "primary_conninfo", "recovery_target_timeline"]
    /// The comment line that records the upstream, so that the settings can be read back exactly.
    static let upstreamTag = "# failoverd-upstream:"

    /// The settings in failoverd's file; nil without standby.signal, or when failoverd's file is missing
    /// (a standby that failoverd did not set up).
    public func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        let paths = InstancePaths(instance)
        guard Files.exists(paths.standbySignal), let text = try Files.readText(paths.recoveryFile, owner: osUser) else { return nil }
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(Self.upstreamTag) }) else {
            throw FailoverError.failed(
                "\(paths.recoveryFile) has no \"\(Self.upstreamTag)\" line; it was edited by hand. Configure \(instance.name)'s recovery again with failoverd."
            )
        }
        let value = line.dropFirst(Self.upstreamTag.count).trimmingCharacters(in: .whitespaces)
        // postgresql.auto.conf is read last: a key failoverd owns there (ALTER SYSTEM) wins over its file.
        let overridden = (try Files.readText(paths.autoConf, owner: osUser) ?? "").split(separator: "\n").contains { line in
            let key = line.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
            return Self.ownedSettings.contains(key)
        }
        if value == "none" { return RecoverySettings(upstream: nil, overridden: overridden) }
        guard let upstream = try? JSONDecoder().decode(Instance.self, from: Data(value.utf8)) else {
            throw FailoverError.failed(
                "\(paths.recoveryFile): cannot read the upstream \(value); configure \(instance.name)'s recovery again.")
        }
        return RecoverySettings(upstream: upstream, overridden: overridden)
    }

    /// Writes failoverd's standby settings file, removes the keys it owns from postgresql.auto.conf, makes
    /// sure postgresql.conf includes the file, creates standby.signal, and reloads a running server
    /// (PostgreSQL 15 applies primary_conninfo and restore_command on reload).
    public func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws {
        guard try await hasData(instance) else {
            throw FailoverError.failed(
                "cannot configure recovery of \(instance.name): \(instance.dataDirectory) holds no cluster. Restore it first.")
        }
        let paths = InstancePaths(instance)
        try writeRecoveryFile(instance, settings)
        try prepareForFailoverdSettings(paths)
        if !Files.exists(paths.standbySignal) { try Files.write("", to: paths.standbySignal, owner: osUser) }
        if Postmaster.livePID(in: paths.dataDirectory) != nil { try await reload(instance) }
        logger.info(
            "configured \(instance.name) as \(settings.upstream.map { "a streaming standby of \($0.name)" } ?? "an archive standby")")
    }

    /// Writes failoverd.recovery.conf: restore_command, recovery_target_timeline and primary_conninfo
    /// (empty for an archive standby, so that nothing earlier in postgresql.conf can make it stream).
    func writeRecoveryFile(_ instance: Instance, _ settings: RecoverySettings) throws {
        let upstreamJSON: String
        if let upstream = settings.upstream {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            upstreamJSON = String(decoding: try encoder.encode(upstream), as: UTF8.self)
        } else {
            upstreamJSON = "none"
        }
        let conninfo = settings.upstream.map { replicationConnInfo(from: $0, for: instance).string } ?? ""
        let text = """
            # Written by failoverd; rewritten at every role change, so do not edit it.
            # Included from postgresql.conf (include_if_exists) and read at every start and reload.
            \(Self.upstreamTag) \(upstreamJSON)
            restore_command = \(Self.gucString(backrest.restoreCommand))
            recovery_target_timeline = 'latest'
            primary_conninfo = \(Self.gucString(conninfo))

            """
        try Files.write(text, to: InstancePaths(instance).recoveryFile, owner: osUser)
    }

    /// Makes failoverd's file the one that decides: postgresql.conf includes it, and postgresql.auto.conf
    /// does not override it.
    ///
    /// postgresql.auto.conf is read after postgresql.conf, so any restore_command or primary_conninfo in it
    /// wins over the include. `pgbackrest restore` writes a restore_command there with a hard-coded
    /// --pg1-path, and pg_rewind copies the source's file, which names the source's own upstream. Both
    /// would point the standby at the wrong directory or server, so these keys are removed from it.
    func prepareForFailoverdSettings(_ paths: InstancePaths) throws {
        guard let conf = try Files.readText(paths.postgresqlConf, owner: osUser) else {
            throw FailoverError.failed(
                "\(paths.postgresqlConf) does not exist: failoverd includes its standby settings from the data directory's postgresql.conf. With a configuration kept elsewhere (Debian's /etc/postgresql), add `\(InstancePaths.includeLine)` there by hand."
            )
        }
        do {
            let included = conf.split(separator: "\n").contains { line in
                let text = line.trimmingCharacters(in: .whitespaces)
                return !text.hasPrefix("#") && text.hasPrefix("include_if_exists") && text.contains(InstancePaths.recoveryFileName)
            }
            if !included {
                let separator = conf.hasSuffix("\n") || conf.isEmpty ? "" : "\n"
                try Files.write(
                    conf + separator + "\n# failoverd: standby settings (restore_command, primary_conninfo) live in this file.\n"
                        + InstancePaths.includeLine + "\n", to: paths.postgresqlConf, owner: osUser)
            }
        }
        if let auto = try Files.readText(paths.autoConf, owner: osUser) {
            let lines = auto.split(separator: "\n", omittingEmptySubsequences: false)
            let kept = lines.filter { line in
                let key = line.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
                return !Self.ownedSettings.contains(key)
            }
            if kept.count != lines.count {
                try Files.write(kept.joined(separator: "\n"), to: paths.autoConf, owner: osUser)
            }
        }
    }

    /// Reloads the configuration: pg_reload_conf() over SQL, or `pg_ctl reload` when SQL does not answer.
    func reload(_ instance: Instance) async throws {
        do {
            _ = try await withConnection(instance) { try $0.scalar("SELECT pg_reload_conf()") }
        } catch {
            try await runner.run(bin("pg_ctl"), ["reload", "-D", InstancePaths(instance).dataDirectory, "-s"]).checked()
        }
    }

    /// A postgresql.conf string literal: single quotes, with `'` doubled and `\` escaped.
    static func gucString(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }

    // MARK: Fencing

    /// Writes the fence marker: from now on ``start(_:)`` refuses to start `instance` unless it has
    /// standby.signal. It does not stop the server; the caller stops it (fast, else immediate).
    public func setFenceMarker(_ instance: Instance, reason: String = "fenced by failoverd") async throws {
        let paths = InstancePaths(instance)
        try Files.makeDirectory(paths.stateDirectory, owner: osUser)
        let stamp = ISO8601DateFormatter().string(from: Date())
        try Files.write("\(stamp) \(reason)\n", to: paths.fenceMarker, mode: 0o644, owner: osUser)
    }

    /// Removes the fence marker (``promote(_:)`` does this once the instance is a primary by decision).
    public func clearFenceMarker(_ instance: Instance) throws {
        let marker = InstancePaths(instance).fenceMarker
        try Files.removeFile(marker, owner: osUser)
    }

    /// True when `instance` carries a fence marker.
    public func hasFenceMarker(_ instance: Instance) -> Bool {
        Files.exists(InstancePaths(instance).fenceMarker)
    }
}
