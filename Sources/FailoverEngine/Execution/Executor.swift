import Crypto
import Foundation
import Logging

/// Carries out a plan's steps with every step journaled before and after its side effect, so a run killed
/// at any moment and resumed ends in the same state as an uninterrupted one.
public actor Executor {
    let options: RunOptions
    let journal: Journal
    let lock: RunLock
    let drivers: any DriverProvider
    let clock: ExecutorClock
    let logger: Logger
    /// What this executor is doing: one run (or resume) at a time per executor.
    private enum State {
        case idle
        case executing(runID: String)
    }
    private var state = State.idle

    /// An executor over its dependencies: the journal, the drivers, the clock and the logger are the
    /// caller's, so tests run it in process against a scripted driver and a journal they inspect.
    public init(journal: Journal, drivers: any DriverProvider, clock: ExecutorClock = .continuous, logger: Logger, options: RunOptions) {
        self.options = options
        self.journal = journal
        self.lock = RunLock(journal: journal)
        self.drivers = drivers
        self.clock = clock
        self.logger = logger
    }

    /// An executor over the options' state directory, its journal and the standard drivers.
    public init(options: RunOptions) throws {
        let journal: Journal
        do {
            journal = try Journal(stateDirectory: options.stateDirectory, auditSigner: options.auditSigner)
        } catch {
            throw FailoverError.invalid("cannot open the journal in state directory \(options.stateDirectory): \(error)")
        }
        self.init(
            journal: journal,
            drivers: StandardDrivers(stateDirectory: options.stateDirectory, simulate: options.simulate, logger: options.logger),
            logger: options.logger, options: options)
    }

    /// Starts a new run of `plan`.
    ///
    /// Refuses (exit 3) when an earlier run is unfinished, when the plan's declared roles disagree with the
    /// recorded or observed ones, or when the state machine refuses a transition; exit 4 when another run
    /// holds the lock.
    public func run(_ plan: Plan) async throws -> RunOutcome {
        let runID = Self.makeRunID()
        let holder = try lock.acquire(runID: runID)
        do {
            if let unfinished = try journal.unfinishedRun() {
                throw FailoverError.refused(
                    "run \(unfinished.id) of plan \"\(unfinished.planName)\" is unfinished (\(unfinished.outcome)); continue it with: failoverd resume \(unfinished.id) --state \(options.stateDirectory)  (or give it up with: failoverd abandon \(unfinished.id) --state \(options.stateDirectory))"
                )
            }
            let kind = drivers.kind(plan: plan)
            if let last = try journal.lastRun(), DriverKind(rawValue: last.driver) != kind {
                throw FailoverError.invalid(
                    "state directory \(options.stateDirectory) holds \(last.driver) runs; a \(kind) run there would mix rehearsal and real roles. Use another --state for it."
                )
            }
            let recorded = try journal.recordedRoles()
            for site in plan.sites {
                if let r = recorded[site.name], r != site.role {
                    throw FailoverError.refused(
                        "site \"\(site.name)\": the plan declares \(site.role.rawValue) but the journal records \(r.rawValue) (see `failoverd status --state \(options.stateDirectory)`). Update the site's role in the plan to \(r.rawValue)."
                    )
                }
            }
            let steps: [Step]
            switch Planner(plan: plan).steps() {
            case .success(let s): steps = s
            case .failure(let refusal): throw FailoverError.refused(refusal.message)
            }
            let (driver, sites) = try makeDrivers(plan: plan, kind: kind)
            if kind != .simulated { try HostAccess.check(plan) }
            try await Preflight(plan: plan, driver: driver, sites: sites).check()
            try await LostSlots.preflight(plan: plan, driver: driver)
            await writeOwedFenceMarkers(plan: plan, driver: driver, sites: sites)
            let unrecorded = Dictionary(uniqueKeysWithValues: plan.sites.filter { recorded[$0.name] == nil }.map { ($0.name, $0.role) })
            if !unrecorded.isEmpty { try journal.recordRoles(unrecorded, run: nil, epoch: holder.epoch) }
            let json = String(decoding: plan.canonicalJSON(), as: UTF8.self)
            let record = RunRecord(
                id: runID, planName: plan.name, planJSON: json, planSHA256: AuditLog.sha256(json),
                driver: kind.rawValue, isDrill: options.isDrill,
                allowDataLoss: options.allowDataLoss, actor: AuditLog.actor, stepCount: steps.count, outcome: .running, error: nil,
                startedAt: Journal.now(), endedAt: nil)
            try journal.createRun(record, steps: steps, epoch: holder.epoch)
            try auditAssumeFenced(plan: plan, run: runID, scope: "this run")
            try auditSkipLostCapture(run: runID, scope: "this run")
            logger.info("run started", metadata: ["run": "\(runID)", "plan": "\(plan.name)", "steps": "\(steps.count)"])
            return try await execute(runID: runID, plan: plan, driver: driver, sites: sites, holder: holder)
        } catch let error as FailoverError where error.code != .stepFailed {
            _ = try? AuditLog(journal: journal).append(kind: "refusal", run: runID, details: ["reason": error.message])
            try? lock.release(holder)
            throw error
        } catch {
            try? lock.release(holder)
            throw error
        }
    }

    /// Continues an unfinished run (the latest one when `runID` is nil): done steps never run again;
    /// an in-doubt step runs its check first.
    public func resume(runID: String?) async throws -> RunOutcome {
        let holder0 = try lock.acquire(runID: runID ?? "resume")
        do {
            let found: RunRecord?
            if let runID {
                found = try journal.run(runID)
            } else {
                // The latest unfinished run; else the latest run when a refusal closed it: refused at a step
                // that names the override it lacks (--assume-fenced SITE, --allow-data-loss), it continues
                // with that override from the step that refused.
                found = try journal.unfinishedRun() ?? journal.lastRun().flatMap { $0.outcome == .refused ? $0 : nil }
            }
            guard let run = found else {
                throw FailoverError.invalid(
                    runID.map { "no run \($0) in state directory \(options.stateDirectory); list runs with `failoverd status`" }
                        ?? "no unfinished run in state directory \(options.stateDirectory); nothing to resume")
            }
            guard run.outcome != .succeeded, run.outcome != .abandoned else {
                throw FailoverError.invalid("run \(run.id) is \(run.outcome); there is nothing to resume")
            }
            // What a run saw and proved is stale once another run has acted on the same servers.
            if let later = try journal.runStarted(after: run.id) {
                throw FailoverError.refused(
                    "run \(run.id) cannot be resumed: run \(later.id) (plan \"\(later.planName)\", \(later.outcome)) started after it, and the servers may have changed since. Start a new run from the topology as it is now."
                )
            }
            let holder = try lock.reassign(holder0, to: run.id)
            let plan = try run.plan()
            guard let kind = DriverKind(rawValue: run.driver) else {
                throw FailoverError.invalid(
                    "run \(run.id) was journaled with driver \(run.driver), which this failoverd does not know (it knows \(DriverKind.allCases.map(\.rawValue).joined(separator: ", "))); resume it with the failoverd that started it."
                )
            }
            let (driver, sites) = try makeDrivers(plan: plan, kind: kind)
            try journal.reopenRun(run.id)
            var details = ["epoch": String(holder.epoch), "previousOutcome": run.outcome.rawValue]
            if options.allowDataLoss && !run.allowDataLoss { details["override"] = "allow-data-loss" }
            try AuditLog(journal: journal).append(kind: "run-resume", run: run.id, details: details)
            if options.allowDataLoss && !run.allowDataLoss {
                try AuditLog(journal: journal).append(
                    kind: "override", run: run.id, details: ["override": "allow-data-loss", "scope": "this resume"])
            }
            try auditAssumeFenced(plan: plan, run: run.id, scope: "this resume")
            try auditSkipLostCapture(run: run.id, scope: "this resume")
            logger.info("resuming run", metadata: ["run": "\(run.id)", "plan": "\(plan.name)"])
            return try await execute(
                runID: run.id, plan: plan, driver: driver, sites: sites, holder: holder,
                allowDataLoss: options.allowDataLoss || run.allowDataLoss)
        } catch {
            try? lock.release(holder0)
            throw error
        }
    }

    /// Records the plan's declared roles as the journal's, after checking them against what failoverd
    /// observes: the way out after an abandoned run left the journal and the servers disagreeing.
    ///
    /// Refuses (exit 3) while a run is unfinished, or when an observation contradicts a declared role.
    /// - Returns: the sites whose recorded role changed, with the old and new role.
    public func adopt(_ plan: Plan) async throws -> [(site: String, from: Role?, to: Role)] {
        let holder = try lock.acquire(runID: "adopt")
        defer { try? lock.release(holder) }
        if let unfinished = try journal.unfinishedRun() {
            throw FailoverError.refused(
                "run \(unfinished.id) is unfinished; resume it (failoverd resume \(unfinished.id) --state \(options.stateDirectory)) or abandon it before adopting roles"
            )
        }
        let kind = drivers.kind(plan: plan)
        if let last = try journal.lastRun(), DriverKind(rawValue: last.driver) != kind {
            throw FailoverError.invalid("state directory \(options.stateDirectory) holds \(last.driver) runs; adopt with the same driver")
        }
        let (driver, sites) = try makeDrivers(plan: plan, kind: kind)
        do {
            try await Preflight(plan: plan, driver: driver, sites: sites).check()
        } catch let error as FailoverError {
            _ = try? AuditLog(journal: journal).append(kind: "refusal", details: ["reason": error.message, "verb": "adopt"])
            throw error
        }
        let recorded = try journal.recordedRoles()
        let changes = plan.sites.filter { recorded[$0.name] != $0.role }.map { (site: $0.name, from: recorded[$0.name], to: $0.role) }
        try journal.recordRoles(Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, $0.role) }), run: nil, epoch: holder.epoch)
        var details = ["plan": plan.name, "epoch": String(holder.epoch)]
        for c in changes { details["role." + c.site] = "\(c.from?.rawValue ?? "none recorded") -> \(c.to.rawValue)" }
        try AuditLog(journal: journal).append(kind: "adopt", details: details)
        return changes
    }

    /// Marks an unfinished run abandoned, so a new run may start; the audit log records who and why.
    public func abandon(runID: String, reason: String) throws {
        let holder = try lock.acquire(runID: runID)
        defer { try? lock.release(holder) }
        guard let run = try journal.run(runID), run.outcome != .succeeded, run.outcome != .abandoned else {
            throw FailoverError.invalid("run \(runID) is not an unfinished run in \(options.stateDirectory)")
        }
        try journal.finishRun(runID, outcome: .abandoned, error: reason, epoch: holder.epoch)
    }

    /// The instance driver and the site drivers of a run of `plan` journaled with `kind`; refuses when a
    /// site-level site has no site driver.
    func makeDrivers(plan: Plan, kind: DriverKind) throws -> (any InstanceDriver, [String: any SiteDriver]) {
        let driver = try drivers.make(plan: plan, kind: kind)
        let sites = try drivers.siteDrivers(plan: plan, kind: kind)
        try DriverRegistry.requireSiteDrivers(plan, sites)
        return (driver, sites)
    }

    func execute(
        runID: String, plan: Plan, driver: any InstanceDriver, sites: [String: any SiteDriver], holder: RunLock.Holder,
        allowDataLoss: Bool? = nil
    ) async throws -> RunOutcome {
        if case .executing(let other) = state {
            throw FailoverError.invalid("this executor is already running \(other); one run at a time")
        }
        state = .executing(runID: runID)
        defer { state = .idle }
        let started = clock.seconds()
        let records = try journal.steps(of: runID)
        let steps = records.map(\.step)
        var evidence: [Int: [String: String]] = [:]
        for r in records where r.status.isFinished { evidence[r.step.number] = r.evidence }
        var done = 0
        var satisfied = 0
        let heartbeat = Task { [lock] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(lock.leaseSeconds / 3))
                try? lock.renew(holder)
            }
        }
        defer { heartbeat.cancel() }
        // With policy.captureLostRows, failoverd's logical slots advance while the run is active.
        let keeper =
            plan.policy.captureLostRows == true
            ? Task { [logger] in await LostSlotKeeper(plan: plan, driver: driver, logger: logger).keep() } : nil
        defer { keeper?.cancel() }
        func progress(_ step: Step, _ status: String) {
            options.onProgress?(StepProgress(step: step, status: status, total: steps.count, elapsed: seconds(since: started)))
        }
        var lastTransition = records.last { $0.status.isFinished }?.step.transition
        for record in records where !record.status.isFinished {
            let step = record.step
            if let last = lastTransition, last != step.transition, options.dwellBetweenTransitions > 0 {
                // A drill's measurement window between two topologies, not a wait for a condition.
                try await Task.sleep(for: .milliseconds(Int64(options.dwellBetweenTransitions * 1000)))
            }
            lastTransition = step.transition
            progress(step, "begin")
            let ctx = StepContext(
                plan: plan, driver: driver, journal: journal, runID: runID, epoch: holder.epoch,
                allowDataLoss: allowDataLoss ?? options.allowDataLoss, logger: logger, evidence: evidence, steps: steps,
                pollInterval: drivers.pollInterval(driver), sites: sites, assumeFenced: Set(options.assumeFenced),
                skipLostCapture: options.skipLostCapture, midpoint: { [self] in crashIfAsked(step.number, .mid) })
            let runner = StepRunner(ctx: ctx, step: step, inDoubt: record.attempts > 0)
            do {
                if try await runner.check() {
                    // The fault switch fires at satisfied steps too (before and after the record), so every
                    // step number is a crash point.
                    crashIfAsked(step.number, .before)
                    try journal.recordStep(run: runID, step: step, status: .satisfied, epoch: holder.epoch)
                    crashIfAsked(step.number, .after)
                    satisfied += 1
                    progress(step, "satisfied")
                    continue
                }
                try journal.recordStep(run: runID, step: step, status: .started, epoch: holder.epoch)
                progress(step, "started")
                crashIfAsked(step.number, .before)
                if step.destructive || step.kind.changesServer { try lock.verify(holder) }
                let e = try await runner.act()
                crashIfAsked(step.number, .mid)
                crashIfAsked(step.number, .after)
                try await runner.verify()
                let fields = e.fields
                try journal.recordStep(run: runID, step: step, status: .done, epoch: holder.epoch, evidence: fields)
                evidence[step.number] = fields
                done += 1
                progress(step, "done")
            } catch {
                let failure = (error as? FailoverError) ?? FailoverError.failed("\(error)")
                let message = "step \(step.number) (\(step.summary)) failed: \(failure.message)"
                try? journal.recordStep(run: runID, step: step, status: .failed, epoch: holder.epoch, error: failure.message)
                progress(step, "failed")
                // A refusal before any step acted on a server changed nothing: the run is closed as refused.
                // Once one acted (this one included, when its act began), the run stays resumable whatever
                // the cause, and the message says which steps changed servers.
                let records = (try? journal.steps(of: runID)) ?? []
                // A refusal is raised before its own step acts; an earlier attempt of it (before a crash or
                // failure) may have acted.
                let changed = records.filter { r in
                    guard r.step.destructive || r.step.kind.changesServer else { return false }
                    if r.status == .done { return true }
                    return r.step.number == step.number ? r.attempts > 1 || failure.code != .refused : r.attempts > 0
                }
                let outcome: RunState = failure.code == .refused && changed.isEmpty ? .refused : .failed
                try? journal.finishRun(runID, outcome: outcome, error: message, epoch: holder.epoch)
                try? lock.release(holder)
                let hint: String
                if outcome == .refused {
                    hint = "\nNothing was changed."
                } else {
                    let list = changed.map { "\($0.step.number) (\($0.step.summary))" }.joined(separator: ", ")
                    hint =
                        (list.isEmpty ? "" : "\nSteps that changed servers: \(list).")
                        + "\nThe run is resumable: failoverd resume \(runID) --state \(options.stateDirectory)"
                }
                throw FailoverError(failure.code, message + hint)
            }
        }
        let secs = seconds(since: started)
        try journal.finishRun(runID, outcome: .succeeded, details: ["seconds": String(format: "%.3f", secs)], epoch: holder.epoch)
        try lock.release(holder)
        return RunOutcome(
            runID: runID, outcome: "succeeded", stepsDone: done, stepsSatisfied: satisfied, stepCount: steps.count, seconds: secs)
    }

    nonisolated func crashIfAsked(_ step: Int, _ phase: CrashPoint.Phase) {
        guard let c = options.crashAt, c.step == step, c.phase == phase else { return }
        logger.warning("fault switch: killing failoverd", metadata: ["step": "\(step)", "phase": "\(phase.rawValue)"])
        kill(getpid(), SIGKILL)
    }

    func seconds(since start: Double) -> Double { clock.seconds() - start }

    static func makeRunID() -> String {
        let f = Date().formatted(
            .iso8601.year().month().day().dateSeparator(.omitted).time(includingFractionalSeconds: false).timeSeparator(.omitted))
        let stamp = f.replacingOccurrences(of: "T", with: "-").replacingOccurrences(of: "Z", with: "")
        return "r-\(stamp)-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
    }
}

/// Time as the executor reads it for durations: monotonic seconds from an arbitrary origin.
public struct ExecutorClock: Sendable {
    /// The current reading, in seconds.
    public var seconds: @Sendable () -> Double

    /// Creates a clock from a reading.
    public init(seconds: @escaping @Sendable () -> Double) { self.seconds = seconds }

    /// The process's monotonic clock.
    public static let continuous: ExecutorClock = {
        let origin = ContinuousClock.now
        return ExecutorClock {
            let d = ContinuousClock.now - origin
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
    }()
}

extension Executor {
    /// Writes --skip-lost-capture to the audit log: the operator lets former primaries be repaired without a
    /// capture of what they committed after the fork.
    func auditSkipLostCapture(run: String, scope: String) throws {
        guard options.skipLostCapture else { return }
        try AuditLog(journal: journal).append(
            kind: "override", run: run, details: ["override": "skip-lost-capture", "scope": scope])
    }

    /// Refuses --assume-fenced naming a site the plan lacks (invalid input), and writes the override to the
    /// audit log: the operator, not failoverd, vouches that the site's servers cannot take writes.
    func auditAssumeFenced(plan: Plan, run: String, scope: String) throws {
        for site in options.assumeFenced where plan.site(named: site) == nil {
            throw FailoverError.invalid(
                "--assume-fenced \(site): plan \"\(plan.name)\" has no such site; sites: \(plan.sites.map(\.name).joined(separator: ", "))")
        }
        guard !options.assumeFenced.isEmpty else { return }
        try AuditLog(journal: journal).append(
            kind: "override", run: run,
            details: ["override": "assume-fenced", "sites": options.assumeFenced.joined(separator: ","), "scope": scope])
    }
}

extension Executor {
    /// Writes the fence marker of every instance the journal holds fenced that is seen stopped now: one
    /// fenced while it could not be reached (a partition, the plan's hook) got no marker then, and must not
    /// start as a primary once its host answers again. A host still out of reach is left for a later run.
    ///
    /// A managed site owes none: its fence is the state its own driver set (Patroni's `standby_cluster`,
    /// which the fence writes or refuses), and failoverd never writes into the data directory of a server
    /// another manager runs; its members are seen through its driver only, never as "no postmaster here".
    func writeOwedFenceMarkers(plan: Plan, driver: any InstanceDriver, sites: [String: any SiteDriver]) async {
        let observer = InstanceObserver(plan: plan, driver: driver, sites: sites)
        for (site, instance) in plan.allInstances where (try? journal.isFenced(instance: instance.name)) == true {
            guard observer.managed(site) == nil, let status = try? await observer.status(of: instance), !status.running else { continue }
            if (try? await driver.setFenceMarker(instance, reason: "fenced by failoverd; marker written once the host answered")) != nil {
                logger.info("fence marker written", metadata: ["instance": "\(instance.name)"])
            }
        }
    }
}
