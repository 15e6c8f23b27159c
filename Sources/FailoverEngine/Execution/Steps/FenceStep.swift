/// Fences a former primary: records its last known LSN, marks it fenced, stops it.
struct FenceStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool {
        let ctx = run.ctx
        guard try await Blocking.run({ try ctx.journal.isFenced(instance: instance.name) }) else { return false }
        return try await !run.ctx.status(of: instance).running
    }

    func act(_ run: StepRunner) async throws -> FenceEvidence { try await run.fence(instance) }

    /// Stopped; or, when the act fenced it without seeing it (hook or --assume-fenced), at least not seen writable.
    func verify(_ run: StepRunner) async throws -> Bool {
        let status = try await run.ctx.status(of: instance)
        if !status.running { return true }
        let blind = run.ctx.plan.fencing != nil || run.ctx.assumeFenced.contains(run.step.site)
        return blind && !status.isWritablePrimary && !status.reachable
    }
}
