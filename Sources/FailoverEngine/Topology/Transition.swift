import Foundation

/// The v1 actions.
public enum Action: String, Codable, Sendable, CaseIterable {
    /// Creates a site that has no data yet (`none`) as an archive standby, restored from the repository.
    case bootstrapStandby = "bootstrap-standby"
    /// Makes an archive standby stream from its upstream: archive-standby → streaming-standby.
    case enableStreaming = "enable-streaming"
    /// Stops streaming, leaving the repository as the only WAL source: streaming-standby → archive-standby.
    case disableStreaming = "disable-streaming"
    /// Stops a primary accepting writes: primary → fenced.
    case fence
    /// Planned handover, no committed write lost: the primary → streaming-standby, `to` → primary.
    case switchover
    /// Unplanned promotion: the old primary → fenced, `to` → primary.
    case failover
    /// Repairs a fenced former primary by pg_rewind from `source`: fenced → streaming-standby.
    case rewind
    /// Restores a standby or fenced site by a delta restore from the repository: → archive-standby.
    case rebuild
    /// Repairs the old primary `to` by `method`, lets it catch up, then switches over to it.
    case failback
}

/// How a failback repairs the old primary.
public enum FailbackMethod: String, Codable, Sendable, CaseIterable {
    /// pg_rewind from the current primary.
    case rewind
    /// A delta restore from the repository.
    case rebuild
}

/// One transition of a plan; which fields apply depends on the action.
public struct Transition: Codable, Sendable, Equatable {
    /// What to do.
    public var action: Action
    /// The site acted on (bootstrap-standby, enable/disable-streaming, fence, rewind, rebuild).
    public var site: String?
    /// The site to stream from (enable-streaming).
    public var upstream: String?
    /// The site that becomes primary (switchover, failover, failback).
    public var to: String?
    /// The primary a rewound site is rewound from and then follows (rewind).
    public var source: String?
    /// How failback repairs the old primary.
    public var method: FailbackMethod?

    /// Creates a transition.
    public init(
        action: Action, site: String? = nil, upstream: String? = nil, to: String? = nil, source: String? = nil,
        method: FailbackMethod? = nil
    ) {
        self.action = action
        self.site = site
        self.upstream = upstream
        self.to = to
        self.source = source
        self.method = method
    }

    /// The site this transition is about: `site` or `to`.
    public var subject: String { site ?? to ?? "" }

    /// A short human description, e.g. `switchover to dr`.
    public var summary: String {
        switch action {
        case .bootstrapStandby: "bootstrap-standby \(subject)"
        case .enableStreaming: "enable-streaming \(subject) from \(upstream ?? "?")"
        case .disableStreaming: "disable-streaming \(subject)"
        case .fence: "fence \(subject)"
        case .switchover: "switchover to \(subject)"
        case .failover: "failover to \(subject)"
        case .rewind: "rewind \(subject) from \(source ?? "?")"
        case .rebuild: "rebuild \(subject)"
        case .failback: "failback to \(subject) by \(method?.rawValue ?? "?")"
        }
    }
}

/// How a diverged site rejoins: pg_rewind from the source, or a delta restore from the repository.
public enum RejoinMethod: String, Sendable, Codable {
    /// pg_rewind from the source's leader.
    case rewind
    /// A delta restore from the repository.
    case rebuild
}
