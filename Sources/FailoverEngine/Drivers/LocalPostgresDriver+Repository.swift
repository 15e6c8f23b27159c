import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Operations that rebuild a data directory (pgBackRest restore, pg_rewind) or read the repository.
extension LocalPostgresDriver {
    /// True when `segment` (or a later segment on the same or a later timeline) is archived: per
    /// pg_stat_archiver.last_archived_wal when the instance answers, else by listing the pgBackRest repository.
    public func isArchived(_ instance: Instance, segment: String) async throws -> Bool {
        guard let wanted = WALSegmentName(segment), wanted.suffix.isEmpty else {
            throw FailoverError.invalid("\"\(segment)\" is not a WAL segment name (24 hexadecimal digits)")
        }
        let status = try await status(of: instance)
        if status.reachable, let last = status.lastArchivedWAL.flatMap(WALSegmentName.init), last.covers(wanted) { return true }
        return try await repositoryHas(segment)
    }

    /// True when the repository's archive holds `segment` (`pgbackrest repo-ls`).
    func repositoryHas(_ segment: String) async throws -> Bool {
        let result = try await runner.run(
            backrest.executable, backrest.arguments("repo-ls", ["--recurse", "--filter=" + segment]) + ["archive/" + backrest.stanza]
        ).checked("Check the repository at \(backrest.repositoryPath) and \(backrest.configPath).")
        return result.stdout.split(separator: "\n").contains { $0.contains(segment + "-") || $0.hasSuffix(segment) }
    }

    /// Restores the data directory from the repository as a standby (`pgbackrest restore --type=standby`,
    /// with `--delta` when asked), stopping the server first, and leaves an archive standby: failoverd's
    /// settings file with restore_command, standby.signal, and no recovery keys in postgresql.auto.conf.
    ///
    /// A restore without `delta` refuses a data directory that is not empty.
    public func restore(_ instance: Instance, delta: Bool) async throws {
        let paths = InstancePaths(instance)
        try await ensureStopped(instance)
        try Files.makeDirectory(paths.dataDirectory, owner: osUser)
        if !delta, let entries = try? FileManager.default.contentsOfDirectory(atPath: paths.dataDirectory), !entries.isEmpty {
            throw FailoverError.refused(
                "will not restore \(instance.name) into \(paths.dataDirectory): it is not empty. Use a delta restore (rebuild), or move the directory away."
            )
        }
        let clock = ContinuousClock.now
        var options = ["--pg1-path=" + paths.dataDirectory, "--type=standby", "--log-level-console=warn"]
        if delta { options.append("--delta") }
        try await runner.run(backrest.executable, backrest.arguments("restore", options), timeout: bulkTimeout).checked(
            "Check that the repository \(backrest.repositoryPath) has a backup (pgbackrest info) and that \(osUser.name) can write \(paths.dataDirectory)."
        )
        try prepareForFailoverdSettings(paths)
        try writeRecoveryFile(instance, .archiveOnly)
        if !Files.exists(paths.standbySignal) { try Files.write("", to: paths.standbySignal, owner: osUser) }
        logger.info(
            "restored \(instance.name)\(delta ? " (delta)" : "") in \(String(format: "%.2f", CommandRunner.seconds(since: clock))) s")
    }

    /// Runs pg_rewind on the stopped `instance` from the running `source` (as the rewind role, password from
    /// the passfile) after a CHECKPOINT on the source, retrying with --restore-target-wal when the target's own WAL was already recycled.
    /// Leaves an archive standby, as ``restore(_:delta:)`` does. Returns a one-line summary.
    public func rewind(_ instance: Instance, source: Instance) async throws -> String {
        let paths = InstancePaths(instance)
        guard try await hasData(instance) else {
            throw FailoverError.failed(
                "cannot rewind \(instance.name): \(paths.dataDirectory) holds no cluster. Rebuild it from the repository instead.")
        }
        try await ensureStopped(instance)
        // --restore-target-wal runs the target's restore_command (from `postgres -C`), so failoverd's
        // settings must be in place before pg_rewind, not only after it.
        try prepareForFailoverdSettings(paths)
        try writeRecoveryFile(instance, .archiveOnly)
        let clock = ContinuousClock.now
        // pg_rewind compares timelines from the source's control file, which keeps the old timeline until the
        // first checkpoint after a promotion: without this CHECKPOINT it says "no rewind required" for a
        // freshly promoted source, and the target then cannot follow it.
        try await checkpoint(source)
        let arguments = ["--target-pgdata=" + paths.dataDirectory, "--source-server=" + rewindConnInfo(source).string]
        // The working directory is the target's data directory: its restore_command uses --pg1-path="$(pwd)".
        var result = try await runner.run(bin("pg_rewind"), arguments, workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        var retried = false
        if !result.succeeded && (result.stderr + result.stdout).contains("could not find previous WAL record") {
            retried = true
            logger.info("pg_rewind needs archived WAL; retrying with --restore-target-wal", metadata: ["instance": "\(instance.name)"])
            result = try await runner.run(
                bin("pg_rewind"), arguments + ["--restore-target-wal"], workingDirectory: paths.dataDirectory, timeout: bulkTimeout)
        }
        try result.checked("If the target cannot be rewound, rebuild it from the repository (delta restore).")
        try prepareForFailoverdSettings(paths)
        try writeRecoveryFile(instance, .archiveOnly)
        if !Files.exists(paths.standbySignal) { try Files.write("", to: paths.standbySignal, owner: osUser) }
        let seconds = CommandRunner.seconds(since: clock)
        let facts = (result.stderr + "\n" + result.stdout).split(separator: "\n").map {
            $0.replacingOccurrences(of: "pg_rewind: ", with: "").trimmingCharacters(in: .whitespaces)
        }.filter { $0.hasPrefix("servers diverged") || $0.hasPrefix("rewinding from") || $0.hasPrefix("no rewind required") }
        let summary =
            "pg_rewind of \(instance.name) from \(source.name) in \(String(format: "%.2f", seconds)) s"
            + (retried ? " (with --restore-target-wal)" : "") + (facts.isEmpty ? "" : ": " + facts.joined(separator: "; "))
        logger.info("pg_rewind", metadata: ["instance": "\(instance.name)", "summary": "\(summary)"])
        return summary
    }

    /// The system identifier of the stanza's current database, from `pgbackrest info --output=json`.
    public func repositorySystemIdentifier() async throws -> String? {
        let result = try await runner.run(backrest.executable, backrest.arguments("info", ["--output=json"])).checked(
            "Check the repository at \(backrest.repositoryPath) and \(backrest.configPath).")
        guard let stanzas = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]],
            let stanza = stanzas.first(where: { $0["name"] as? String == backrest.stanza }),
            let databases = stanza["db"] as? [[String: Any]]
        else { return nil }
        let current = databases.max { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }
        return (current?["system-id"] as? NSNumber).map { $0.stringValue } ?? (current?["system-id"] as? String)
    }

    /// Stops a running server (fast, else immediate) and removes a stale postmaster.pid left by a crash,
    /// which pgbackrest restore would take for a running server.
    func ensureStopped(_ instance: Instance) async throws {
        let paths = InstancePaths(instance)
        if Postmaster.livePID(in: paths.dataDirectory) != nil {
            do { try await stop(instance, mode: .fast) } catch { try await stop(instance, mode: .immediate) }
        }
        if Postmaster.recordedPID(in: paths.dataDirectory) != nil && Postmaster.livePID(in: paths.dataDirectory) == nil {
            try Files.removeFile(paths.postmasterPID, owner: osUser)
        }
    }
}
