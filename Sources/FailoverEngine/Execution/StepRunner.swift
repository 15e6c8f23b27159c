import Foundation
import Logging

/// What one step needs from the run: the plan, the driver, the journal, options and earlier evidence.
struct StepContext: Sendable {
    let plan: Plan
    let driver: any SiteDriver
    let journal: Journal
    let runID: String
    let epoch: Int64
    let allowDataLoss: Bool
    let logger: Logger
    /// Evidence of finished steps of this run, by step number.
    let evidence: [Int: [String: String]]
    let steps: [Step]
    let pollInterval: Double

    var timeout: Double { plan.policy.stepTimeoutSeconds }

    func instance(_ name: String?) throws -> Instance {
        guard let name, let i = plan.allInstances.first(where: { $0.instance.name == name })?.instance else {
            throw FailoverError.failed("the plan has no instance \(name ?? "(none)")")
        }
        return i
    }

    func site(ofInstance name: String) -> Site? { plan.sites.first { $0.instances.contains { $0.name == name } } }

    /// Waits for `condition` with the step timeout; fails naming `what` at the deadline.
    func wait<T: Sendable>(_ what: String, timeout: Double? = nil, _ condition: () async throws -> T?) async throws -> T {
        guard let v = try await Wait.until(timeout: timeout ?? self.timeout, interval: pollInterval, condition) else {
            throw FailoverError.failed("timed out after \(Int(timeout ?? self.timeout)) s waiting until \(what); policy.stepTimeoutSeconds sets the limit")
        }
        return v
    }
}

/// The check, act and verify of each step kind. Every decision lives here, so every driver runs it.
struct StepRunner {
    let ctx: StepContext
    let step: Step
    /// The step's act started before in this run (a crash or a failure cut it short): it is being retried.
    var inDoubt = false

    var driver: any SiteDriver { ctx.driver }

    /// True when the step's postcondition already holds: it is recorded `satisfied` and skipped.
    func check() async throws -> Bool {
        if let u = step.unlessFollowing, try await isFollowing(try ctx.instance(step.instance), try ctx.instance(u)) { return true }
        let i = try? ctx.instance(step.instance)
        switch step.kind {
        case .gateSwitchover, .gateFailover, .readShutdownCheckpoint, .awaitReplay, .switchWAL, .restore, .rewind:
            return false
        case .checkpoint:
            return try await !driver.status(of: i!).isWritablePrimary
        case .stop:
            return try await !driver.status(of: i!).running
        case .configureRecovery:
            return try await driver.recoverySettings(of: i!) == desiredSettings()
        case .start:
            let s = try await driver.status(of: i!)
            if s.isWritablePrimary {
                throw FailoverError.refused(
                    "\(i!.name) is running as a primary, but this step starts it as a standby; stop it (or fence its site) before resuming.")
            }
            return s.running
        case .awaitStreaming:
            return try await isFollowing(i!, try ctx.instance(step.peer))
        case .awaitArchiveRecovery:
            return try await isArchiveRecovering(i!)
        case .awaitCatchup:
            return try await lag(of: i!, behind: try ctx.instance(step.peer)) != nil
        case .promote:
            return try await driver.status(of: i!).isWritablePrimary
        case .fence:
            guard try ctx.journal.isFenced(instance: i!.name) else { return false }
            return try await !driver.status(of: i!).running
        case .recordRoles:
            let recorded = try ctx.journal.recordedRoles()
            return (step.roles ?? [:]).allSatisfy { recorded[$0.key] == $0.value }
        }
    }

    /// Performs the step's side effect; returns the evidence to journal.
    func act() async throws -> [String: String] {
        let i = try? ctx.instance(step.instance)
        switch step.kind {
        case .gateSwitchover: return try await gateSwitchover(target: i!, primary: try ctx.instance(step.peer))
        case .gateFailover: return try await gateFailover(target: i!)
        case .restore:
            let wantsDelta = step.delta ?? false
            var e = try await checkOverwrite(i!, by: wantsDelta ? "delta restore" : "restore", source: nil)
            // A restore into an empty directory stays one; only this step's own interrupted attempt may be
            // finished with --delta (the driver refuses a non-empty directory otherwise).
            let hasData = try await driver.hasData(i!)
            let delta = wantsDelta || (inDoubt && hasData)
            if delta && !wantsDelta { e["resumedWith"] = "delta: finishing this step's interrupted restore" }
            try await driver.restore(i!, delta: delta)
            e["delta"] = String(delta)
            return e
        case .configureRecovery:
            try await driver.configureRecovery(of: i!, desiredSettings())
            return ["upstream": step.peer ?? "(repository only)"]
        case .start:
            if try await ctx.journal.isFenced(instance: i!.name), try await driver.recoverySettings(of: i!) == nil {
                throw FailoverError.refused(
                    "\(i!.name) is fenced and has no standby settings: failoverd will not start it as a primary. Repair it with rewind or rebuild.")
            }
            try await driver.start(i!)
            return [:]
        case .awaitStreaming:
            let up = try ctx.instance(step.peer)
            let tli = try await ctx.wait("\(i!.name) streams from \(up.name)") {
                try await isFollowing(i!, up) ? try await driver.status(of: i!).walReceiver?.receivedTimeline ?? 0 : nil
            }
            return ["timeline": String(tli)]
        case .awaitArchiveRecovery:
            _ = try await ctx.wait("\(i!.name) replays WAL from the repository") { try await isArchiveRecovering(i!) ? true : nil }
            return [:]
        case .awaitCatchup:
            let up = try ctx.instance(step.peer)
            let bytes: UInt64 = try await ctx.wait("\(i!.name) lags \(up.name) by at most \(ctx.plan.policy.maxLagBytes) bytes") {
                try await lag(of: i!, behind: up)
            }
            return ["lagBytes": String(bytes)]
        case .checkpoint:
            try await driver.checkpoint(i!)
            return [:]
        case .stop:
            // A stop before a restore or rewind checks first what they will overwrite: a data directory of
            // another cluster is refused before anything in it changes, its server included.
            var e: [String: String] = [:]
            if let next = overwriteAfterStop {
                e = try await checkOverwrite(
                    i!, by: next.kind == .rewind ? "pg_rewind" : "delta restore", source: next.kind == .rewind ? try ctx.instance(next.peer) : nil)
            }
            try await driver.stop(i!, mode: .fast)
            return e
        case .readShutdownCheckpoint: return try await readShutdownCheckpoint(i!)
        case .awaitReplay: return try await awaitReplay(target: i!, oldPrimary: try ctx.instance(step.peer))
        case .promote: return try await promote(i!)
        case .switchWAL:
            let segment = try await driver.switchWAL(i!)
            _ = try await ctx.wait("WAL segment \(segment) from \(i!.name) is archived") {
                try await driver.isArchived(i!, segment: segment) ? true : nil
            }
            return ["segment": segment]
        case .fence: return try await fence(i!)
        case .rewind:
            var e = try await checkOverwrite(i!, by: "pg_rewind", source: try ctx.instance(step.peer))
            do {
                e["pgRewind"] = try await driver.rewind(i!, source: try ctx.instance(step.peer))
                return e
            } catch {
                // pg_rewind cannot always repair a divergence (WAL gone, no wal_log_hints): a delta restore
                // from the repository always can, at the cost of copying what changed.
                ctx.logger.warning("pg_rewind of \(i!.name) failed (\(error)); falling back to a delta restore from the repository")
                try await driver.restore(i!, delta: true)
                e["pgRewind"] = "failed: \(error)"
                e["fallback"] = "delta restore from the repository"
                return e
            }
        case .recordRoles:
            try ctx.journal.recordRoles(step.roles ?? [:], run: ctx.runID, epoch: ctx.epoch)
            return recordRolesEvidence()
        }
    }

    /// Confirms the postcondition after the act.
    func verify() async throws {
        let i = try? ctx.instance(step.instance)
        let ok: Bool
        switch step.kind {
        case .gateSwitchover, .gateFailover, .readShutdownCheckpoint, .awaitReplay, .switchWAL, .rewind, .awaitStreaming,
            .awaitArchiveRecovery, .awaitCatchup, .checkpoint:
            ok = true
        case .restore: ok = try await driver.hasData(i!)
        case .configureRecovery: ok = try await driver.recoverySettings(of: i!) == desiredSettings()
        case .start: ok = try await ctx.wait("\(i!.name) accepts connections", timeout: 30) { try await driver.status(of: i!).reachable ? true : nil }
        case .stop, .fence: ok = try await !driver.status(of: i!).running
        case .promote: ok = try await driver.status(of: i!).isWritablePrimary
        case .recordRoles: ok = try await check()
        }
        if !ok { throw FailoverError.failed("step \(step.number) (\(step.summary)) did not reach its postcondition") }
    }

    // MARK: helpers

    func desiredSettings() throws -> RecoverySettings {
        RecoverySettings(upstream: try step.peer.map { try ctx.instance($0) })
    }

    /// Streaming from `upstream` on the upstream's timeline.
    func isFollowing(_ i: Instance, _ upstream: Instance) async throws -> Bool {
        let s = try await driver.status(of: i)
        guard s.running, s.inRecovery, let r = s.walReceiver, r.isStreaming(from: upstream) else { return false }
        let u = try await driver.status(of: upstream)
        guard u.running else { return false }
        let upTimeline = u.inRecovery ? (u.walReceiver?.receivedTimeline ?? u.timeline) : u.timeline
        return (r.receivedTimeline ?? s.timeline) == upTimeline
    }

    func isArchiveRecovering(_ i: Instance) async throws -> Bool {
        let s = try await driver.status(of: i)
        return s.running && s.inRecovery && (s.walReceiver == nil || s.walReceiver?.status != "streaming")
    }

    /// The lag in bytes when within policy, nil otherwise.
    func lag(of i: Instance, behind upstream: Instance) async throws -> UInt64? {
        let s = try await driver.status(of: i)
        let u = try await driver.status(of: upstream)
        guard s.running, s.inRecovery, let pos = s.replayLSN, let top = u.position else { return nil }
        let lag = top.bytes(after: pos)
        return lag <= ctx.plan.policy.maxLagBytes ? lag : nil
    }

    func evidence(ofKind kind: StepKind, instance: String) -> [String: String]? {
        ctx.steps.last { $0.kind == kind && $0.instance == instance && $0.transition == step.transition && $0.number < step.number }
            .flatMap { ctx.evidence[$0.number] }
    }

    func recordRolesEvidence() -> [String: String] {
        var e: [String: String] = [:]
        for (site, role) in step.roles ?? [:] { e["role." + site] = role.rawValue }
        // A failover reports how much WAL the fenced primary may have had beyond the promoted position.
        if step.action == .failover {
            let fenced = ctx.steps.filter { $0.transition == step.transition && $0.kind == .fence }.compactMap { ctx.evidence[$0.number] }
            let promoted = ctx.steps.first { $0.transition == step.transition && $0.kind == .promote }.flatMap { ctx.evidence[$0.number] }
            if let last = fenced.compactMap({ $0["lastKnownLSN"].flatMap(LSN.init) }).max(),
                let at = promoted?["promotedAtLSN"].flatMap(LSN.init)
            {
                e["oldPrimaryLastKnownLSN"] = last.description
                e["promotedAtLSN"] = at.description
                e["walLossEstimateBytes"] = String(last.bytes(after: at))
            }
        }
        return e
    }
}
