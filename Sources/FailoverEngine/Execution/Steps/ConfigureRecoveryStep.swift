/// Writes failoverd's standby settings for `instance`: streaming from `upstream`, or archive-only.
struct ConfigureRecoveryStep: RunnableStep {
    let instance: Instance
    let upstream: Instance?

    var desired: RecoverySettings { RecoverySettings(upstream: upstream) }

    func check(_ run: StepRunner) async throws -> Bool {
        try await run.driver.recoverySettings(of: instance) == desired
    }

    func act(_ run: StepRunner) async throws -> RecoveryEvidence {
        try await run.driver.configureRecovery(of: instance, desired)
        return RecoveryEvidence(upstream: upstream?.name ?? "(repository only)")
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
