/// What a step does, in words that name it: the journal stores this name as the step's `kind`.
public enum StepKind: String, Codable, Sendable, CaseIterable {
    /// Switchover gate: the target streams from the primary within policy, same system and timeline.
    case gateSwitchover = "gate-switchover"
    /// Failover gate: the target is the most advanced reachable standby.
    case gateFailover = "gate-failover"
    /// Restore the data directory from the repository as a standby (`delta` for an existing one).
    case restore
    /// Write failoverd's standby settings: archive-only, or streaming from an upstream.
    case configureRecovery = "configure-recovery"
    /// Start the server.
    case start
    /// Wait until the WAL receiver streams from the upstream.
    case awaitStreaming = "await-streaming"
    /// Wait until the instance is in archive recovery with no WAL receiver.
    case awaitArchiveRecovery = "await-archive-recovery"
    /// Wait until the instance lags its upstream by at most policy.maxLagBytes.
    case awaitCatchup = "await-catchup"
    /// CHECKPOINT, so that the shutdown checkpoint has little to write.
    case checkpoint
    /// Stop the server cleanly (fast).
    case stop
    /// Read the stopped old primary's shutdown checkpoint: the demotion token.
    case readShutdownCheckpoint = "read-shutdown-checkpoint"
    /// Wait until the target has replayed the old primary's shutdown checkpoint, same system and timeline.
    case awaitReplay = "await-replay"
    /// Promote, after proving no other instance accepts writes.
    case promote
    /// Switch WAL and wait until the segment is archived.
    case switchWAL = "switch-wal"
    /// Fence a former primary: record its last LSN, stop it, mark it fenced.
    case fence
    /// pg_rewind from a source.
    case rewind
    /// Record the sites' new roles in the journal.
    case recordRoles = "record-roles"
    /// Site level: demote a managed site's primary to a standby of another site; returns the demotion token.
    case demote
    /// Site level: promote a managed site, proving the demotion token of this transition.
    case promoteSite = "promote-site"
    /// Site level: fences a managed site through its driver (Patroni: a standby cluster on the repository).
    case fenceSite = "fence-site"
    /// Site level: makes a managed site follow another site's leader, or the repository alone.
    case followSite = "follow-site"
    /// Site level: repairs a diverged managed site from a source site (rewind or rebuild) and follows it.
    case rejoinSite = "rejoin-site"
    /// Copy what a stopped former primary wrote past the fork (WAL, pg_xact, names, row images) into the
    /// state directory, before a rewind, rebuild or restore erases it.
    case captureDivergence = "capture-divergence"
    /// Recreate failoverd's logical slots on the new primary and drop them elsewhere (policy.captureLostRows).
    case lostSlot = "lost-slot"

    /// True when the act changes a server (its files, its process, its role or its WAL); such a step
    /// re-checks the run lock and its fencing epoch right before acting, and a refusal after one of them
    /// acted is not "nothing was changed".
    public var changesServer: Bool {
        switch self {
        case .restore, .configureRecovery, .start, .checkpoint, .stop, .promote, .switchWAL, .fence, .rewind, .demote, .promoteSite,
            .fenceSite, .followSite, .rejoinSite, .lostSlot:
            true
        case .gateSwitchover, .gateFailover, .awaitStreaming, .awaitArchiveRecovery, .awaitCatchup, .readShutdownCheckpoint,
            .awaitReplay, .recordRoles, .captureDivergence:
            false
        }
    }

    /// Changes or destroys data or availability (promote, fence, rewind, restore, stop).
    public var isDestructive: Bool {
        switch self {
        case .restore, .stop, .promote, .fence, .rewind, .demote, .promoteSite, .fenceSite, .rejoinSite: true
        default: false
        }
    }
}

/// A step's kind with its operands: the instances it touches are part of the case, so a step that needs
/// an instance cannot be built without one.
public enum StepOperation: Sendable, Equatable {
    /// Switchover gate of `target` against the live `primary`.
    case gateSwitchover(target: String, primary: String)
    /// Failover gate of `target`.
    case gateFailover(target: String)
    /// Restore `instance` from the repository; `delta` over an existing data directory.
    case restore(instance: String, delta: Bool)
    /// Standby settings of `instance`: streaming from `upstream`, or archive-only when nil.
    case configureRecovery(instance: String, upstream: String?)
    /// Start `instance`.
    case start(instance: String)
    /// Wait until `instance` streams from `upstream`.
    case awaitStreaming(instance: String, upstream: String)
    /// Wait until `instance` replays from the repository with no WAL receiver.
    case awaitArchiveRecovery(instance: String)
    /// Wait until `instance` lags `upstream` by at most policy.maxLagBytes.
    case awaitCatchup(instance: String, upstream: String)
    /// CHECKPOINT on `instance`.
    case checkpoint(instance: String)
    /// Stop `instance` cleanly.
    case stop(instance: String)
    /// Read `oldPrimary`'s shutdown checkpoint (the demotion token).
    case readShutdownCheckpoint(oldPrimary: String)
    /// Wait until `target` has replayed `oldPrimary`'s shutdown checkpoint.
    case awaitReplay(target: String, oldPrimary: String)
    /// Promote `target`.
    case promote(target: String)
    /// Switch WAL on `instance` and wait until the segment is archived.
    case switchWAL(instance: String)
    /// Fence `instance`.
    case fence(instance: String)
    /// pg_rewind `instance` from `source`.
    case rewind(instance: String, source: String)
    /// Record the roles the transition leaves.
    case recordRoles([String: Role])
    /// Site level: demote `site` to a standby of `upstream` (a site).
    case demote(site: String, upstream: String)
    /// Site level: promote `site`, proving the transition's demotion token.
    case promoteSite(site: String)
    /// Site level: fence the managed site.
    case fenceSite(site: String)
    /// Site level: the managed site follows `upstream`'s leader, or the repository alone when nil.
    case followSite(site: String, upstream: String?)
    /// Site level: repair the managed site from `source` by `method`, then follow it.
    case rejoinSite(site: String, source: String, method: RejoinMethod)
    /// Capture what the former primary `instance` wrote past the fork with `source` (the primary then).
    case captureDivergence(instance: String, source: String?)
    /// Recreate failoverd's logical slots on `primary`.
    case lostSlot(primary: String)

    /// The kind's name.
    public var kind: StepKind {
        switch self {
        case .gateSwitchover: .gateSwitchover
        case .gateFailover: .gateFailover
        case .restore: .restore
        case .configureRecovery: .configureRecovery
        case .start: .start
        case .awaitStreaming: .awaitStreaming
        case .awaitArchiveRecovery: .awaitArchiveRecovery
        case .awaitCatchup: .awaitCatchup
        case .checkpoint: .checkpoint
        case .stop: .stop
        case .readShutdownCheckpoint: .readShutdownCheckpoint
        case .awaitReplay: .awaitReplay
        case .promote: .promote
        case .switchWAL: .switchWAL
        case .fence: .fence
        case .rewind: .rewind
        case .recordRoles: .recordRoles
        case .demote: .demote
        case .promoteSite: .promoteSite
        case .fenceSite: .fenceSite
        case .followSite: .followSite
        case .rejoinSite: .rejoinSite
        case .captureDivergence: .captureDivergence
        case .lostSlot: .lostSlot
        }
    }

    /// The instance the step touches; nil for record-roles.
    public var instance: String? {
        switch self {
        case .gateSwitchover(let i, _), .gateFailover(let i), .restore(let i, _), .configureRecovery(let i, _), .start(let i),
            .awaitStreaming(let i, _), .awaitArchiveRecovery(let i), .awaitCatchup(let i, _), .checkpoint(let i), .stop(let i),
            .readShutdownCheckpoint(let i), .awaitReplay(let i, _), .promote(let i), .switchWAL(let i), .fence(let i), .rewind(let i, _),
            .captureDivergence(let i, _), .lostSlot(let i):
            i
        case .recordRoles, .demote, .promoteSite, .fenceSite, .followSite, .rejoinSite: nil
        }
    }

    /// The other instance it involves: upstream, rewind source, old primary or primary.
    public var peer: String? {
        switch self {
        case .gateSwitchover(_, let p), .awaitStreaming(_, let p), .awaitCatchup(_, let p), .awaitReplay(_, let p), .rewind(_, let p): p
        case .configureRecovery(_, let p), .captureDivergence(_, let p): p
        default: nil
        }
    }

    /// Builds the operation from the journal's flat fields; nil when an operand the kind needs is missing.
    init?(
        kind: StepKind, site: String, instance: String?, peer: String?, delta: Bool?, roles: [String: Role]?, upstreamSite: String?,
        method: RejoinMethod? = nil
    ) {
        switch kind {
        case .fenceSite:
            self = .fenceSite(site: site)
            return
        case .followSite:
            self = .followSite(site: site, upstream: upstreamSite)
            return
        case .rejoinSite:
            guard let upstreamSite, let method else { return nil }
            self = .rejoinSite(site: site, source: upstreamSite, method: method)
            return
        case .recordRoles:
            self = .recordRoles(roles ?? [:])
            return
        case .demote:
            guard let upstreamSite else { return nil }
            self = .demote(site: site, upstream: upstreamSite)
            return
        case .promoteSite:
            self = .promoteSite(site: site)
            return
        case .configureRecovery:
            guard let instance else { return nil }
            self = .configureRecovery(instance: instance, upstream: peer)
            return
        case .captureDivergence:
            guard let instance else { return nil }
            self = .captureDivergence(instance: instance, source: peer)
            return
        default: break
        }
        guard let i = instance else { return nil }
        switch kind {
        case .gateFailover: self = .gateFailover(target: i)
        case .restore: self = .restore(instance: i, delta: delta ?? false)
        case .start: self = .start(instance: i)
        case .awaitArchiveRecovery: self = .awaitArchiveRecovery(instance: i)
        case .checkpoint: self = .checkpoint(instance: i)
        case .stop: self = .stop(instance: i)
        case .readShutdownCheckpoint: self = .readShutdownCheckpoint(oldPrimary: i)
        case .promote: self = .promote(target: i)
        case .switchWAL: self = .switchWAL(instance: i)
        case .fence: self = .fence(instance: i)
        case .lostSlot: self = .lostSlot(primary: i)
        case .recordRoles, .configureRecovery, .demote, .promoteSite, .fenceSite, .followSite, .rejoinSite, .captureDivergence: return nil
        case .gateSwitchover, .awaitStreaming, .awaitCatchup, .awaitReplay, .rewind:
            guard let p = peer else { return nil }
            switch kind {
            case .gateSwitchover: self = .gateSwitchover(target: i, primary: p)
            case .awaitStreaming: self = .awaitStreaming(instance: i, upstream: p)
            case .awaitCatchup: self = .awaitCatchup(instance: i, upstream: p)
            case .awaitReplay: self = .awaitReplay(target: i, oldPrimary: p)
            default: self = .rewind(instance: i, source: p)
            }
        }
    }
}

/// One idempotent unit of a run, as planned and as journaled.
///
/// The journal stores a step as flat JSON (`kind`, `instance`, `peer`, `delta`, `roles`, …), the form every
/// journal since v1 holds; decoding checks that the kind's operands are there.
public struct Step: Sendable, Equatable {
    /// The step's number in the run, from 1.
    public var number: Int
    /// The 1-based number of the transition it belongs to.
    public var transition: Int
    /// The transition's action.
    public var action: Action
    /// The site it touches.
    public var site: String
    /// What it does, with its operands.
    public var operation: StepOperation
    /// Skip (satisfied) when the instance already streams from this instance on its timeline.
    public var unlessFollowing: String?
    /// A one-line description for people.
    public var summary: String

    /// Creates a step; the planner numbers it.
    public init(transition: Int, action: Action, site: String, _ operation: StepOperation, unlessFollowing: String? = nil, summary: String)
    {
        self.number = 0
        self.transition = transition
        self.action = action
        self.site = site
        self.operation = operation
        self.unlessFollowing = unlessFollowing
        self.summary = summary
    }

    /// What the step does.
    public var kind: StepKind { operation.kind }
    /// The instance it touches; nil for site-level steps.
    public var instance: String? { operation.instance }
    /// The other instance it involves: upstream, rewind source, old primary or primary.
    public var peer: String? { operation.peer }
    /// For `restore`: restore over an existing data directory with --delta.
    public var delta: Bool? {
        if case .restore(_, let d) = operation { return d }
        return nil
    }
    /// For `record-roles`: the roles the transition leaves.
    public var roles: [String: Role]? {
        if case .recordRoles(let r) = operation { return r }
        return nil
    }
    /// Changes or destroys data or availability (promote, fence, rewind, restore, stop).
    public var destructive: Bool { kind.isDestructive }
}

extension Step: Codable {
    enum CodingKeys: String, CodingKey {
        case number, transition, action, kind, site, instance, peer, delta, roles, upstreamSite, method, unlessFollowing, destructive,
            summary
    }

    /// Decodes the journal's flat form; throws when the kind's operands are missing.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        number = try c.decode(Int.self, forKey: .number)
        transition = try c.decode(Int.self, forKey: .transition)
        action = try c.decode(Action.self, forKey: .action)
        site = try c.decode(String.self, forKey: .site)
        summary = try c.decode(String.self, forKey: .summary)
        unlessFollowing = try c.decodeIfPresent(String.self, forKey: .unlessFollowing)
        let kind = try c.decode(StepKind.self, forKey: .kind)
        guard
            let op = StepOperation(
                kind: kind, site: site, instance: try c.decodeIfPresent(String.self, forKey: .instance),
                peer: try c.decodeIfPresent(String.self, forKey: .peer), delta: try c.decodeIfPresent(Bool.self, forKey: .delta),
                roles: try c.decodeIfPresent([String: Role].self, forKey: .roles),
                upstreamSite: try c.decodeIfPresent(String.self, forKey: .upstreamSite),
                method: try c.decodeIfPresent(RejoinMethod.self, forKey: .method))
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: c, debugDescription: "step \(number) (\(kind.rawValue)) lacks the instance or peer its kind needs")
        }
        operation = op
    }

    /// Encodes the flat form every journal holds.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(number, forKey: .number)
        try c.encode(transition, forKey: .transition)
        try c.encode(action, forKey: .action)
        try c.encode(kind, forKey: .kind)
        try c.encode(site, forKey: .site)
        try c.encodeIfPresent(instance, forKey: .instance)
        try c.encodeIfPresent(peer, forKey: .peer)
        try c.encodeIfPresent(delta, forKey: .delta)
        try c.encodeIfPresent(roles, forKey: .roles)
        switch operation {
        case .demote(_, let upstream): try c.encode(upstream, forKey: .upstreamSite)
        case .followSite(_, let upstream): try c.encodeIfPresent(upstream, forKey: .upstreamSite)
        case .rejoinSite(_, let source, let method):
            try c.encode(source, forKey: .upstreamSite)
            try c.encode(method, forKey: .method)
        default: break
        }
        try c.encodeIfPresent(unlessFollowing, forKey: .unlessFollowing)
        try c.encode(destructive, forKey: .destructive)
        try c.encode(summary, forKey: .summary)
    }
}

/// Where a step stands in the journal; stored as its raw text.
public enum StepStatus: String, Codable, Sendable, CaseIterable {
    /// Planned, not yet checked.
    case pending
    /// Its act started (committed before the act): in doubt until done.
    case started
    /// Acted and verified.
    case done
    /// Its postcondition already held; nothing was done.
    case satisfied
    /// It failed or was refused.
    case failed

    /// Done or satisfied: a resume does not run it again.
    public var isFinished: Bool { self == .done || self == .satisfied }
}
