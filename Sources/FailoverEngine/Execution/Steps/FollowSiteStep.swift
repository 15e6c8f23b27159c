/// Site level: a managed site follows `upstream`'s leader (streaming, the repository as fallback), or the
/// repository alone.
struct FollowSiteStep: RunnableStep {
    let site: Site
    let upstream: Site?

    func check(_ run: StepRunner) async throws -> Bool {
        guard let upstream else { return try await run.isArchiveRecovering(site.leader) }
        return try await run.isFollowing(site.leader, upstream.leader)
    }

    func act(_ run: StepRunner) async throws -> RecoveryEvidence {
        try await run.ctx.siteDriver(for: site).follow(site, upstream: upstream)
        return RecoveryEvidence(upstream: upstream?.leader.name ?? "(repository only)")
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
