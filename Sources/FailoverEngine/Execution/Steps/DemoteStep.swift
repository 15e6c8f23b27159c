/// Site level: demotes a managed site's primary to a standby of `upstream`'s leader, through the site's
/// driver, and journals the shutdown checkpoint it returns: the demotion token.
struct DemoteStep: RunnableStep {
    let site: Site
    let upstream: Site

    /// An in-doubt demote runs again rather than being assumed: a driver that can prove the token again
    /// returns it, and one that cannot (InstanceSite: the leader no longer has a clean primary shutdown in
    /// pg_control) refuses, so the run is abandoned rather than promoted without proof.
    func act(_ run: StepRunner) async throws -> DemotionToken {
        try await run.ctx.siteDriver(for: site).demote(site, toStandbyOf: upstream)
    }

    func verify(_ run: StepRunner) async throws -> Bool {
        try await run.ctx.siteDriver(for: site).status(of: site).isProvenNotWritable
    }
}
