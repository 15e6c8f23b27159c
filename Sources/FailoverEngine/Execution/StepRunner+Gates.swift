import Foundation

/// The safety gates: switchover preconditions, the demotion token, replay of the shutdown checkpoint,
/// the split-brain check before promote, and fencing.
extension StepRunner {
    /// The target streams from the primary, same system and timeline, within policy.maxLagBytes.
    ///
    /// Every refusal is immediate except lag over policy of a target that streams: under write load a
    /// healthy standby can be a segment behind for a moment, so the gate reads again until it is within
    /// policy or policy.stepTimeoutSeconds has passed, and only then refuses, saying how long it waited.
    func gateSwitchover(target: Instance, primary: Instance) async throws -> SwitchoverGateEvidence {
        var refusal = ""
        let started = ContinuousClock.now
        let passed: SwitchoverGateEvidence? = try await Wait.until(
            timeout: ctx.lagWaitSeconds ?? ctx.timeout, interval: max(ctx.pollInterval, 0.01)
        ) {
            let (evidence, overPolicy) = try await readSwitchoverGate(target: target, primary: primary)
            guard let overPolicy else { return evidence }
            guard ctx.allowDataLoss else {
                refusal = overPolicy
                return nil
            }
            var e = evidence
            let lagOverride = "allow-data-loss: lag \(e.lagBytes) bytes over policy"
            e.override = e.override.map { "\($0); \(lagOverride)" } ?? lagOverride
            return e
        }
        if let passed { return passed }
        let waited = Int((ContinuousClock.now - started) / .seconds(1))
        throw FailoverError.refused(waited > 0 ? "\(refusal) (still over policy after \(waited) s)." : "\(refusal).")
    }

    /// One reading of the switchover gate: the evidence, and the refusal when the lag alone is over policy.
    /// Throws the refusals that waiting cannot cure.
    private func readSwitchoverGate(target: Instance, primary: Instance) async throws -> (SwitchoverGateEvidence, String?) {
        // The target first, then the primary: lag read in this order can only be overestimated.
        let t = try await ctx.status(of: target)
        let p = try await ctx.status(of: primary)
        guard p.isWritablePrimary, let top = p.currentLSN else {
            throw FailoverError.refused(
                "switchover refused: \(primary.name) is not running as a primary that accepts writes; a switchover needs a live primary. Use failover instead."
            )
        }
        guard t.running, t.inRecovery else {
            throw FailoverError.refused(
                "switchover refused: \(target.name) is not a running standby (running: \(t.running), in recovery: \(t.inRecovery)).")
        }
        guard t.systemIdentifier == p.systemIdentifier else {
            throw FailoverError.refused(
                "switchover refused: \(target.name) has system identifier \(t.systemIdentifier) but \(primary.name) has \(p.systemIdentifier); they are different clusters. Rebuild \(target.name) from the repository."
            )
        }
        let targetTimeline = t.walReceiver?.receivedTimeline ?? t.timeline
        guard targetTimeline == p.timeline || ctx.allowDataLoss else {
            throw FailoverError.refused(
                "switchover refused: \(target.name) is on timeline \(targetTimeline) but \(primary.name) is on timeline \(p.timeline). Rewind or rebuild \(target.name) first."
            )
        }
        let replay = t.replayLSN ?? .zero
        let lag = top.bytes(after: replay)
        var evidence = SwitchoverGateEvidence(primaryLSN: top, targetReplayLSN: replay, lagBytes: lag, timeline: p.timeline)
        let streaming = t.walReceiver?.isStreaming(from: primary) ?? false
        if !streaming {
            guard ctx.allowDataLoss else {
                throw FailoverError.refused(
                    "switchover refused: \(target.name) is not streaming from \(primary.name) (WAL receiver: \(t.walReceiver?.status ?? "none")); it cannot replay the shutdown checkpoint. Run enable-streaming first, or use --allow-data-loss to accept losing what it has not received."
                )
            }
            evidence.override = "allow-data-loss: target not streaming"
        }
        guard lag > ctx.plan.policy.maxLagBytes else { return (evidence, nil) }
        return (
            evidence,
            "switchover refused: \(target.name) has replayed \(replay) but \(primary.name) is at \(top) (\(lag) bytes behind, policy.maxLagBytes is \(ctx.plan.policy.maxLagBytes)); wait for it to catch up or use --allow-data-loss"
        )
    }

    /// The target is a running standby and no other candidate holds more WAL.
    ///
    /// Candidates are every instance of every site except the old primary's (the target's own site
    /// included), compared by what they hold on disk (received and flushed, or replayed) and by timeline.
    /// A candidate that is stopped, unreachable or of another cluster is listed in the evidence, never
    /// skipped in silence. The planner runs this gate twice: before fencing, to refuse with nothing
    /// changed, and after, when the old primary can no longer write and the positions are final.
    func gateFailover(target: Instance) async throws -> FailoverGateEvidence {
        let t = try await ctx.status(of: target)
        guard t.running, t.reachable, t.inRecovery, let pos = t.heldLSN else {
            throw FailoverError.refused(
                "failover refused: \(target.name) is not a running standby (\(t.seen)); start it or choose another target.")
        }
        let targetTimeline = t.walReceiver?.receivedTimeline ?? t.timeline
        var evidence = FailoverGateEvidence(targetLSN: pos, targetTimeline: targetTimeline)
        // The old primary's site is fenced by this transition; every other instance is a candidate.
        let oldPrimarySite = ctx.steps.first { $0.transition == step.transition && ($0.kind == .fence || $0.kind == .fenceSite) }?.site
        for (site, other) in ctx.plan.allInstances where other != target && site.name != oldPrimarySite {
            let key = other.name
            let s: InstanceStatus
            do {
                s = try await ctx.status(of: other)
            } catch {
                evidence.candidates[key] = "unknown: \(error)"
                continue
            }
            guard s.running, s.reachable else {
                evidence.candidates[key] = s.seen
                continue
            }
            guard s.inRecovery else {
                evidence.candidates[key] = "a primary accepting writes"
                continue
            }
            guard s.systemIdentifier == t.systemIdentifier, let held = s.heldLSN else {
                evidence.candidates[key] = "another cluster (system identifier \(s.systemIdentifier))"
                continue
            }
            let tli = s.walReceiver?.receivedTimeline ?? s.timeline
            evidence.candidates[key] = "\(held) on timeline \(tli)"
            let ahead = tli > targetTimeline || (tli == targetTimeline && held > pos)
            if ahead && !ctx.allowDataLoss {
                // Another site: fail over to it. The target's own site: failoverd promotes the site's first
                // instance, so the instance that holds more must come first in the plan.
                let remedy =
                    site.instances.contains(target)
                    ? "\(other.name) is in the target site \(site.name), whose first instance (\(target.name)) is the one failoverd promotes: list \(other.name) first in \(site.name)'s instances and plan again"
                    : "fail over to \(site.name) instead"
                throw FailoverError.refused(
                    "failover refused: \(other.name) (site \(site.name)) holds WAL to \(held) on timeline \(tli), further than \(target.name) at \(pos) on timeline \(targetTimeline); \(remedy), or use --allow-data-loss."
                )
            }
        }
        return evidence
    }

    /// The demotion token: the stopped old primary's shutdown checkpoint.
    func readShutdownCheckpoint(_ old: Instance) async throws -> DemotionToken {
        guard let cd = try await driver.controlData(of: old) else {
            throw FailoverError.refused("switchover refused: \(old.name) has no readable pg_control; cannot prove where its WAL ends.")
        }
        guard cd.isCleanPrimaryShutdown else {
            throw FailoverError.refused(
                "switchover refused: \(old.name) was not shut down cleanly (cluster state: \(cd.state)); without a shutdown checkpoint there is no proof the target has every commit. Abandon this run (failoverd abandon RUN), start \(old.name) again if it should take writes, and plan a new switchover or a failover."
            )
        }
        return DemotionToken(cd)
    }

    /// The demotion token journaled for `old` in this transition, proved again against its pg_control now.
    ///
    /// Evidence proved before a crash is proved again after it: if the old primary ran since its token was
    /// read (started by hand, by a service manager, or as a standby), its pg_control differs and the
    /// switchover is refused, because the target cannot have the commits made meanwhile.
    func provenDemotionToken(of old: Instance) async throws -> DemotionToken {
        if let demote = ctx.steps.first(where: { $0.transition == step.transition && $0.kind == .demote && $0.number < step.number }) {
            return try await provenSiteDemotionToken(demote)
        }
        guard let read = lastStep(ofKind: .readShutdownCheckpoint, instance: old.name),
            let token = try ctx.evidence(of: read.number, as: DemotionToken.self)
        else {
            return try await readShutdownCheckpoint(old)
        }
        let now = try await driver.controlData(of: old)
        let status = try await ctx.status(of: old)
        guard !status.running, let now, now.isCleanPrimaryShutdown, DemotionToken(now) == token else {
            let seen =
                status.running
                ? "it is running (\(status.seen))"
                : now.map { "its pg_control now says \(DemotionToken($0).text) (\($0.state))" } ?? "its pg_control is unreadable"
            throw FailoverError.refused(
                "switchover refused: \(old.name) ran after its shutdown checkpoint was journaled (token \(token.text)); \(seen). The target cannot have the commits made meanwhile, so this run must not promote it. Abandon this run (failoverd abandon RUN) and start a new one from the topology as it is now."
            )
        }
        return token
    }

    /// The demotion token a managed site's `demote` step journaled, proved again: the demoted site must
    /// still be proven unable to accept writes (every member stopped, or answering in recovery).
    func provenSiteDemotionToken(_ demote: Step) async throws -> DemotionToken {
        guard let token = try ctx.evidence(of: demote.number, as: DemotionToken.self) else {
            throw FailoverError.refused(
                "switchover refused: step \(demote.number) (\(demote.summary)) journaled no demotion token; without it there is no proof the target has every commit. Abandon this run and start a new one."
            )
        }
        let site = try ctx.site(named: demote.site)
        let driver = ctx.siteDriver(for: site)
        let status = try await driver.status(of: site)
        guard status.isProvenNotWritable else {
            let seen = status.members.map { "\($0.instance.name): \($0.status.seen)" }.joined(separator: ", ")
            throw FailoverError.refused(
                "switchover refused: site \(site.name) was demoted with token \(token.text) but is not proven unable to accept writes now (\(seen)); the target cannot have the commits made meanwhile. Abandon this run and start a new one from the topology as it is now."
            )
        }
        let now: DemotionToken?
        do {
            now = try await driver.demotionTokenNow(of: site)
        } catch {
            throw FailoverError.refused(
                "switchover refused: site \(site.name) was demoted with token \(token.text), which cannot be proved again now (\(error)); the target may lack commits made since. Abandon this run and start a new one from the topology as it is now."
            )
        }
        if let now, now != token {
            throw FailoverError.refused(
                "switchover refused: site \(site.name) was demoted with token \(token.text) but its leader now proves \(now.text): it ran, or was rewound, since. The target cannot have the commits made meanwhile; abandon this run and start a new one from the topology as it is now."
            )
        }
        return token
    }

    /// Refuses unless every instance of the plan but `target` is proven unable to accept writes: never two
    /// writable primaries, and unknown is not "not a primary".
    func proveNoOtherWriter(than target: Instance) async throws {
        for (site, other) in ctx.plan.allInstances where other != target {
            let s: InstanceStatus
            do {
                s = try await ctx.status(of: other)
            } catch {
                throw FailoverError.refused(
                    "promote refused: cannot tell whether \(other.name) (site \(site.name)) accepts writes (\(error)); restore failoverd's access to it, or stop it, then resume."
                )
            }
            if s.isWritablePrimary {
                throw FailoverError.refused(
                    "promote refused: \(other.name) (site \(site.name)) accepts writes; promoting \(target.name) now would make two primaries. Fence \(site.name) first."
                )
            }
            // An old primary fenced without being seen (the plan's hook, or the operator's --assume-fenced) is
            // the one exception: the hook's exit status or the operator vouches for it, and it is audited.
            if !s.isProvenNotWritable, try evidence(ofKind: .fence, instance: other.name, as: FenceEvidence.self)?.fencedBy == nil,
                !(try siteFenceVouched(site.name))
            {
                throw FailoverError.refused(
                    "promote refused: cannot tell whether \(other.name) (site \(site.name)) accepts writes: it is \(s.seen). Make it answer, or stop it (fence \(site.name)), then resume."
                )
            }
        }
    }

    /// True when this transition fenced managed site `site` on an outside fence's word (the plan's hook or
    /// --assume-fenced): its journaled `fence-site` evidence names who vouched.
    func siteFenceVouched(_ site: String) throws -> Bool {
        guard
            let fence = ctx.steps.last(where: {
                $0.kind == .fenceSite && $0.site == site && $0.transition == step.transition && $0.number <= step.number
            })
        else { return false }
        if fence.number == step.number { return ctx.plan.fencing != nil || ctx.assumeFenced.contains(site) }
        return try ctx.evidence(of: fence.number, as: FenceEvidence.self)?.fencedBy != nil
    }

    /// Waits until the target has replayed past the old primary's shutdown checkpoint, same system, same timeline.
    func awaitReplay(target: Instance, oldPrimary: Instance) async throws -> ReplayEvidence {
        let token = try await provenDemotionToken(of: oldPrimary)
        let checkpoint = token.checkpointLSN
        let timeline = token.timeline
        let system = token.systemIdentifier
        var seen: InstanceStatus?
        // With --allow-data-loss too, wait the whole step timeout first: the override accepts a loss, it
        // does not seek one.
        let replayed: LSN? = try await Wait.until(timeout: ctx.timeout, interval: ctx.pollInterval) {
            let t = try await ctx.status(of: target)
            seen = t
            guard t.running, t.reachable, t.inRecovery else {
                throw FailoverError.refused(
                    "switchover refused: \(target.name) is no longer a running standby (\(t.seen)); nothing was promoted. Inspect it before resuming."
                )
            }
            guard t.systemIdentifier == system else {
                throw FailoverError.refused(
                    "switchover refused: \(target.name) has system identifier \(t.systemIdentifier), the old primary \(system); do not retry, rebuild \(target.name)."
                )
            }
            // Once the old primary is down the receiver is gone, and a standby's own timeline reads the last
            // restartpoint's: trust the timeline the gate saw it stream on, unless a live receiver says otherwise.
            let gateTimeline = try self.evidence(ofKind: .gateSwitchover, instance: target.name, as: SwitchoverGateEvidence.self)?.timeline
            let tli = t.walReceiver?.receivedTimeline ?? gateTimeline ?? t.timeline
            guard tli == timeline || ctx.allowDataLoss else {
                throw FailoverError.refused(
                    "switchover refused: \(target.name) is on timeline \(tli), the old primary's shutdown checkpoint on timeline \(timeline); do not retry blindly, rewind or rebuild \(target.name)."
                )
            }
            if let r = t.replayLSN, r > checkpoint { return r }
            return nil
        }
        var result = ReplayEvidence(
            demotionToken: token.text, checkpointLSN: checkpoint, timeline: timeline, targetReplayLSN: replayed?.description ?? "unknown")
        if replayed != nil { return result }
        let at = seen?.replayLSN?.description ?? "unknown"
        guard ctx.allowDataLoss else {
            throw FailoverError.refused(
                "switchover refused: \(target.name) has replayed \(at) but \(oldPrimary.name)'s shutdown checkpoint is \(checkpoint) (timeline \(timeline)); nothing was promoted and \(oldPrimary.name) is stopped. Either give the target the WAL it lacks (restore its WAL stream or the archive) and resume this run, or abandon it (failoverd abandon RUN), start \(oldPrimary.name) again to take writes, and plan anew: once \(oldPrimary.name) has run, a resume of this run is refused. Resuming with --allow-data-loss promotes without the missing WAL."
            )
        }
        result.targetReplayLSN = at
        result.override = "allow-data-loss: promoted before replaying the shutdown checkpoint"
        return result
    }

    /// Proves no other instance accepts writes, promotes, and proves the target accepts writes.
    func promote(_ target: Instance) async throws -> Promotion {
        // A planned switchover promotes only while the old primary is still the one whose token was proved.
        if let old = ctx.steps.first(where: { $0.transition == step.transition && $0.kind == .readShutdownCheckpoint })?.instance {
            _ = try await provenDemotionToken(of: try ctx.instance(named: old))
        }
        // Unknown is not "not a primary": an instance is safe only when proven stopped, or answering and in
        // recovery. A fenced instance found running again is a candidate like any other.
        try await proveNoOtherWriter(than: target)
        let before = try await ctx.status(of: target)
        try await driver.promote(target)
        let written = try await driver.writeProbe(target)
        let after = try await ctx.status(of: target)
        // Where recovery ended: pg_last_wal_replay_lsn() still answers after promotion, and it includes
        // WAL replayed from the repository between the last probe and the promotion.
        let promotedAt = after.replayLSN ?? before.replayLSN ?? before.receiveLSN ?? .zero
        return Promotion(
            promotedAtLSN: promotedAt, previousTimeline: before.walReceiver?.receivedTimeline ?? before.timeline, timeline: after.timeline,
            firstWriteLSN: written, receiveLSNBeforePromotion: before.receiveLSN, replayLSNBeforePromotion: before.replayLSN)
    }

    /// Records the last known LSN, stops the instance (fast, then immediate), and records it fenced.
    func fence(_ i: Instance) async throws -> FenceEvidence {
        let s = try? await ctx.status(of: i)
        var last: LSN? = s?.position
        let reachable = s?.reachable ?? false
        // The mark goes down first: whatever happens next, nothing starts this instance as a primary.
        try await recordFenced(i, lastKnownLSN: last, reachable: reachable)
        do {
            try await driver.setFenceMarker(i, reason: "fenced by failoverd run \(ctx.runID)")
            // Stop it when it runs, and also when the probe failed (running but unanswering): stop is a no-op
            // for a server that is not there.
            if s?.running ?? true {
                do { try await driver.stop(i, mode: .fast) } catch { try await driver.stop(i, mode: .immediate) }
            }
        } catch {
            // failoverd cannot act on it. Proven unable to write (stopped), the failure is only a failure;
            // otherwise it may be a primary running behind a cut link, and only a fence outside failoverd helps.
            if s?.isProvenNotWritable == true { throw error }
            return try await fenceUnreachable(i, seen: s, error: error, lastKnownLSN: last)
        }
        // A primary that died answers no SQL: read how far its WAL really got.
        if !reachable, let end = try? await driver.endOfWAL(i) {
            last = max(last ?? end, end)
            try await recordFenced(i, lastKnownLSN: last, reachable: reachable)
        }
        return FenceEvidence(
            lastKnownLSN: last, reachable: reachable, wasRunning: s?.running ?? false,
            lastKnownFrom: reachable ? "pg_current_wal_lsn()" : "pg_waldump of its pg_wal")
    }

    /// Marks `i` fenced in the journal, with what is known of its WAL.
    private func recordFenced(_ i: Instance, lastKnownLSN: LSN?, reachable: Bool) async throws {
        try await Blocking.run { [ctx, step] in
            try ctx.journal.recordFenced(
                instance: i.name, site: step.site, lastKnownLSN: lastKnownLSN, reachable: reachable, run: ctx.runID, epoch: ctx.epoch)
        }
    }
}

extension StepRunner {
    /// Fences an old primary failoverd cannot reach: by the plan's fencing hook (its exit status decides),
    /// or on the operator's word (--assume-fenced SITE), which stands whether or not a hook exists and
    /// whatever the hook did (a lost data center takes its fencing device with it); otherwise refuses, since
    /// promoting could make two primaries. Every outcome of the hook, and the override, is audited.
    func fenceUnreachable(_ i: Instance, seen: InstanceStatus?, error: any Error, lastKnownLSN: LSN?) async throws -> FenceEvidence {
        let site = step.site
        let what = seen?.seen ?? "unreadable (\(error))"
        var evidence = FenceEvidence(
            lastKnownLSN: lastKnownLSN, reachable: false, wasRunning: seen?.running ?? true, lastKnownFrom: "unknown: unreachable")
        let assumed = ctx.assumeFenced.contains(site)
        var hookFailure: String?
        if let hook = ctx.plan.fencing, hook.command.first != nil {
            let outcome = try await runFencingHook(hook, site: site, instance: i, seen: what)
            if let shown = outcome.fencedBy {
                evidence.fencedBy = shown
                return evidence
            }
            hookFailure = outcome.failure
            if !assumed {
                throw FailoverError.refused(
                    "failover refused: the old primary \(i.name) (site \(site)) cannot be reached (\(what)) and \(outcome.failure ?? "the fencing hook failed"). Nothing was promoted. Fence the site by other means, then resume with --assume-fenced \(site)."
                )
            }
        }
        if assumed {
            var details = ["site": site, "instance": i.name, "seen": what]
            if let hookFailure { details["hook"] = hookFailure }
            try await Blocking.run { [ctx, details] in
                try AuditLog(journal: ctx.journal).append(kind: .assumedFenced, run: ctx.runID, details: details)
            }
            evidence.fencedBy = "assumed by the operator (--assume-fenced \(site))" + (hookFailure == nil ? "" : " after \(hookFailure!)")
            return evidence
        }
        throw FailoverError.refused(
            "failover refused: the old primary \(i.name) (site \(site)) cannot be reached: \(what). failoverd can neither stop it nor prove it stopped, and promoting now could make two primaries. Fence site \(site) outside failoverd (power, network, load balancer) and resume with --assume-fenced \(site), or give the plan a fencing hook ($.fencing.command)."
        )
    }

    /// Runs the plan's fencing hook for `instance` of `site`, as root with a clean environment, after proving
    /// it root's own (``TrustedPath``) on the descriptor that then runs. Audits what happened: its exit
    /// status, its timeout, or why it could not be run. Returns how it fenced, or why it did not.
    ///
    /// - Throws: ``FailoverError`` (invalid input, exit 2) when the hook is not root's own: it does not run.
    func runFencingHook(_ hook: FencingHook, site: String, instance i: Instance, seen: String) async throws -> (
        fencedBy: String?, failure: String?
    ) {
        let executable = hook.command[0]
        let arguments = Array(hook.command.dropFirst()) + [site, i.name]
        let shown = ([executable] + arguments).map(CommandRunner.displayQuoted).joined(separator: " ")
        var details = ["site": site, "instance": i.name, "command": shown, "seen": seen]
        let fd: Int32
        do {
            fd = try TrustedPath.openExecutable(executable)
        } catch let error as FailoverError {
            details["refused"] = error.message
            try await auditHook(details)
            throw FailoverError.invalid(
                "the fencing hook is not run: \(error.message). failoverd runs it as root, so it and every directory above it must belong to root and be writable by no one else ($.fencing.command[0])."
            )
        }
        defer { close(fd) }
        let result: CommandResult
        do {
            result = try await CommandRunner(user: nil, defaultTimeout: ctx.timeout).run(opened: fd, shownAs: executable, arguments)
        } catch {
            // It did not finish in time (and was killed), or could not be started: its effect is unknown.
            let reason = (error as? FailoverError)?.message ?? "\(error)"
            details["exitCode"] = "none"
            details["error"] = reason
            try await auditHook(details)
            return (nil, "the fencing hook `\(shown)` did not complete: \(reason)")
        }
        details["exitCode"] = String(result.exitCode)
        try await auditHook(details)
        guard result.succeeded else {
            return (
                nil,
                "the fencing hook `\(shown)` failed with exit code \(result.exitCode): \(result.outputTail.isEmpty ? "(no output)" : result.outputTail)"
            )
        }
        return ("fencing hook `\(shown)` (exit 0)", nil)
    }

    /// Appends the `fencing-hook` audit event with `details` (a journal commit, off the cooperative pool).
    private func auditHook(_ details: [String: String]) async throws {
        try await Blocking.run { [ctx] in try AuditLog(journal: ctx.journal).append(kind: .fencingHook, run: ctx.runID, details: details)
        }
    }
}
