/// The switchover gate: `target` streams from `primary` within policy, same system and timeline.
struct GateSwitchoverStep: RunnableStep {
    let target: Instance
    let primary: Instance

    func act(_ run: StepRunner) async throws -> SwitchoverGateEvidence {
        try await run.gateSwitchover(target: target, primary: primary)
    }
}
