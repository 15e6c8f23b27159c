/// Promotes `target` after proving that no other instance accepts writes (and the demotion token, in a
/// switchover).
struct PromoteStep: RunnableStep {
    let target: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await run.ctx.status(of: target).isWritablePrimary }

    func act(_ run: StepRunner) async throws -> Promotion {
        var promotion = try await run.promote(target)
        if run.step.action == .failover { await ForkRecord.journal(&promotion, of: target, driver: run.driver) }
        return promotion
    }

    func verify(_ run: StepRunner) async throws -> Bool { try await check(run) }
}
