/// Site level: promotes a managed site's leader through the site's driver, after the shared gates: the
/// transition's demotion token proved again, and no other instance of the plan able to accept writes.
struct PromoteSiteStep: RunnableStep {
    let site: Site

    func check(_ run: StepRunner) async throws -> Bool { try await run.ctx.status(of: site.leader).isWritablePrimary }

    func act(_ run: StepRunner) async throws -> Promotion {
        var token: DemotionToken?
        if let demote = run.ctx.steps.first(where: {
            $0.transition == run.step.transition && $0.kind == .demote && $0.number < run.step.number
        }) {
            token = try await run.provenSiteDemotionToken(demote)
        }
        try await run.proveNoOtherWriter(than: site.leader)
        var promotion = try await run.ctx.siteDriver(for: site).promote(site, proving: token)
        if run.step.action == .failover { await ForkRecord.journal(&promotion, of: site.leader, driver: run.driver) }
        return promotion
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
