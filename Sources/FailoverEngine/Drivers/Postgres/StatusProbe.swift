import Foundation

/// The one query behind ``PostgresInstanceDriver/status(of:)``: recovery state, identity, timeline, WAL
/// positions, the WAL receiver and the archiver, read in a single round trip.
enum StatusProbe {
    /// Timeline on a primary: from pg_walfile_name(pg_current_wal_lsn()), because right after a promotion
    /// pg_control_checkpoint() still shows the old timeline until the next checkpoint.
    /// On a standby: the WAL receiver's received_tli, else the highest timeline pg_control knows of
    /// (the last restartpoint's, or the minimum recovery end's).
    static let sql = """
        SELECT pg_is_in_recovery(),
               (SELECT system_identifier::text FROM pg_control_system()),
               CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
               CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
               pg_last_wal_receive_lsn()::text,
               pg_last_wal_replay_lsn()::text,
               greatest((SELECT timeline_id FROM pg_control_checkpoint()),
                        (SELECT min_recovery_end_timeline FROM pg_control_recovery()))::text,
               (SELECT failed_count::text FROM pg_stat_archiver),
               (SELECT last_archived_wal FROM pg_stat_archiver),
               r.status, r.sender_host, r.sender_port::text, r.received_tli::text,
               CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::text END,
               (SELECT extract(epoch FROM now() - last_archived_time)::text FROM pg_stat_archiver)
          FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
        """

    /// Runs the probe on an open connection.
    static func run(_ connection: PGConnection) throws -> InstanceStatus {
        guard let row = try connection.query(sql, name: "status probe").first, row.count == 15 else {
            throw PGError(
                sqlState: nil, message: "the status probe returned no row", endpoint: connection.info.endpoint, operation: "status probe")
        }
        let inRecovery = row[0] == "t"
        var receiver: WalReceiver?
        if let state = row[9] {
            receiver = WalReceiver(
                status: state, upstreamHost: row[10], upstreamPort: row[11].flatMap { Int($0) },
                receivedTimeline: row[12].flatMap { Int($0) })
        }
        let timeline: Int
        if !inRecovery, let segment = row[2], let tli = WALSegmentName(segment)?.timeline {
            timeline = tli
        } else {
            timeline = max(receiver?.receivedTimeline ?? 0, row[6].flatMap { Int($0) } ?? 0)
        }
        var status = InstanceStatus(
            running: true, reachable: true, inRecovery: inRecovery, systemIdentifier: row[1] ?? "", timeline: timeline,
            currentLSN: row[3].flatMap(LSN.init), receiveLSN: row[4].flatMap(LSN.init), replayLSN: row[5].flatMap(LSN.init),
            walReceiver: receiver, archiverFailedCount: row[7].flatMap { Int($0) } ?? 0, lastArchivedWAL: row[8])
        status.lastReplayAgeSeconds = row[13].flatMap(Double.init)
        status.lastArchivedAgeSeconds = row[14].flatMap(Double.init)
        return status
    }
}
