/// Waits until `target` has replayed past `oldPrimary`'s shutdown checkpoint, same system, same timeline.
struct AwaitReplayStep: RunnableStep {
    let target: Instance
    let oldPrimary: Instance

    func act(_ run: StepRunner) async throws -> ReplayEvidence { try await run.awaitReplay(target: target, oldPrimary: oldPrimary) }
}
