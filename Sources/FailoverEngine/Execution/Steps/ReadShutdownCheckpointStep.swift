/// Reads the stopped old primary's shutdown checkpoint: the demotion token.
struct ReadShutdownCheckpointStep: RunnableStep {
    let oldPrimary: Instance

    func act(_ run: StepRunner) async throws -> DemotionToken { try await run.readShutdownCheckpoint(oldPrimary) }
}
