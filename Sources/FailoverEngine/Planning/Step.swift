/// What a step does. Each kind has a check (is the postcondition already true?), an act and a verify.
public enum StepKind: String, Codable, Sendable, CaseIterable {
    /// Switchover gate: the target streams from the primary within policy, same system and timeline.
    case gateSwitchover = "gate-switchover"
    /// Failover gate: the target is the most advanced reachable standby.
    case gateFailover = "gate-failover"
    /// Restore the data directory from the repository as a standby (`delta` for an existing one).
    case restore
    /// Write failoverd's standby settings: archive-only, or streaming from `peer`.
    case configureRecovery = "configure-recovery"
    /// Start the server.
    case start
    /// Wait until the WAL receiver streams from `peer`.
    case awaitStreaming = "await-streaming"
    /// Wait until the instance is in archive recovery with no WAL receiver.
    case awaitArchiveRecovery = "await-archive-recovery"
    /// Wait until the instance lags `peer` by at most policy.maxLagBytes.
    case awaitCatchup = "await-catchup"
    /// CHECKPOINT, so that the shutdown checkpoint has little to write.
    case checkpoint
    /// Stop the server cleanly (fast).
    case stop
    /// Read the stopped old primary's shutdown checkpoint: the demotion token.
    case readShutdownCheckpoint = "read-shutdown-checkpoint"
    /// Wait until the target has replayed `peer`'s shutdown checkpoint, same system and timeline.
    case awaitReplay = "await-replay"
    /// Promote, after proving no other instance accepts writes.
    case promote
    /// Switch WAL and wait until the segment is archived.
    case switchWAL = "switch-wal"
    /// Fence a former primary: record its last LSN, stop it, mark it fenced.
    case fence
    /// pg_rewind from `peer`.
    case rewind
    /// Record the sites' new roles in the journal.
    case recordRoles = "record-roles"

    /// True when the act changes a server (its files, its process, its role or its WAL); such a step
    /// re-checks the run lock and its fencing epoch right before acting, and a refusal after one of them
    /// acted is not "nothing was changed".
    public var changesServer: Bool {
        switch self {
        case .restore, .configureRecovery, .start, .checkpoint, .stop, .promote, .switchWAL, .fence, .rewind: true
        case .gateSwitchover, .gateFailover, .awaitStreaming, .awaitArchiveRecovery, .awaitCatchup, .readShutdownCheckpoint,
            .awaitReplay, .recordRoles:
            false
        }
    }
}

/// One idempotent unit of a run, as planned and as journaled.
public struct Step: Codable, Sendable, Equatable {
    /// The step's number in the run, from 1.
    public var number: Int
    /// The 1-based number of the transition it belongs to.
    public var transition: Int
    /// The transition's action.
    public var action: Action
    /// What the step does.
    public var kind: StepKind
    /// The site it touches.
    public var site: String
    /// The instance it touches; nil for site-level steps.
    public var instance: String?
    /// The other instance it involves: upstream, rewind source, old primary or target.
    public var peer: String?
    /// For `restore`: restore over an existing data directory with --delta.
    public var delta: Bool?
    /// For `record-roles`: the roles the transition leaves.
    public var roles: [String: Role]?
    /// Skip (satisfied) when the instance already streams from this instance on its timeline.
    public var unlessFollowing: String?
    /// Changes or destroys data or availability (promote, fence, rewind, restore, stop).
    public var destructive: Bool
    /// A one-line description for people.
    public var summary: String

    /// Creates a step; the planner numbers it.
    public init(
        transition: Int, action: Action, kind: StepKind, site: String, instance: String? = nil, peer: String? = nil,
        delta: Bool? = nil, roles: [String: Role]? = nil, unlessFollowing: String? = nil, summary: String
    ) {
        self.number = 0
        self.transition = transition
        self.action = action
        self.kind = kind
        self.site = site
        self.instance = instance
        self.peer = peer
        self.delta = delta
        self.roles = roles
        self.unlessFollowing = unlessFollowing
        self.destructive = [.restore, .stop, .promote, .fence, .rewind].contains(kind)
        self.summary = summary
    }
}
