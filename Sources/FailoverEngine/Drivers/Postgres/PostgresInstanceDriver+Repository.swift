import Foundation

/// Operations that rebuild a data directory (pgBackRest restore, pg_rewind) or read the repository, which
/// every host reaches (a shared mount or an object store).
extension PostgresInstanceDriver {
    /// True when `segment` (or a later segment on the same or a later timeline) is archived: per
    /// pg_stat_archiver.last_archived_wal when the instance answers, else by listing the pgBackRest repository.
    public func isArchived(_ instance: Instance, segment: String) async throws -> Bool {
        guard let wanted = WALSegmentName(segment), wanted.suffix.isEmpty else {
            throw FailoverError.invalid("\"\(segment)\" is not a WAL segment name (24 hexadecimal digits)")
        }
        let status = try await status(of: instance)
        if status.reachable, let last = status.lastArchivedWAL.flatMap(WALSegmentName.init), last.covers(wanted) { return true }
        return try await repositoryHas(segment, from: instance)
    }

    /// True when the repository's archive holds `segment` (`pgbackrest repo-ls` on `instance`'s host).
    func repositoryHas(_ segment: String, from instance: Instance) async throws -> Bool {
        let r = try await transport.run(
            [backrest.executable] + backrest.arguments("repo-ls", ["--recurse", "--filter=" + segment]) + ["archive/" + backrest.stanza],
            on: instance
        ).checked("Check the repository at \(backrest.repositoryPath) and \(backrest.configPath)\(on(instance)).")
        return r.stdout.split(separator: "\n").contains { $0.contains(segment + "-") || $0.hasSuffix(segment) }
    }

    /// Restores the data directory from the repository as a standby (`pgbackrest restore --type=standby`,
    /// with `--delta` when asked), stopping the server first, and leaves an archive standby: failoverd's
    /// settings file with restore_command, standby.signal, and no recovery keys in postgresql.auto.conf.
    ///
    /// A restore without `delta` refuses a data directory that is not empty.
    /// Takes a pgBackRest backup of `instance` (a primary) on its host, connecting as `user`: `type` "full",
    /// or nil for pgBackRest's default (incremental on the last backup). Returns the seconds it took.
    ///
    /// A CHECKPOINT comes first: right after a promotion pg_control still names the old timeline until the
    /// next checkpoint, and pgBackRest refuses ("WAL timeline 2 does not match pg_control timeline 1").
    @discardableResult
    public func backUp(_ instance: Instance, user: String, type: String? = nil) async throws -> Double {
        try await checkpoint(instance)
        var options = backrest.instanceOptions(instance, user: user) + ["--start-fast", "--log-level-console=warn"]
        if let type { options.append("--type=" + type) }
        let clock = ContinuousClock.now
        try await transport.run([backrest.executable] + backrest.arguments("backup", options), on: instance, timeout: bulkTimeout)
            .checked("See the pgBackRest log in the log-path of \(backrest.configPath).")
        return CommandRunner.seconds(since: clock)
    }

    public func restore(_ instance: Instance, delta: Bool) async throws {
        let paths = paths(instance)
        try await ensureStopped(instance)
        try await transport.makeDirectory(paths.dataDirectory, mode: 0o700, on: instance)
        if !delta {
            // Exit 1: something is there; a directory that cannot be listed is an error, never "empty".
            let empty = try await transport.script(
                #"entries=$(ls -A -- "$1") || exit 2; [ -z "$entries" ]"#, [paths.dataDirectory], on: instance)
            if empty.unreachable || ![0, 1].contains(empty.exitCode) { try empty.checked() }
            if empty.exitCode == 1 {
                throw FailoverError.refused(
                    "will not restore \(instance.name) into \(paths.dataDirectory)\(on(instance)): it is not empty. Use a delta restore (rebuild), or move the directory away."
                )
            }
        }
        let clock = ContinuousClock.now
        var options = ["--pg1-path=" + paths.dataDirectory, "--type=standby", "--log-level-console=warn"]
        if delta { options.append("--delta") }
        try await transport.run([backrest.executable] + backrest.arguments("restore", options), on: instance, timeout: bulkTimeout).checked(
            "Check that the repository \(backrest.repositoryPath) has a backup (pgbackrest info) and that \(transport.postgresUser) can write \(paths.dataDirectory)\(on(instance))."
        )
        try await writeStandbySettings(instance, .archiveOnly)
        logger.info(
            "restored \(instance.name)\(delta ? " (delta)" : "") in \(String(format: "%.2f", CommandRunner.seconds(since: clock))) s")
    }

    /// Runs pg_rewind on the stopped `instance` from the running `source` (as the rewind role, password from
    /// the passfile) after a CHECKPOINT on the source, retrying with --restore-target-wal when the target's
    /// own WAL was already recycled. Leaves an archive standby, as ``restore(_:delta:)`` does. Returns a
    /// one-line summary.
    public func rewind(_ instance: Instance, source: Instance) async throws -> String {
        let paths = paths(instance)
        guard try await hasData(instance) else {
            throw FailoverError.failed(
                "cannot rewind \(instance.name): \(paths.dataDirectory)\(on(instance)) holds no cluster. Rebuild it from the repository instead."
            )
        }
        try await ensureStopped(instance)
        // --restore-target-wal runs the target's restore_command (from `postgres -C`), so failoverd's settings
        // must be in place before pg_rewind, not only after it; standby.signal is not: pg_rewind's single-user
        // crash recovery of the target refuses standby mode.
        try await writeStandbySettings(instance, .archiveOnly, signal: false)
        let clock = ContinuousClock.now
        // pg_rewind compares timelines from the source's control file, which keeps the old timeline until the
        // first checkpoint after a promotion: without this CHECKPOINT it says "no rewind required" for a
        // freshly promoted source, and the target then cannot follow it.
        try await checkpoint(source)
        var arguments = [bin("pg_rewind"), "--target-pgdata=" + paths.dataDirectory, "--source-server=" + rewindConnInfo(source).string]
        // A Debian cluster keeps postgresql.conf outside the data directory: pg_rewind's own runs of the
        // target (crash recovery, restore_command) must read it there (--config-file, PostgreSQL 15).
        if cluster(instance) != nil { arguments.append("--config-file=" + paths.postgresqlConf) }
        // The working directory is the target's data directory: its restore_command uses --pg1-path="$(pwd)".
        var r = try await transport.run(arguments, on: instance, workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        var retried = false
        if !r.unreachable && !r.succeeded && (r.stderr + r.stdout).contains("could not find previous WAL record") {
            retried = true
            logger.info("pg_rewind needs archived WAL; retrying with --restore-target-wal", metadata: ["instance": "\(instance.name)"])
            r = try await transport.run(
                arguments + ["--restore-target-wal"], on: instance, workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        }
        try r.checked("If the target cannot be rewound, rebuild it from the repository (delta restore).")
        try await writeStandbySettings(instance, .archiveOnly)
        let facts = (r.stderr + "\n" + r.stdout).split(separator: "\n").map {
            $0.replacingOccurrences(of: "pg_rewind: ", with: "").trimmingCharacters(in: .whitespaces)
        }.filter { $0.hasPrefix("servers diverged") || $0.hasPrefix("rewinding from") || $0.hasPrefix("no rewind required") }
        let summary =
            "pg_rewind of \(instance.name) from \(source.name)\(on(instance)) in \(String(format: "%.2f", CommandRunner.seconds(since: clock))) s"
            + (retried ? " (with --restore-target-wal)" : "") + (facts.isEmpty ? "" : ": " + facts.joined(separator: "; "))
        logger.info("pg_rewind", metadata: ["instance": "\(instance.name)", "summary": "\(summary)"])
        return summary
    }

    /// The system identifier of the stanza's current database, from `pgbackrest info --output=json` on the
    /// first of the plan's hosts that answers (this host once, for ``LocalHost``).
    public func repositorySystemIdentifier() async throws -> String? {
        var lastError: (any Error)?
        var tried: Set<String> = []
        for site in plan.sites where tried.insert(on(site.leader)).inserted {
            do {
                let r = try await transport.run([backrest.executable] + backrest.arguments("info", ["--output=json"]), on: site.leader)
                    .checked("Check the repository at \(backrest.repositoryPath) and \(backrest.configPath)\(on(site.leader)).")
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
        throw lastError ?? FailoverError.failed("plan \"\(plan.name)\" has no site whose host could read the repository")
    }
}
