import Foundation

/// What a probe of one instance saw: whether it runs, its recovery state, identity and WAL positions.
public struct InstanceStatus: Sendable, Codable, Equatable {
    /// A postmaster is running for the data directory.
    public var running: Bool
    /// The server answered SQL.
    public var reachable: Bool
    /// pg_is_in_recovery().
    public var inRecovery: Bool
    /// The database system identifier (pg_control_system()).
    public var systemIdentifier: String
    /// The timeline the server is on now (for a primary read from pg_walfile_name(pg_current_wal_lsn())).
    public var timeline: Int
    /// pg_current_wal_lsn() on a primary.
    public var currentLSN: LSN?
    /// pg_last_wal_receive_lsn() on a standby.
    public var receiveLSN: LSN?
    /// pg_last_wal_replay_lsn() on a standby.
    public var replayLSN: LSN?
    /// The WAL receiver, when one runs.
    public var walReceiver: WalReceiver?
    /// pg_stat_archiver.failed_count.
    public var archiverFailedCount: Int
    /// pg_stat_archiver.last_archived_wal.
    public var lastArchivedWAL: String?
    /// Seconds since the last transaction replayed on a standby committed on its primary
    /// (now() - pg_last_xact_replay_timestamp()); nil on a primary or before any replay.
    public var lastReplayAgeSeconds: Double?
    /// Seconds since pg_stat_archiver's last archived segment; nil when nothing was archived.
    public var lastArchivedAgeSeconds: Double?
    /// Why a running server could not be read (connect timeout, too many clients, still starting, hung);
    /// nil when it answered or does not run. Its recovery state is then unknown, never assumed.
    public var unreachableReason: String?

    /// A status for an instance that is not running.
    public static let stopped = InstanceStatus(
        running: false, reachable: false, inRecovery: false, systemIdentifier: "", timeline: 0, currentLSN: nil,
        receiveLSN: nil, replayLSN: nil, walReceiver: nil, archiverFailedCount: 0, lastArchivedWAL: nil)

    /// Creates a status.
    public init(
        running: Bool, reachable: Bool, inRecovery: Bool, systemIdentifier: String, timeline: Int, currentLSN: LSN?,
        receiveLSN: LSN?, replayLSN: LSN?, walReceiver: WalReceiver?, archiverFailedCount: Int, lastArchivedWAL: String?
    ) {
        self.running = running
        self.reachable = reachable
        self.inRecovery = inRecovery
        self.systemIdentifier = systemIdentifier
        self.timeline = timeline
        self.currentLSN = currentLSN
        self.receiveLSN = receiveLSN
        self.replayLSN = replayLSN
        self.walReceiver = walReceiver
        self.archiverFailedCount = archiverFailedCount
        self.lastArchivedWAL = lastArchivedWAL
    }

    /// Running, answering and not in recovery: the instance accepts writes.
    public var isWritablePrimary: Bool { running && reachable && !inRecovery }

    /// Proven unable to accept writes: no live postmaster, or answering and in recovery. A server that runs
    /// but does not answer is neither this nor ``isWritablePrimary``: it is unknown, and unknown is unsafe.
    public var isProvenNotWritable: Bool { !running || (reachable && inRecovery) }

    /// What was seen, in words: "stopped", "a standby (in recovery)", "a primary accepting writes", or
    /// "running but not answering SQL (reason)".
    public var seen: String {
        if !running { return "stopped" }
        if !reachable { return "running but not answering SQL (\(unreachableReason ?? "no answer"))" }
        return inRecovery ? "a standby (in recovery)" : "a primary accepting writes"
    }

    /// The furthest WAL position this instance has: current on a primary, replay (or receive) on a standby.
    public var position: LSN? { inRecovery ? (replayLSN ?? receiveLSN) : currentLSN }

    /// The furthest WAL this instance holds on disk: on a standby the later of what it received (flushed)
    /// and what it replayed, since a promotion replays everything received first.
    public var heldLSN: LSN? {
        guard inRecovery else { return currentLSN }
        switch (receiveLSN, replayLSN) {
        case (let a?, let b?): return max(a, b)
        case (let a?, nil): return a
        case (nil, let b?): return b
        case (nil, nil): return nil
        }
    }
}

/// The WAL receiver of a standby (pg_stat_wal_receiver).
public struct WalReceiver: Sendable, Codable, Equatable {
    /// `streaming`, `starting`, `waiting`, `stopping`…
    public var status: String
    /// The upstream host from the receiver's conninfo.
    public var upstreamHost: String?
    /// The upstream port from the receiver's conninfo.
    public var upstreamPort: Int?
    /// The timeline of the last WAL received.
    public var receivedTimeline: Int?

    /// Creates a receiver description.
    public init(status: String, upstreamHost: String?, upstreamPort: Int?, receivedTimeline: Int?) {
        self.status = status
        self.upstreamHost = upstreamHost
        self.upstreamPort = upstreamPort
        self.receivedTimeline = receivedTimeline
    }

    /// True when streaming from `instance`.
    public func isStreaming(from instance: Instance) -> Bool {
        status == "streaming" && upstreamPort == instance.port && (upstreamHost == nil || upstreamHost == instance.host)
    }
}

/// What pg_controldata says of a data directory.
public struct ControlData: Sendable, Codable, Equatable {
    /// "Database cluster state": `shut down`, `in production`, `shut down in recovery`, `in archive recovery`…
    public var state: String
    /// "Database system identifier".
    public var systemIdentifier: String
    /// "Latest checkpoint's TimeLineID".
    public var timeline: Int
    /// "Latest checkpoint location".
    public var checkpointLSN: LSN
    /// "Latest checkpoint's REDO location".
    public var redoLSN: LSN

    /// Creates control data.
    public init(state: String, systemIdentifier: String, timeline: Int, checkpointLSN: LSN, redoLSN: LSN) {
        self.state = state
        self.systemIdentifier = systemIdentifier
        self.timeline = timeline
        self.checkpointLSN = checkpointLSN
        self.redoLSN = redoLSN
    }

    /// True after a clean shutdown of a primary.
    public var isCleanPrimaryShutdown: Bool { state == "shut down" }
}

/// The standby settings failoverd writes in a file it owns: archive-only, or streaming from an upstream.
public struct RecoverySettings: Sendable, Codable, Equatable {
    /// The instance to stream from; nil for an archive standby (restore_command only).
    public var upstream: Instance?
    /// True when something outside failoverd (ALTER SYSTEM, a hand edit) overrides failoverd's settings,
    /// so the server does not do what failoverd's file says.
    public var overridden: Bool

    /// Creates settings.
    public init(upstream: Instance?, overridden: Bool = false) {
        self.upstream = upstream
        self.overridden = overridden
    }

    /// Archive-only settings.
    public static let archiveOnly = RecoverySettings(upstream: nil)
}

/// How to stop a server.
public enum StopMode: String, Sendable, Codable {
    /// pg_ctl stop -m fast: a clean shutdown with a shutdown checkpoint.
    case fast
    /// pg_ctl stop -m immediate: no checkpoint; crash recovery at next start.
    case immediate
}

/// The operations failoverd needs from a site's servers. One job: touch PostgreSQL; every decision
/// (gates, order, idempotence) lives in the steps that call it, so the simulated and local drivers
/// run the same logic.
public protocol InstanceDriver: Sendable {
    /// Probes the instance; returns ``InstanceStatus/stopped`` when no server runs.
    func status(of instance: Instance) async throws -> InstanceStatus
    /// Reads pg_controldata; nil when the data directory holds no cluster.
    func controlData(of instance: Instance) async throws -> ControlData?
    /// The standby settings in failoverd's file, or nil when the instance is not set up as a standby.
    func recoverySettings(of instance: Instance) async throws -> RecoverySettings?
    /// Writes the standby settings and standby.signal; reloads a running server.
    func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws
    /// Starts the server and waits until it accepts connections.
    func start(_ instance: Instance) async throws
    /// Stops the server; nothing to do when it is not running.
    func stop(_ instance: Instance, mode: StopMode) async throws
    /// Promotes a standby and waits until it leaves recovery.
    func promote(_ instance: Instance) async throws
    /// Runs CHECKPOINT.
    func checkpoint(_ instance: Instance) async throws
    /// Switches to a new WAL segment; returns the name of the segment that was closed.
    func switchWAL(_ instance: Instance) async throws -> String
    /// True when `segment` (or a later one) is in the repository, per pg_stat_archiver.
    func isArchived(_ instance: Instance, segment: String) async throws -> Bool
    /// Restores the data directory from the repository as a standby (`--delta` when asked).
    func restore(_ instance: Instance, delta: Bool) async throws
    /// Runs pg_rewind against `source`; returns a one-line summary of what it did.
    func rewind(_ instance: Instance, source: Instance) async throws -> String
    /// Commits a write on the instance, proving it accepts writes; returns the commit's LSN.
    func writeProbe(_ instance: Instance) async throws -> LSN
    /// True when the data directory exists and holds a cluster.
    func hasData(_ instance: Instance) async throws -> Bool
    /// Marks the instance fenced where it lives: from then on ``start(_:)`` refuses to start it without
    /// standby settings, whoever asks. Promotion clears the mark.
    func setFenceMarker(_ instance: Instance, reason: String) async throws
    /// Where the valid WAL of a stopped instance ends (read from its pg_wal), or nil when unknown.
    func endOfWAL(_ instance: Instance) async throws -> LSN?
    /// The system identifier of the cluster the repository's stanza backs up (its current database), or
    /// nil when the stanza has none yet.
    func repositorySystemIdentifier() async throws -> String?

    // MARK: Divergence capture (Divergence/): what a former primary committed that the new one never got.

    /// The regular files below `directory` of the instance's data directory (`pg_wal`, `pg_replslot`), two
    /// levels deep, as its OS user sees them; nil when the data directory holds no cluster.
    func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]?
    /// Copies files of the instance's data directory (paths relative to it) into `localDirectory` on this
    /// host, read as the instance's OS user; a file that does not exist is left out of the result.
    func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile]
    /// Copies a file of the repository's WAL archive (a segment or a history file) into `localDirectory`
    /// on this host; nil when the archive lacks it. pgBackRest reads the cluster's version and identifier
    /// from the pg_control of `reader`'s data directory (an instance of the plan's cluster with its disk;
    /// it is only read), on its host.
    func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile?
    /// Names relations in the catalog of a running instance.
    func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer
    /// Starts an isolated, read-only copy of a stopped instance's data directory on its host (another port,
    /// no archiving, no replication, reachable by no client), asks it `request`, and removes it.
    func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer
    /// failoverd's logical slots on a running instance (`policy.captureLostRows`).
    func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState
}
