import Foundation

/// The site level, written once over the PostgreSQL primitives of an ``InstanceDriver`` (the local driver,
/// the simulated one, and SSH next). The planner expands its transitions into instance steps, each
/// journaled; these operations are the same sequences for callers that act on a whole site at once.
public struct InstanceSite: SiteDriver {
    /// The driver of the site's servers.
    public let driver: any InstanceDriver
    /// Seconds a wait may take.
    public var timeout: Double
    /// Seconds between two probes of a wait.
    public var pollInterval: Double

    /// Creates the site level over `driver`.
    public init(driver: any InstanceDriver, timeout: Double = 60, pollInterval: Double = 0.05) {
        self.driver = driver
        self.timeout = timeout
        self.pollInterval = pollInterval
    }

    public func status(of site: Site) async throws -> SiteStatus {
        var members: [SiteMember] = []
        for i in site.instances { members.append(SiteMember(instance: i, status: try await driver.status(of: i))) }
        return SiteStatus(site: site.name, members: members)
    }

    /// CHECKPOINT, fast stop, pg_controldata: refuses unless the leader shut down cleanly; then writes its
    /// standby settings and starts it as a standby of `upstream`'s leader, as a managed site's demoted
    /// leader comes back (Patroni's standby leader). The token is read before that start.
    public func demote(_ site: Site, toStandbyOf upstream: Site) async throws -> DemotionToken {
        let leader = site.leader
        if try await driver.status(of: leader).isWritablePrimary { try await driver.checkpoint(leader) }
        try await driver.stop(leader, mode: .fast)
        guard let control = try await driver.controlData(of: leader), control.isCleanPrimaryShutdown else {
            throw FailoverError.refused(
                "demotion of site \(site.name) refused: \(leader.name) was not shut down cleanly, so there is no shutdown checkpoint to prove the target has every commit. Start \(leader.name) again if it should take writes."
            )
        }
        try await driver.configureRecovery(of: leader, RecoverySettings(upstream: upstream.leader))
        try await driver.start(leader)
        return DemotionToken(control)
    }

    /// With a token: waits until the leader has replayed past it, same system and timeline, and refuses
    /// otherwise. Then promotes and proves a write.
    public func promote(_ site: Site, proving token: DemotionToken?) async throws -> Promotion {
        let leader = site.leader
        let before = try await driver.status(of: leader)
        if let token {
            guard before.systemIdentifier == token.systemIdentifier else {
                throw FailoverError.refused(
                    "promotion of site \(site.name) refused: \(leader.name) has system identifier \(before.systemIdentifier), the demotion token \(token.text); rebuild \(leader.name)."
                )
            }
            let replayed = try await Wait.until(timeout: timeout, interval: pollInterval) { () async throws -> LSN? in
                let s = try await driver.status(of: leader)
                guard let r = s.replayLSN, r > token.checkpointLSN, (s.walReceiver?.receivedTimeline ?? s.timeline) == token.timeline else {
                    return nil
                }
                return r
            }
            guard replayed != nil else {
                throw FailoverError.refused(
                    "promotion of site \(site.name) refused: \(leader.name) has not replayed the demotion token \(token.text) within \(Int(timeout)) s; nothing was promoted."
                )
            }
        }
        try await driver.promote(leader)
        let written = try await driver.writeProbe(leader)
        let after = try await driver.status(of: leader)
        return Promotion(
            promotedAtLSN: after.replayLSN ?? before.replayLSN ?? before.receiveLSN ?? .zero,
            previousTimeline: before.walReceiver?.receivedTimeline ?? before.timeline, timeline: after.timeline, firstWriteLSN: written)
    }

    /// The leader streams from `upstream`'s leader (or replays from the repository), the other members
    /// cascade from the leader; stopped members are started as standbys.
    public func follow(_ site: Site, upstream: Site?) async throws {
        for i in site.instances {
            let settings = RecoverySettings(upstream: i == site.leader ? upstream?.leader : site.leader)
            if try await driver.recoverySettings(of: i) != settings { try await driver.configureRecovery(of: i, settings) }
            if try await !driver.status(of: i).running { try await driver.start(i) }
        }
    }

    /// Marks each member fenced where it lives, then stops it (fast, immediate if that fails).
    public func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence] {
        var out: [String: FenceEvidence] = [:]
        for i in site.instances {
            let s = try? await driver.status(of: i)
            try await driver.setFenceMarker(i, reason: reason)
            if s?.running ?? true {
                do { try await driver.stop(i, mode: .fast) } catch { try await driver.stop(i, mode: .immediate) }
            }
            let reachable = s?.reachable ?? false
            var last = s?.position
            if !reachable, let end = try? await driver.endOfWAL(i) { last = max(last ?? end, end) }
            out[i.name] = FenceEvidence(
                lastKnownLSN: last, reachable: reachable, wasRunning: s?.running ?? false,
                lastKnownFrom: reachable ? "pg_current_wal_lsn()" : "pg_waldump of its pg_wal")
        }
        return out
    }

    /// Stops each member, rewinds it from `source`'s leader (or delta-restores it), and makes the site
    /// follow `source`.
    public func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws {
        for i in site.instances {
            try await driver.stop(i, mode: .fast)
            switch method {
            case .rewind: _ = try await driver.rewind(i, source: source.leader)
            case .rebuild: try await driver.restore(i, delta: true)
            }
        }
        try await follow(site, upstream: source)
    }
}
