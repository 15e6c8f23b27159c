/// Site level: fences a managed site through its driver (Patroni: the cluster becomes a standby cluster
/// that replays from the repository, so no member accepts writes or starts as a primary) and records every
/// member fenced in the journal, the mark first.
struct FenceSiteStep: RunnableStep {
    let site: Site

    // No check: the driver's fence is idempotent and also sets what the journal cannot see (Patroni's
    // standby_cluster, in its REST API or its DCS), so it always runs.

    func act(_ run: StepRunner) async throws -> FenceEvidence {
        let ctx = run.ctx
        let driver = ctx.siteDriver(for: site)
        let before = try? await driver.status(of: site)
        // The mark goes down first: whatever happens next, failoverd treats the site as fenced.
        for m in before?.members ?? [] {
            try await Blocking.run {
                try ctx.journal.recordFenced(
                    instance: m.instance.name, site: site.name, lastKnownLSN: m.status.position, reachable: m.status.reachable,
                    run: ctx.runID, epoch: ctx.epoch)
            }
        }
        let reason = "fenced by failoverd run \(ctx.runID)"
        let evidence: [String: FenceEvidence]
        do {
            evidence = try await driver.fence(site, reason: reason)
        } catch let unseen as UnseenMembers {
            // Members failoverd cannot see: only the plan's hook or the operator may vouch for them (audited).
            guard ctx.plan.fencing != nil || ctx.assumeFenced.contains(site.name) else { throw FailoverError.refused(unseen.message) }
            var vouch = ""
            for m in unseen.members {
                let e = try await run.fenceUnreachable(m.instance, seen: m.status, error: unseen, lastKnownLSN: m.status.position)
                vouch = e.fencedBy ?? vouch
            }
            evidence = try await driver.fence(site, reason: reason, vouchedBy: vouch)
        }
        for (name, e) in evidence {
            try await Blocking.run {
                try ctx.journal.recordFenced(
                    instance: name, site: site.name, lastKnownLSN: e.lastKnownLSN, reachable: e.reachable, run: ctx.runID, epoch: ctx.epoch)
            }
        }
        // The site's furthest WAL: what a failover may lose is measured against it.
        guard let furthest = evidence.max(by: { ($0.value.lastKnownLSN ?? .zero) < ($1.value.lastKnownLSN ?? .zero) }) else {
            throw FailoverError.failed("site \(site.name)'s driver fenced no member")
        }
        var e = furthest.value
        e.lastKnownFrom = "\(furthest.key): \(e.lastKnownFrom)"
        return e
    }

    /// Every member proven unable to accept writes; or, when an outside fence vouched for the members
    /// failoverd cannot see, at least none seen accepting writes.
    func verify(_ run: StepRunner) async throws -> Bool {
        let status = try await run.ctx.siteDriver(for: site).status(of: site)
        if status.isProvenNotWritable { return true }
        guard try run.siteFenceVouched(site.name) else { return false }
        return status.members.allSatisfy { $0.status.isProvenNotWritable || (!$0.status.isWritablePrimary && !$0.status.reachable) }
    }
}
