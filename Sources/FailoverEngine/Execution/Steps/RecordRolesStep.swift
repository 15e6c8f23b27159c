/// Records the sites' new roles in the journal; after a failover, reports the WAL-loss estimate.
struct RecordRolesStep: RunnableStep {
    let roles: [String: Role]

    func check(_ run: StepRunner) async throws -> Bool {
        let ctx = run.ctx
        let recorded = try await Blocking.run { try ctx.journal.recordedRoles() }
        return roles.allSatisfy { recorded[$0.key] == $0.value }
    }

    func act(_ run: StepRunner) async throws -> RolesEvidence {
        let ctx = run.ctx
        try await Blocking.run { try ctx.journal.recordRoles(roles, run: ctx.runID, epoch: ctx.epoch) }
        var evidence = RolesEvidence(roles: roles)
        // A failover reports how much WAL the fenced primary may have had beyond the promoted position.
        guard run.step.action == .failover else { return evidence }
        let transition = run.ctx.steps.filter { $0.transition == run.step.transition }
        let fenced = try transition.filter { $0.kind == .fence || $0.kind == .fenceSite }.compactMap {
            try run.ctx.evidence(of: $0.number, as: FenceEvidence.self)
        }
        let promoted = try transition.first { $0.kind == .promote || $0.kind == .promoteSite }.flatMap {
            try run.ctx.evidence(of: $0.number, as: Promotion.self)
        }
        if let last = fenced.compactMap(\.lastKnownLSN).max(), let at = promoted?.promotedAtLSN {
            evidence.oldPrimaryLastKnownLSN = last
            evidence.promotedAtLSN = at
            evidence.walLossEstimateBytes = last.bytes(after: at)
        }
        return evidence
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
