/// Fences a former primary: records its last known LSN, marks it fenced, stops it.
struct FenceStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool {
        guard try run.ctx.journal.isFenced(instance: instance.name) else { return false }
        return try await !run.ctx.status(of: instance).running
    }

    func act(_ run: StepRunner) async throws -> FenceEvidence { try await run.fence(instance) }

    func verify(_ run: StepRunner) async throws -> Bool { try await !run.ctx.status(of: instance).running }
}
