/// Keeps failoverd's logical slots (policy.captureLostRows) where a failover could need them: recreated on a
/// primary this transition promoted (a slot does not follow a failover, and an old one points into another
/// timeline), created where missing otherwise, and dropped on every other running instance (a stale logical
/// slot on a standby holds back its WAL for ever).
struct LostSlotStep: RunnableStep {
    let primary: Instance

    func act(_ run: StepRunner) async throws -> LostSlotEvidence {
        var dropped: [String] = []
        for (_, other) in run.ctx.plan.allInstances where other != primary {
            guard let s = try? await run.ctx.status(of: other), s.running, s.reachable else { continue }
            let state = try await run.driver.lostSlots(on: other, .status)
            guard !state.slots.isEmpty else { continue }
            _ = try await run.driver.lostSlots(on: other, .drop)
            dropped.append(other.name)
        }
        let promoted = run.ctx.steps.contains {
            $0.transition == run.step.transition && ($0.kind == .promote || $0.kind == .promoteSite)
        }
        let action: LostSlotAction = promoted ? .recreate(plugin: LostSlots.plugin) : .ensure(plugin: LostSlots.plugin)
        let state = try await run.driver.lostSlots(on: primary, action)
        return LostSlotEvidence(
            slots: state.slots.map { "\($0.name)@\($0.database)" }.joined(separator: ","),
            confirmedFlushLSN: state.slots.compactMap(\.confirmedFlushLSN).min()?.description ?? "none",
            droppedOn: dropped.joined(separator: ","))
    }
}
