/// One step kind's check, act and verify, over its resolved operands. Every decision lives in these types
/// and in the gates, above the driver, so every driver runs the same logic.
protocol RunnableStep: Sendable {
    /// What the act proves or records, journaled with the step.
    associatedtype Evidence: StepEvidence
    /// True when the postcondition already holds: the step is recorded `satisfied` and skipped.
    func check(_ run: StepRunner) async throws -> Bool
    /// Performs the side effect; returns the evidence to journal.
    func act(_ run: StepRunner) async throws -> Evidence
    /// True when the postcondition holds after the act.
    func verify(_ run: StepRunner) async throws -> Bool
}

extension RunnableStep {
    /// Most steps have nothing to skip: their act is harmless to repeat or must run.
    func check(_ run: StepRunner) async throws -> Bool { false }
    /// Most waits and gates prove their postcondition in the act itself.
    func verify(_ run: StepRunner) async throws -> Bool { true }
}

extension StepOperation {
    /// The runnable form of the operation, with its instances resolved against the plan; throws when the
    /// plan has no such instance.
    func runnable(in ctx: StepContext) throws -> any RunnableStep {
        func i(_ name: String) throws -> Instance { try ctx.instance(named: name) }
        switch self {
        case .gateSwitchover(let t, let p): return GateSwitchoverStep(target: try i(t), primary: try i(p))
        case .gateFailover(let t): return GateFailoverStep(target: try i(t))
        case .restore(let n, let delta): return RestoreStep(instance: try i(n), delta: delta)
        case .configureRecovery(let n, let u): return ConfigureRecoveryStep(instance: try i(n), upstream: try u.map(i))
        case .start(let n): return StartStep(instance: try i(n))
        case .awaitStreaming(let n, let u): return AwaitStreamingStep(instance: try i(n), upstream: try i(u))
        case .awaitArchiveRecovery(let n): return AwaitArchiveRecoveryStep(instance: try i(n))
        case .awaitCatchup(let n, let u): return AwaitCatchupStep(instance: try i(n), upstream: try i(u))
        case .checkpoint(let n): return CheckpointStep(instance: try i(n))
        case .stop(let n): return StopStep(instance: try i(n))
        case .readShutdownCheckpoint(let o): return ReadShutdownCheckpointStep(oldPrimary: try i(o))
        case .awaitReplay(let t, let o): return AwaitReplayStep(target: try i(t), oldPrimary: try i(o))
        case .promote(let t): return PromoteStep(target: try i(t))
        case .switchWAL(let n): return SwitchWALStep(instance: try i(n))
        case .fence(let n): return FenceStep(instance: try i(n))
        case .rewind(let n, let s): return RewindStep(instance: try i(n), source: try i(s))
        case .recordRoles(let roles): return RecordRolesStep(roles: roles)
        case .demote(let s, let u): return DemoteStep(site: try ctx.site(named: s), upstream: try ctx.site(named: u))
        case .promoteSite(let s): return PromoteSiteStep(site: try ctx.site(named: s))
        case .fenceSite(let s): return FenceSiteStep(site: try ctx.site(named: s))
        case .followSite(let s, let u): return FollowSiteStep(site: try ctx.site(named: s), upstream: try u.map { try ctx.site(named: $0) })
        case .rejoinSite(let s, let source, let method):
            return RejoinSiteStep(site: try ctx.site(named: s), source: try ctx.site(named: source), method: method)
        case .captureDivergence(let n, let source): return CaptureDivergenceStep(instance: try i(n), source: try source.map(i))
        case .lostSlot(let p): return LostSlotStep(primary: try i(p))
        }
    }
}

extension StepKind {
    /// The evidence a step of this kind journals: its runnable type's `Evidence`, so the journal's text is
    /// decoded back into the very type the act returned.
    var evidenceType: any StepEvidence.Type {
        switch self {
        case .gateSwitchover: GateSwitchoverStep.Evidence.self
        case .gateFailover: GateFailoverStep.Evidence.self
        case .restore: RestoreStep.Evidence.self
        case .configureRecovery: ConfigureRecoveryStep.Evidence.self
        case .start: StartStep.Evidence.self
        case .awaitStreaming: AwaitStreamingStep.Evidence.self
        case .awaitArchiveRecovery: AwaitArchiveRecoveryStep.Evidence.self
        case .awaitCatchup: AwaitCatchupStep.Evidence.self
        case .checkpoint: CheckpointStep.Evidence.self
        case .stop: StopStep.Evidence.self
        case .readShutdownCheckpoint: ReadShutdownCheckpointStep.Evidence.self
        case .awaitReplay: AwaitReplayStep.Evidence.self
        case .promote: PromoteStep.Evidence.self
        case .switchWAL: SwitchWALStep.Evidence.self
        case .fence: FenceStep.Evidence.self
        case .rewind: RewindStep.Evidence.self
        case .recordRoles: RecordRolesStep.Evidence.self
        case .demote: DemoteStep.Evidence.self
        case .promoteSite: PromoteSiteStep.Evidence.self
        case .fenceSite: FenceSiteStep.Evidence.self
        case .followSite: FollowSiteStep.Evidence.self
        case .rejoinSite: RejoinSiteStep.Evidence.self
        case .captureDivergence: CaptureDivergenceStep.Evidence.self
        case .lostSlot: LostSlotStep.Evidence.self
        }
    }
}
