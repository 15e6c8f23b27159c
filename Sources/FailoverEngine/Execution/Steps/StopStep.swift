/// Stops `instance` cleanly (fast); before a restore or rewind, first checks what they will overwrite.
struct StopStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await !run.ctx.status(of: instance).running }

    func act(_ run: StepRunner) async throws -> OverwriteCheck {
        // A data directory of another cluster is refused before anything in it changes, its server included.
        var check = OverwriteCheck()
        if let next = run.overwriteAfterStop {
            if case .rewind(_, let source) = next.operation {
                check = try await run.checkOverwrite(instance, by: "pg_rewind", source: try run.ctx.instance(named: source))
            } else {
                check = try await run.checkOverwrite(instance, by: "delta restore", source: nil)
            }
        }
        try await run.driver.stop(instance, mode: .fast)
        return check
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
