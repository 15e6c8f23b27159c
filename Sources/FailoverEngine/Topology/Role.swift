/// The role of a site, as recorded in the journal and declared in a plan.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    /// No data yet: the site is still to be bootstrapped from the repository.
    case none
    /// Accepts writes and archives WAL to the repository.
    case primary
    /// In recovery, replaying WAL fetched from the repository only.
    case archiveStandby = "archive-standby"
    /// In recovery, streaming WAL from its upstream, with the repository as fallback.
    case streamingStandby = "streaming-standby"
    /// A former primary that must not accept writes; it may have diverged.
    case fenced

    /// True for the two standby roles.
    public var isStandby: Bool { self == .archiveStandby || self == .streamingStandby }

    public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }
}
