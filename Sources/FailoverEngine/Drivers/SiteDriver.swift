/// One member of a site as its site-level driver sees it.
public struct SiteMember: Sendable, Equatable {
    /// The instance.
    public var instance: Instance
    /// What a probe of it saw.
    public var status: InstanceStatus

    /// Creates a member.
    public init(instance: Instance, status: InstanceStatus) {
        self.instance = instance
        self.status = status
    }
}

/// A site's members, their state, timeline and WAL positions, as its driver reports them.
public struct SiteStatus: Sendable, Equatable {
    /// The site's name.
    public var site: String
    /// Every member, the leader first.
    public var members: [SiteMember]

    /// Creates a status.
    public init(site: String, members: [SiteMember]) {
        self.site = site
        self.members = members
    }

    /// The members that accept writes.
    public var writableMembers: [SiteMember] { members.filter { $0.status.isWritablePrimary } }

    /// True when every member is proven unable to accept writes (stopped, or answering in recovery).
    public var isProvenNotWritable: Bool { members.allSatisfy { $0.status.isProvenNotWritable } }
}

/// The operations failoverd needs from a site, at the level of site roles. A managed site (Patroni's
/// `PATCH /config` with `standby_cluster`, an operator's `spec.standby`) implements this; drivers that own
/// the servers implement ``InstanceDriver`` instead and get this level from ``InstanceSite``.
///
/// The gates (split-brain check, demotion-token replay, failover gate) are not here: they run above both
/// levels, in the steps, and are shared by every driver.
public protocol SiteDriver: Sendable {
    /// The site's members with their role, timeline and WAL positions.
    func status(of site: Site) async throws -> SiteStatus
    /// Demotes the site's primary cleanly to a standby of `upstream`'s leader and returns the shutdown
    /// checkpoint it wrote: the demotion token.
    func demote(_ site: Site, toStandbyOf upstream: Site) async throws -> DemotionToken
    /// Promotes the site's leader; with a token, only once the leader has replayed past it on its timeline.
    func promote(_ site: Site, proving token: DemotionToken?) async throws -> Promotion
    /// Makes the site follow `upstream`'s leader (streaming), or the repository alone when nil.
    func follow(_ site: Site, upstream: Site?) async throws
    /// Fences the site: nothing of it accepts writes, or starts as a primary, until it is repaired. Throws
    /// ``UnseenMembers`` when members cannot be seen, so that an outside fence may vouch for them.
    func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence]
    /// Fences the site when an outside fence (the plan's hook, the operator's --assume-fenced) vouches that
    /// its unseen members cannot accept writes: the driver still does what it can (Patroni: `standby_cluster`
    /// written, so that the site comes back read-only) and records `fencedBy` in the evidence.
    func fence(_ site: Site, reason: String, vouchedBy outside: String) async throws -> [String: FenceEvidence]
    /// Repairs a diverged site from `source` and makes it follow `source`'s leader.
    func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws
    /// The demotion token the demoted site proves now, read again from its leader; nil when the driver has
    /// no way to read it again (the gates then rely on the site being proven unable to accept writes).
    func demotionTokenNow(of site: Site) async throws -> DemotionToken?
}

extension SiteDriver {
    /// No second reading: the gates rely on the site being proven unable to accept writes.
    public func demotionTokenNow(of site: Site) async throws -> DemotionToken? { nil }

    /// A driver with nothing more to do for a vouched fence fences as usual.
    public func fence(_ site: Site, reason: String, vouchedBy outside: String) async throws -> [String: FenceEvidence] {
        try await fence(site, reason: reason)
    }
}

/// A fence refused because members of the site cannot be seen: failoverd can neither make them read-only
/// through their driver nor prove them unable to accept writes. An outside fence may vouch for them.
public struct UnseenMembers: Error, CustomStringConvertible {
    /// The refusal, as a run prints it.
    public var message: String
    /// The members that cannot be seen, with what their probe saw.
    public var members: [SiteMember]

    /// Creates the refusal.
    public init(message: String, members: [SiteMember]) {
        self.message = message
        self.members = members
    }

    public var description: String { message }
}
