import Foundation

/// The site level of a managed site (Patroni) in a rehearsal, over the simulated world: the requests
/// ``PatroniSite`` makes, with the outcomes Patroni 4.1 gives them, so that `run --simulate` of a Patroni plan
/// runs, numbers and journals the steps a real run does, and `--crash-at N` means the same step in both.
/// The demotion is a fast shutdown whose checkpoint is the demotion token, read again from the standby
/// leader; the fence makes a standby cluster with no WAL source; a rejoin rewinds or restores the members
/// and points the site at the source. Rehearsal only: it never stands in for Patroni in a test of Patroni.
public struct SimulatedSite: SiteDriver {
    /// The simulated world the site's members live in.
    let world: SimulatedDriver
    /// Seconds a wait may take.
    public var timeout: Double
    /// Seconds between two probes of a wait.
    public var pollInterval: Double

    /// The site level over `world`.
    public init(world: SimulatedDriver, timeout: Double, pollInterval: Double = 0.001) {
        self.world = world
        self.timeout = timeout
        self.pollInterval = pollInterval
    }

    /// What is the same at the instance level: the members' status, the promotion proving the token, the
    /// repair of each member.
    var members: InstanceSite { InstanceSite(driver: world, timeout: timeout, pollInterval: pollInterval) }

    public func status(of site: Site) async throws -> SiteStatus { try await members.status(of: site) }

    /// Patroni's demotion of a primary: a fast shutdown (its checkpoint written, its WAL sent to the standbys
    /// streaming from it), then the leader starts again as the standby leader of `upstream`'s leader. A
    /// leader that already is that standby (a demotion retried after a crash) is not stopped again. The token
    /// is the checkpoint read from the running standby leader, as ``PatroniSite`` reads it.
    public func demote(_ site: Site, toStandbyOf upstream: Site) async throws -> DemotionToken {
        let leader = site.leader
        let before = try await world.status(of: leader)
        if before.isWritablePrimary {
            try await world.stop(leader, mode: .fast)
            try await world.configureRecovery(of: leader, RecoverySettings(upstream: upstream.leader))
            try await world.start(leader)
        } else if !(before.running && before.inRecovery) {
            throw FailoverError.refused(
                "demotion of site \(site.name) refused: its leader \(leader.name) is \(before.seen); it must be a primary (or the standby leader it became)."
            )
        }
        return try world.shutdownCheckpointToken(of: leader)
    }

    /// As Patroni's: once the leader has replayed past the token, the standby cluster becomes a primary one.
    public func promote(_ site: Site, proving token: DemotionToken?) async throws -> Promotion {
        try await members.promote(site, proving: token)
    }

    /// The leader streams from `upstream`'s leader (or replays from the repository), the other members
    /// cascade from it, and stopped members start. The settings are always written: a fenced member's (no
    /// WAL source) are not the repository's.
    public func follow(_ site: Site, upstream: Site?) async throws {
        for i in site.instances {
            try await world.configureRecovery(of: i, RecoverySettings(upstream: i == site.leader ? upstream?.leader : site.leader))
            if try await !world.status(of: i).running { try await world.start(i) }
        }
    }

    /// Patroni's fence: a standby cluster with no WAL source. A member that accepts writes stops fast and
    /// starts again as a standby; the leader replays nothing, the others follow it; a stopped member stays
    /// stopped with those settings, so that it comes back read-only.
    public func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence] {
        var out: [String: FenceEvidence] = [:]
        for i in site.instances {
            let s = try await world.status(of: i)
            if s.isWritablePrimary { try await world.stop(i, mode: .fast) }
            if i == site.leader {
                try world.configureWithoutWALSource(i)
            } else {
                try await world.configureRecovery(of: i, RecoverySettings(upstream: site.leader))
            }
            if s.running { try await world.start(i) }
            out[i.name] = FenceEvidence(
                lastKnownLSN: s.position, reachable: s.reachable, wasRunning: s.running,
                lastKnownFrom: s.inRecovery ? "pg_last_wal_replay_lsn()" : s.running ? "pg_current_wal_lsn()" : "stopped")
        }
        return out
    }

    /// Patroni's rejoin: each member stops and is rewound from `source`'s leader (use_pg_rewind) or
    /// delta-restored from the repository, then the site follows `source`.
    public func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws {
        try await members.rejoin(site, from: source, by: method)
    }

    /// The demoted leader's checkpoint, read again: still the token while the leader is a standby that has
    /// neither written, checkpointed nor been rewound since its demotion.
    public func demotionTokenNow(of site: Site) async throws -> DemotionToken? {
        try world.shutdownCheckpointToken(of: site.leader)
    }
}
