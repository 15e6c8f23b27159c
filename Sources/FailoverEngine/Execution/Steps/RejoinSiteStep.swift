/// Site level: repairs a diverged managed site from `source` (Patroni: pg_rewind through use_pg_rewind, or
/// a reinitialisation from the repository) and makes it follow `source`'s leader on its timeline.
struct RejoinSiteStep: RunnableStep {
    let site: Site
    let source: Site
    let method: RejoinMethod

    func check(_ run: StepRunner) async throws -> Bool { try await run.isFollowing(site.leader, source.leader) }

    func act(_ run: StepRunner) async throws -> RejoinEvidence {
        // Never rejoin a site to a source that is not the one writable primary: proved as before a promotion.
        let s = try await run.ctx.status(of: source.leader)
        guard s.isWritablePrimary else {
            throw FailoverError.refused(
                "rejoin of site \(site.name) refused: its source \(source.leader.name) is \(s.seen), not a primary accepting writes.")
        }
        try await run.ctx.siteDriver(for: site).rejoin(site, from: source, by: method)
        let now = try await run.ctx.status(of: site.leader)
        return RejoinEvidence(
            method: method.rawValue, source: source.leader.name, timeline: now.walReceiver?.receivedTimeline ?? now.timeline)
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
