/// The failover gate: `target` is a running standby and no other candidate holds more WAL.
struct GateFailoverStep: RunnableStep {
    let target: Instance

    func act(_ run: StepRunner) async throws -> FailoverGateEvidence {
        try await run.gateFailover(target: target)
    }
}
