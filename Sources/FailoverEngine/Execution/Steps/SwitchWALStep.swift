/// Switches WAL on `instance` and waits until the closed segment is archived.
struct SwitchWALStep: RunnableStep {
    let instance: Instance

    func act(_ run: StepRunner) async throws -> SwitchWALEvidence {
        let segment = try await run.driver.switchWAL(instance)
        _ = try await run.ctx.wait("WAL segment \(segment) from \(instance.name) is archived") {
            try await run.driver.isArchived(instance, segment: segment) ? true : nil
        }
        return SwitchWALEvidence(segment: segment)
    }
}
