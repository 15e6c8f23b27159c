import Foundation

extension LocalPostgresDriver {
    /// The end of the valid WAL in a stopped instance's pg_wal, found by reading it with pg_waldump from the
    /// last checkpoint's REDO location; nil when it cannot be read.
    ///
    /// A primary that died has no SQL left to ask, and pg_control only knows its last checkpoint: reading
    /// the WAL itself tells how far it really got, which is what a failover may lose.
    public func endOfWAL(_ instance: Instance) async throws -> LSN? {
        guard let control = try await controlData(of: instance) else { return nil }
        let wal = InstancePaths(instance).dataDirectory + "/pg_wal"
        let result = try await runner.run(
            bin("pg_waldump"), ["--path", wal, "--timeline", String(control.timeline), "--start", control.redoLSN.description, "--quiet"])
        // pg_waldump stops at the first invalid record: "error in WAL record at X/Y: invalid record length at A/B…".
        // The highest location it names is where valid WAL ends.
        let text = result.stderr + result.stdout
        let pattern = try Regex("[0-9A-F]+/[0-9A-F]+")
        let found = text.matches(of: pattern).compactMap { LSN(String(text[$0.range])) }
        return found.max() ?? (result.succeeded ? nil : control.checkpointLSN)
    }
}
