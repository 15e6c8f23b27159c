import Foundation

/// Standby settings, restores and rewinds on a remote host: the same files and rules as the local driver
/// (failoverd's settings file included from postgresql.conf, owned keys removed from postgresql.auto.conf).
extension SSHPostgresDriver {
    /// The settings in failoverd's file on the host; nil without standby.signal or without failoverd's file.
    /// One round trip: the script prints whether postgresql.auto.conf overrides an owned key, then the file.
    public func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        let paths = RemotePaths(instance)
        let r = try await shell(instance).script(
            """
            [ -e "$1" ] && [ -e "$2" ] || exit 3
            if [ -f "$3" ] && grep -Eiq "$4" "$3"; then echo overridden; else echo own; fi
            exec cat -- "$2"
            """, [paths.standbySignal, paths.recoveryFile, paths.autoConf, Self.ownedSettingsPattern])
        if r.exitCode == 3 && !r.unreachable { return nil }
        try r.checked()
        guard let newline = r.stdout.firstIndex(of: "\n") else {
            throw FailoverError.failed("reading \(paths.recoveryFile) on \(instance.host) printed nothing")
        }
        let overridden = r.stdout[..<newline] == "overridden"
        let text = r.stdout[r.stdout.index(after: newline)...]
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(LocalPostgresDriver.upstreamTag) }) else {
            throw FailoverError.failed(
                "\(paths.recoveryFile) on \(instance.host) has no \"\(LocalPostgresDriver.upstreamTag)\" line; it was edited by hand. Configure \(instance.name)'s recovery again with failoverd."
            )
        }
        let value = line.dropFirst(LocalPostgresDriver.upstreamTag.count).trimmingCharacters(in: .whitespaces)
        if value == "none" { return RecoverySettings(upstream: nil, overridden: overridden) }
        guard let upstream = try? JSONDecoder().decode(Instance.self, from: Data(value.utf8)) else {
            throw FailoverError.failed(
                "\(paths.recoveryFile) on \(instance.host): cannot read the upstream \(value); configure \(instance.name)'s recovery again."
            )
        }
        return RecoverySettings(upstream: upstream, overridden: overridden)
    }

    /// Writes failoverd's standby settings on the host, makes postgresql.conf include them, removes the keys
    /// failoverd owns from postgresql.auto.conf, creates standby.signal and reloads a running server.
    public func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws {
        if try await writeSettings(instance, settings) { try await reload(instance) }
        logger.info(
            "configured \(instance.name) as \(settings.upstream.map { "a streaming standby of \($0.name)" } ?? "an archive standby")")
    }

    /// The settings the owned keys are, as an extended regular expression for grep -i.
    static var ownedSettingsPattern: String {
        "^[[:space:]]*(" + LocalPostgresDriver.ownedSettings.joined(separator: "|") + ")[[:space:]]*="
    }

    /// In one remote script (one round trip): the recovery file, the include in postgresql.conf, the owned
    /// keys removed from postgresql.auto.conf and (unless `signal` is false) standby.signal, as the local
    /// driver does them. Returns whether a postmaster runs for the data directory.
    @discardableResult
    func writeSettings(_ instance: Instance, _ settings: RecoverySettings, signal: Bool = true) async throws -> Bool {
        let paths = RemotePaths(instance)
        let r = try await shell(instance).script(
            """
            d="$1"; conf="$2"; rec="$3"; a="$1/postgresql.auto.conf"
            [ -f "$d/PG_VERSION" ] || exit 10
            [ -f "$conf" ] || exit 11
            umask 077
            { printf '%s' "$4" > "$rec.failoverd-new" && mv -f -- "$rec.failoverd-new" "$rec"; } || exit 12
            if ! grep -Eq '^[[:space:]]*include_if_exists.*failoverd[.]recovery[.]conf' "$conf"; then
              printf '\n# failoverd: standby settings (restore_command, primary_conninfo) live in this file.\n%s\n' "$5" >> "$conf" || exit 13
            fi
            if [ -f "$a" ] && grep -Eiq "$8" "$a"; then
              grep -Eiv "$8" "$a" > "$a.failoverd-new"; mv -f -- "$a.failoverd-new" "$a" || exit 14
            fi
            if [ "$7" = 1 ] && [ ! -e "$d/standby.signal" ]; then : > "$d/standby.signal" || exit 15; fi
            "$6" status -D "$d" >/dev/null 2>&1 && echo running
            exit 0
            """,
            [
                paths.dataDirectory, paths.postgresqlConf, paths.recoveryFile, try recoveryFileText(instance, settings),
                InstancePaths.includeLine,
                bin("pg_ctl"), signal ? "1" : "0", Self.ownedSettingsPattern,
            ])
        switch (r.unreachable, r.exitCode) {
        case (false, 10):
            throw FailoverError.failed(
                "cannot configure recovery of \(instance.name): \(paths.dataDirectory) on \(instance.host) holds no cluster. Restore it first."
            )
        case (false, 11):
            throw FailoverError.failed(
                "\(paths.postgresqlConf) does not exist on \(instance.host): failoverd includes its standby settings from it.")
        default:
            try r.checked("Check that \(osUser) can write \(paths.configurationDirectory) and \(paths.dataDirectory) on \(instance.host).")
        }
        return r.stdout.contains("running")
    }

    /// failoverd.recovery.conf's text, as the local driver writes it.
    func recoveryFileText(_ instance: Instance, _ settings: RecoverySettings) throws -> String {
        let upstreamJSON: String
        if let upstream = settings.upstream {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            upstreamJSON = String(decoding: try encoder.encode(upstream), as: UTF8.self)
        } else {
            upstreamJSON = "none"
        }
        let conninfo = settings.upstream.map { replicationConnInfo(from: $0, for: instance).string } ?? ""
        return """
            # Written by failoverd; rewritten at every role change, so do not edit it.
            # Included from postgresql.conf (include_if_exists) and read at every start and reload.
            \(LocalPostgresDriver.upstreamTag) \(upstreamJSON)
            restore_command = \(LocalPostgresDriver.gucString(backrest.restoreCommand))
            recovery_target_timeline = 'latest'
            primary_conninfo = \(LocalPostgresDriver.gucString(conninfo))

            """
    }

    /// pg_reload_conf() over SQL, else `pg_ctl reload` on the host.
    func reload(_ instance: Instance) async throws {
        do {
            _ = try await withConnection(instance) { try $0.scalar("SELECT pg_reload_conf()") }
        } catch {
            try await shell(instance).run([bin("pg_ctl"), "reload", "-D", RemotePaths(instance).dataDirectory, "-s"]).checked()
        }
    }

    /// True when `segment` (or a later one) is archived: per pg_stat_archiver, else by listing the repository.
    public func isArchived(_ instance: Instance, segment: String) async throws -> Bool {
        guard let wanted = WALSegmentName(segment), wanted.suffix.isEmpty else {
            throw FailoverError.invalid("\"\(segment)\" is not a WAL segment name (24 hexadecimal digits)")
        }
        let status = try await status(of: instance)
        if status.reachable, let last = status.lastArchivedWAL.flatMap(WALSegmentName.init), last.covers(wanted) { return true }
        let r = try await shell(instance).run(
            [backrest.executable] + backrest.arguments("repo-ls", ["--recurse", "--filter=" + segment]) + ["archive/" + backrest.stanza]
        ).checked("Check the repository at \(backrest.repositoryPath) and \(backrest.configPath) on \(instance.host).")
        return r.stdout.split(separator: "\n").contains { $0.contains(segment + "-") || $0.hasSuffix(segment) }
    }

    /// Restores the data directory on the host from the repository as an archive standby (`--delta` when asked).
    public func restore(_ instance: Instance, delta: Bool) async throws {
        let paths = RemotePaths(instance)
        try await ensureStopped(instance)
        try await makeDirectory(instance, paths.dataDirectory)
        if !delta {
            let r = try await shell(instance).script(#"[ -z "$(ls -A -- "$1")" ]"#, [paths.dataDirectory])
            if r.unreachable { try r.checked() }
            if r.exitCode != 0 {
                throw FailoverError.refused(
                    "will not restore \(instance.name) into \(paths.dataDirectory) on \(instance.host): it is not empty. Use a delta restore (rebuild), or move the directory away."
                )
            }
        }
        var options = ["--pg1-path=" + paths.dataDirectory, "--type=standby", "--log-level-console=warn"]
        if delta { options.append("--delta") }
        try await shell(instance).run([backrest.executable] + backrest.arguments("restore", options), timeout: bulkTimeout).checked(
            "Check that the repository \(backrest.repositoryPath) has a backup (pgbackrest info) and that \(osUser) can write \(paths.dataDirectory) on \(instance.host)."
        )
        try await writeSettings(instance, .archiveOnly)
        logger.info("restored", metadata: ["instance": "\(instance.name)", "delta": "\(delta)"])
    }

    /// Runs pg_rewind on the host from the running `source`, after a CHECKPOINT on the source, retrying with
    /// --restore-target-wal; leaves an archive standby. Returns a one-line summary.
    public func rewind(_ instance: Instance, source: Instance) async throws -> String {
        let paths = RemotePaths(instance)
        guard try await hasData(instance) else {
            throw FailoverError.failed(
                "cannot rewind \(instance.name): \(paths.dataDirectory) on \(instance.host) holds no cluster. Rebuild it from the repository instead."
            )
        }
        try await ensureStopped(instance)
        // --restore-target-wal runs the target's restore_command, so the settings come first; standby.signal
        // does not: pg_rewind's single-user crash recovery of the target refuses standby mode.
        try await writeSettings(instance, .archiveOnly, signal: false)
        let clock = ContinuousClock.now
        try await checkpoint(source)
        var arguments = [bin("pg_rewind"), "--target-pgdata=" + paths.dataDirectory, "--source-server=" + rewindConnInfo(source).string]
        // A Debian cluster keeps postgresql.conf outside the data directory: pg_rewind's own runs of the
        // target (crash recovery, restore_command) must read it there (--config-file, PostgreSQL 15).
        if cluster(instance) != nil { arguments.append("--config-file=" + paths.postgresqlConf) }
        let shell = try shell(instance)
        var r = try await shell.run(arguments, workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        var retried = false
        if !r.unreachable && r.exitCode != 0 && (r.result.stderr + r.stdout).contains("could not find previous WAL record") {
            retried = true
            r = try await shell.run(arguments + ["--restore-target-wal"], workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        }
        try r.checked("If the target cannot be rewound, rebuild it from the repository (delta restore).")
        try await writeSettings(instance, .archiveOnly)
        let facts = (r.result.stderr + "\n" + r.stdout).split(separator: "\n").map {
            $0.replacingOccurrences(of: "pg_rewind: ", with: "").trimmingCharacters(in: .whitespaces)
        }.filter { $0.hasPrefix("servers diverged") || $0.hasPrefix("rewinding from") || $0.hasPrefix("no rewind required") }
        return
            "pg_rewind of \(instance.name) from \(source.name) on \(instance.host) in \(String(format: "%.2f", CommandRunner.seconds(since: clock))) s"
            + (retried ? " (with --restore-target-wal)" : "") + (facts.isEmpty ? "" : ": " + facts.joined(separator: "; "))
    }

    /// The system identifier of the stanza's current database (`pgbackrest info` on the first host that answers).
    public func repositorySystemIdentifier() async throws -> String? {
        var lastError: (any Error)?
        for site in plan.sites where site.driver == .ssh {
            do {
                let r = try await shell(site.leader).run([backrest.executable] + backrest.arguments("info", ["--output=json"])).checked()
                guard let stanzas = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]],
                    let stanza = stanzas.first(where: { $0["name"] as? String == backrest.stanza }),
                    let databases = stanza["db"] as? [[String: Any]]
                else { return nil }
                let current = databases.max { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }
                return (current?["system-id"] as? NSNumber).map { $0.stringValue } ?? (current?["system-id"] as? String)
            } catch {
                lastError = error
            }
        }
        throw lastError ?? FailoverError.failed("no ssh site can read the repository")
    }

    /// Stops a running server (fast, else immediate) and removes a stale postmaster.pid.
    func ensureStopped(_ instance: Instance) async throws {
        if try await postmasterRuns(instance) {
            do { try await stop(instance, mode: .fast) } catch { try await stop(instance, mode: .immediate) }
        }
        if try await !postmasterRuns(instance) {
            try await removeFile(instance, RemotePaths(instance).postmasterPID)
        }
    }
}
