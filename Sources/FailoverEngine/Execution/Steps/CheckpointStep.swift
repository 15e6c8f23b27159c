/// CHECKPOINT on the old primary, so that its shutdown checkpoint has little to write.
struct CheckpointStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await !run.ctx.status(of: instance).isWritablePrimary }

    func act(_ run: StepRunner) async throws -> NoEvidence {
        try await run.driver.checkpoint(instance)
        return NoEvidence()
    }
}
