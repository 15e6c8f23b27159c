/// pg_rewind of `instance` from `source`, after checking what it overwrites; a delta restore when
/// pg_rewind cannot repair the divergence.
struct RewindStep: RunnableStep {
    let instance: Instance
    let source: Instance

    func act(_ run: StepRunner) async throws -> RewindEvidence {
        let check = try await run.checkOverwrite(instance, by: "pg_rewind", source: source)
        do {
            return RewindEvidence(check: check, pgRewind: try await run.driver.rewind(instance, source: source))
        } catch {
            // pg_rewind cannot always repair a divergence (WAL gone, no wal_log_hints): a delta restore
            // from the repository always can, at the cost of copying what changed.
            run.ctx.logger.warning(
                "pg_rewind failed; falling back to a delta restore from the repository",
                metadata: ["instance": "\(instance.name)", "error": "\(error)"])
            try await run.driver.restore(instance, delta: true)
            return RewindEvidence(check: check, pgRewind: "failed: \(error)", fallback: "delta restore from the repository")
        }
    }
}
