/// Waits until `instance` replays WAL from the repository with no streaming WAL receiver.
struct AwaitArchiveRecoveryStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await run.isArchiveRecovering(instance) }

    func act(_ run: StepRunner) async throws -> NoEvidence {
        _ = try await run.ctx.wait("\(instance.name) replays WAL from the repository") {
            try await run.isArchiveRecovering(instance) ? true : nil
        }
        return NoEvidence()
    }
}
