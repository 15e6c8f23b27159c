/// Waits until `instance` lags `upstream` by at most policy.maxLagBytes.
struct AwaitCatchupStep: RunnableStep {
    let instance: Instance
    let upstream: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await run.lag(of: instance, behind: upstream) != nil }

    func act(_ run: StepRunner) async throws -> CatchupEvidence {
        let bytes: UInt64 = try await run.ctx.wait(
            "\(instance.name) lags \(upstream.name) by at most \(run.ctx.plan.policy.maxLagBytes) bytes"
        ) { try await run.lag(of: instance, behind: upstream) }
        return CatchupEvidence(lagBytes: bytes)
    }
}
