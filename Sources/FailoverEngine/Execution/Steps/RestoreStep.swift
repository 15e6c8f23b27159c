/// Restores `instance` from the repository as a standby, after checking what it overwrites.
struct RestoreStep: RunnableStep {
    let instance: Instance
    let delta: Bool

    func act(_ run: StepRunner) async throws -> RestoreEvidence {
        let check = try await run.checkOverwrite(instance, by: delta ? "delta restore" : "restore", source: nil)
        // A restore into an empty directory stays one; only this step's own interrupted attempt may be
        // finished with --delta (the driver refuses a non-empty directory otherwise).
        let hasData = try await run.driver.hasData(instance)
        let useDelta = delta || (run.inDoubt && hasData)
        try await run.driver.restore(instance, delta: useDelta)
        return RestoreEvidence(
            check: check, delta: useDelta, resumedWith: useDelta && !delta ? "delta: finishing this step's interrupted restore" : nil)
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await run.driver.hasData(instance) }
}
