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
    /// The cluster's run lock in etcd while a coordinated run (or resume, adopt, abandon) holds it.
    var coordinator: Coordinator?

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
        return try await coordinated(plan, runID: runID, wait: false) { try await self.runHoldingLocks(plan, runID: runID) }
    }

    func runHoldingLocks(_ plan: Plan, runID: String) async throws -> RunOutcome {
        let holder = try await acquireLocal(runID: runID)
        do {
            if let unfinished = try await Blocking.run({ [journal] in try journal.unfinishedRun() }) {
                throw FailoverError.refused(
                    "run \(unfinished.id) of plan \"\(unfinished.planName)\" is unfinished (\(unfinished.outcome)); continue it with: failoverd resume \(unfinished.id) --state \(options.stateDirectory)  (or give it up with: failoverd abandon \(unfinished.id) --state \(options.stateDirectory))"
                )
            }
            let kind = drivers.kind(plan: plan)
            if let last = try await Blocking.run({ [journal] in try journal.lastRun() }), DriverKind(rawValue: last.driver) != kind {
                throw FailoverError.invalid(
                    "state directory \(options.stateDirectory) holds \(last.driver) runs; a \(kind) run there would mix rehearsal and real roles. Use another --state for it."
                )
            }
            let recorded = try await Blocking.run { [journal] in try journal.recordedRoles() }
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
            if !unrecorded.isEmpty {
                try await Blocking.run { [journal] in try journal.recordRoles(unrecorded, run: nil, epoch: holder.epoch) }
            }
            let json = String(decoding: plan.canonicalJSON(), as: UTF8.self)
            let record = RunRecord(
                id: runID, planName: plan.name, planJSON: json, planSHA256: AuditLog.sha256(json),
                driver: kind.rawValue, isDrill: options.isDrill,
                allowDataLoss: options.allowDataLoss, actor: AuditLog.actor, stepCount: steps.count, outcome: .running, error: nil,
                startedAt: Journal.now(), endedAt: nil)
            try await Blocking.run { [journal] in try journal.createRun(record, steps: steps, epoch: holder.epoch) }
            try await auditAssumeFenced(plan: plan, run: runID, scope: "this run")
            try await auditSkipLostCapture(run: runID, scope: "this run")
            logger.info("run started", metadata: ["run": "\(runID)", "plan": "\(plan.name)", "steps": "\(steps.count)"])
            let journaled = try await Blocking.run { [journal] in try JournaledSteps(run: runID, journal: journal) }
            return try await execute(runID: runID, plan: plan, driver: driver, sites: sites, holder: holder, journaled: journaled)
        } catch let error as FailoverError where error.code != .stepFailed {
            _ = try? await Blocking.run { [journal] in
                try AuditLog(journal: journal).append(kind: .refusal, run: runID, details: ["reason": error.message])
            }
            try? await Blocking.run { [lock] in try lock.release(holder) }
            throw error
        } catch {
            try? await Blocking.run { [lock] in try lock.release(holder) }
            throw error
        }
    }

    /// Continues an unfinished run (the latest one when `runID` is nil): done steps never run again;
    /// an in-doubt step runs its check first.
    ///
    /// A coordinated run (its plan has `coordination`, or `plan` is given: `failoverd resume --plan PLAN` on
    /// any machine, with an empty state directory if need be) is resumed under the cluster's run lock in etcd:
    /// after waiting at most the lease for a dead holder's lease to expire, the run's records are copied from
    /// etcd into this journal, and the run continues from them.
    public func resume(runID: String?, plan: Plan? = nil) async throws -> RunOutcome {
        var coordinatedPlan = plan
        if let plan, plan.coordination == nil {
            throw FailoverError.invalid(
                "--plan \(plan.name): the plan has no \"coordination\", so there is nothing to read from etcd; resume a local run with `failoverd resume [RUN] --state DIR`."
            )
        }
        if coordinatedPlan == nil {
            let local = try await Blocking.run { [journal] in
                try runID.map { try journal.run($0) } ?? journal.unfinishedRun() ?? journal.lastRun()
            }
            if let p = try? local?.plan(), p.coordination != nil { coordinatedPlan = p }
        }
        guard let coordinatedPlan else { return try await resumeHoldingLocks(runID: runID) }
        return try await coordinated(coordinatedPlan, runID: runID ?? "resume", wait: true) {
            try await self.resumeHoldingLocks(runID: runID)
        }
    }

    func resumeHoldingLocks(runID: String?) async throws -> RunOutcome {
        let holder0 = try await acquireLocal(runID: runID ?? "resume")
        do {
            let found = try await Blocking.run { [journal] () throws -> RunRecord? in
                if let runID { return try journal.run(runID) }
                // The latest unfinished run; else the latest run when a refusal closed it: refused at a step
                // that names the override it lacks (--assume-fenced SITE, --allow-data-loss), it continues
                // with that override from the step that refused.
                return try journal.unfinishedRun() ?? journal.lastRun().flatMap { $0.outcome == .refused ? $0 : nil }
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
            if let later = try await Blocking.run({ [journal] in try journal.runStarted(after: run.id) }) {
                throw FailoverError.refused(
                    "run \(run.id) cannot be resumed: run \(later.id) (plan \"\(later.planName)\", \(later.outcome)) started after it, and the servers may have changed since. Start a new run from the topology as it is now."
                )
            }
            let holder = try await Blocking.run { [lock] in try lock.reassign(holder0, to: run.id) }
            journal.mirror(run: run.id)
            let plan = try run.plan()
            guard let kind = DriverKind(rawValue: run.driver) else {
                throw FailoverError.invalid(
                    "run \(run.id) was journaled with driver \(run.driver), which this failoverd does not know (it knows \(DriverKind.allCases.map(\.rawValue).joined(separator: ", "))); resume it with the failoverd that started it."
                )
            }
            let (driver, sites) = try makeDrivers(plan: plan, kind: kind)
            // Evidence leaves the journal here, decoded once, before the run is reopened: a step whose evidence
            // does not decode stops the resume with the journal as it was.
            let journaled = try await Blocking.run { [journal] in try JournaledSteps(run: run.id, journal: journal) }
            var details = ["epoch": String(holder.epoch), "previousOutcome": run.outcome.rawValue]
            let overridden = options.allowDataLoss && !run.allowDataLoss
            if overridden { details["override"] = "allow-data-loss" }
            try await Blocking.run { [journal, details] in
                try journal.reopenRun(run.id)
                try AuditLog(journal: journal).append(kind: .runResume, run: run.id, details: details)
                if overridden {
                    try AuditLog(journal: journal).append(
                        kind: .override, run: run.id, details: ["override": "allow-data-loss", "scope": "this resume"])
                }
            }
            try await auditAssumeFenced(plan: plan, run: run.id, scope: "this resume")
            try await auditSkipLostCapture(run: run.id, scope: "this resume")
            logger.info("resuming run", metadata: ["run": "\(run.id)", "plan": "\(plan.name)"])
            return try await execute(
                runID: run.id, plan: plan, driver: driver, sites: sites, holder: holder, journaled: journaled,
                allowDataLoss: options.allowDataLoss || run.allowDataLoss)
        } catch {
            try? await Blocking.run { [lock] in try lock.release(holder0) }
            throw error
        }
    }

    /// Records the plan's declared roles as the journal's, after checking them against what failoverd
    /// observes: the way out after an abandoned run left the journal and the servers disagreeing.
    ///
    /// Refuses (exit 3) while a run is unfinished, or when an observation contradicts a declared role.
    /// - Returns: the sites whose recorded role changed, with the old and new role.
    public func adopt(_ plan: Plan) async throws -> [(site: String, from: Role?, to: Role)] {
        try await coordinated(plan, runID: "adopt", wait: false) { try await self.adoptHoldingLocks(plan) }
    }

    func adoptHoldingLocks(_ plan: Plan) async throws -> [(site: String, from: Role?, to: Role)] {
        let holder = try await acquireLocal(runID: "adopt")
        do {
            let value = try await adopt(plan, holder: holder)
            try? await Blocking.run { [lock] in try lock.release(holder) }
            return value
        } catch {
            try? await Blocking.run { [lock] in try lock.release(holder) }
            throw error
        }
    }

    private func adopt(_ plan: Plan, holder: RunLock.Holder) async throws -> [(site: String, from: Role?, to: Role)] {
        if let unfinished = try await Blocking.run({ [journal] in try journal.unfinishedRun() }) {
            throw FailoverError.refused(
                "run \(unfinished.id) is unfinished; resume it (failoverd resume \(unfinished.id) --state \(options.stateDirectory)) or abandon it before adopting roles"
            )
        }
        let kind = drivers.kind(plan: plan)
        if let last = try await Blocking.run({ [journal] in try journal.lastRun() }), DriverKind(rawValue: last.driver) != kind {
            throw FailoverError.invalid(
                "state directory \(options.stateDirectory) holds \(last.driver) runs; adopt with the same driver")
        }
        let (driver, sites) = try makeDrivers(plan: plan, kind: kind)
        do {
            try await Preflight(plan: plan, driver: driver, sites: sites).check()
        } catch let error as FailoverError {
            _ = try? await Blocking.run { [journal] in
                try AuditLog(journal: journal).append(kind: .refusal, details: ["reason": error.message, "verb": "adopt"])
            }
            throw error
        }
        let recorded = try await Blocking.run { [journal] in try journal.recordedRoles() }
        let changes = plan.sites.filter { recorded[$0.name] != $0.role }.map {
            (site: $0.name, from: recorded[$0.name], to: $0.role)
        }
        var details = ["plan": plan.name, "epoch": String(holder.epoch)]
        for c in changes { details["role." + c.site] = "\(c.from?.rawValue ?? "none recorded") -> \(c.to.rawValue)" }
        try await Blocking.run { [journal, details] in
            try journal.recordRoles(
                Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, $0.role) }), run: nil, epoch: holder.epoch)
            try AuditLog(journal: journal).append(kind: .adopt, details: details)
        }
        return changes
    }

    /// Marks an unfinished run abandoned, so a new run may start; the audit log records who and why.
    ///
    /// With `plan` (`failoverd abandon RUN --plan PLAN`, a coordinated plan): from any machine, whatever its
    /// state directory holds. The cluster's run lock is taken in etcd (waiting at most the lease for a dead
    /// holder's lease to expire, as `resume --plan` does), the run's records are copied from etcd, and the
    /// abandonment is written through etcd like every record of the run.
    public func abandon(runID: String, reason: String, plan: Plan? = nil) async throws {
        if let plan, plan.coordination == nil {
            throw FailoverError.invalid(
                "--plan \(plan.name): the plan has no \"coordination\", so there is no run to read from etcd; abandon a local run with `failoverd abandon RUN --state DIR`."
            )
        }
        let local = try await Blocking.run({ [journal] in try? journal.run(runID)?.plan() })
        if let p = plan ?? local, p.coordination != nil {
            return try await coordinated(p, runID: "abandon", wait: plan != nil) {
                self.journal.mirror(run: runID)
                try await self.abandonHoldingLocks(runID: runID, reason: reason)
            }
        }
        try await abandonHoldingLocks(runID: runID, reason: reason)
    }

    func abandonHoldingLocks(runID: String, reason: String) async throws {
        let holder = try await acquireLocal(runID: runID)
        do {
            try await Blocking.run { [journal, options] in
                guard let run = try journal.run(runID), run.outcome != .succeeded, run.outcome != .abandoned else {
                    throw FailoverError.invalid("run \(runID) is not an unfinished run in \(options.stateDirectory)")
                }
                try journal.finishRun(runID, outcome: .abandoned, error: reason, epoch: holder.epoch)
            }
            try? await Blocking.run { [lock] in try lock.release(holder) }
        } catch {
            try? await Blocking.run { [lock] in try lock.release(holder) }
            throw error
        }
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
        journaled: JournaledSteps, allowDataLoss: Bool? = nil
    ) async throws -> RunOutcome {
        if case .executing(let other) = state {
            throw FailoverError.invalid("this executor is already running \(other); one run at a time")
        }
        state = .executing(runID: runID)
        defer { state = .idle }
        let started = clock.seconds()
        let records = journaled.records
        let steps = records.map(\.step)
        var evidence = journaled.evidence
        var done = 0
        var satisfied = 0
        let heartbeat = Task { [lock] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(lock.leaseSeconds / 3))
                try? await Blocking.run { try lock.renew(holder) }
            }
        }
        // With policy.captureLostRows, failoverd's logical slots advance while the run is active.
        let keeper =
            plan.policy.captureLostRows == true
            ? Task { [logger] in await LostSlotKeeper(plan: plan, driver: driver, logger: logger).keep() } : nil
        // Both are ended and awaited before the run returns: a keeper still inside libpq when the process
        // exits crashed failoverd in OpenSSL's exit-time cleanup (signal 11 after a successful run).
        return try await endingWhenDone([heartbeat] + (keeper.map { [$0] } ?? [])) {
            func progress(_ step: Step, _ phase: StepProgress.Phase) async {
                await options.onProgress?(StepProgress(step: step, phase: phase, total: steps.count, elapsed: seconds(since: started)))
            }
            var lastTransition = records.last { $0.status.isFinished }?.step.transition
            for record in records where !record.status.isFinished {
                let step = record.step
                if let last = lastTransition, last != step.transition, options.dwellBetweenTransitions > 0 {
                    // A drill's measurement window between two topologies, not a wait for a condition.
                    try await Task.sleep(for: .milliseconds(Int64(options.dwellBetweenTransitions * 1000)))
                }
                lastTransition = step.transition
                await progress(step, .begin)
                let ctx = StepContext(
                    plan: plan, driver: driver, journal: journal, runID: runID, epoch: holder.epoch,
                    allowDataLoss: allowDataLoss ?? options.allowDataLoss, logger: logger, evidence: evidence, steps: steps,
                    pollInterval: drivers.pollInterval(driver), sites: sites, assumeFenced: Set(options.assumeFenced),
                    skipLostCapture: options.skipLostCapture, midpoint: { [self] in crashIfAsked(step.number, .mid) })
                let runner = StepRunner(ctx: ctx, step: step, inDoubt: record.attempts > 0)
                do {
                    // A coordinated run takes no step, and no act, without a live lease on the cluster's lock.
                    try coordinator?.checkLive()
                    if try await runner.check() {
                        // The fault switch fires at satisfied steps too (before and after the record), so every
                        // step number is a crash point.
                        crashIfAsked(step.number, .before)
                        try await Blocking.run { [journal] in
                            try journal.recordStep(run: runID, step: step, status: .satisfied, epoch: holder.epoch)
                        }
                        crashIfAsked(step.number, .after)
                        satisfied += 1
                        await progress(step, .satisfied)
                        continue
                    }
                    try await Blocking.run { [journal] in
                        try journal.recordStep(run: runID, step: step, status: .started, epoch: holder.epoch)
                    }
                    await progress(step, .started)
                    crashIfAsked(step.number, .before)
                    if step.destructive || step.kind.changesServer { try await Blocking.run { [lock] in try lock.verify(holder) } }
                    try coordinator?.checkLive()
                    let e = try await runner.act()
                    crashIfAsked(step.number, .mid)
                    crashIfAsked(step.number, .after)
                    try await runner.verify()
                    let fields = try e.journalFields(run: runID, step: step)
                    try await Blocking.run { [journal] in
                        // Coordinated: the record rides with the next one, in one etcd transaction.
                        try journal.recordStep(run: runID, step: step, status: .done, epoch: holder.epoch, evidence: fields, riding: true)
                    }
                    if !fields.isEmpty { evidence[step.number] = e }
                    done += 1
                    await progress(step, .done)
                } catch {
                    let failure = (error as? FailoverError) ?? FailoverError.failed("\(error)")
                    let message = "step \(step.number) (\(step.summary)) failed: \(failure.message)"
                    try? await Blocking.run { [journal] in
                        try journal.recordStep(run: runID, step: step, status: .failed, epoch: holder.epoch, error: failure.message)
                    }
                    await progress(step, .failed)
                    // A refusal before any step acted on a server changed nothing: the run is closed as refused.
                    // Once one acted (this one included, when its act began), the run stays resumable whatever
                    // the cause, and the message says which steps changed servers.
                    let records = (try? await Blocking.run { [journal] in try journal.steps(of: runID) }) ?? []
                    // A refusal is raised before its own step acts; an earlier attempt of it (before a crash or
                    // failure) may have acted.
                    let changed = records.filter { r in
                        guard r.step.destructive || r.step.kind.changesServer else { return false }
                        if r.status == .done { return true }
                        return r.step.number == step.number ? r.attempts > 1 || failure.code != .refused : r.attempts > 0
                    }
                    let outcome: RunState = failure.code == .refused && changed.isEmpty ? .refused : .failed
                    try? await Blocking.run { [journal] in
                        try journal.finishRun(runID, outcome: outcome, error: message, epoch: holder.epoch)
                    }
                    try? await Blocking.run { [lock] in try lock.release(holder) }
                    let hint: String
                    if outcome == .refused {
                        hint = "\nNothing was changed."
                    } else {
                        let list = changed.map { "\($0.step.number) (\($0.step.summary))" }.joined(separator: ", ")
                        hint =
                            (list.isEmpty ? "" : "\nSteps that changed servers: \(list).")
                            + "\nThe run is resumable: failoverd resume \(runID) --state \(options.stateDirectory)"
                            + (coordinator != nil ? "\n(or from any machine: failoverd resume --plan PLAN --state DIR)" : "")
                    }
                    throw FailoverError(failure.code, message + hint)
                }
            }
            let secs = seconds(since: started)
            try await Blocking.run { [journal, lock] in
                try journal.finishRun(runID, outcome: .succeeded, details: ["seconds": String(format: "%.3f", secs)], epoch: holder.epoch)
                try lock.release(holder)
            }
            return RunOutcome(
                runID: runID, outcome: .succeeded, stepsDone: done, stepsSatisfied: satisfied, stepCount: steps.count, seconds: secs)
        }
    }

    /// Runs `body`, then cancels `tasks` and waits until each has ended, on every path.
    private func endingWhenDone<T>(_ tasks: [Task<Void, Never>], _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            for t in tasks { t.cancel() }
            for t in tasks { await t.value }
            return value
        } catch {
            for t in tasks { t.cancel() }
            for t in tasks { await t.value }
            throw error
        }
    }

    /// The run lock of this state directory, for `runID`; in a coordinated run its epoch is the cluster
    /// lock's fencing token, so that every row records the token it was written under.
    func acquireLocal(runID: String) async throws -> RunLock.Holder {
        let token = coordinator?.token
        return try await Blocking.run { [lock] in
            let holder = try lock.acquire(runID: runID)
            guard let token else { return holder }
            do { return try lock.adopt(holder, epoch: token) } catch {
                try? lock.release(holder)
                throw error
            }
        }
    }

    /// Runs `body` under the run lock of `plan`'s replicated cluster in etcd when the plan has
    /// `coordination` (else just runs it): the cluster is identified, the lock taken (waiting for a dead
    /// holder's lease with `wait`), the cluster's journal copied here, and every write of `body` goes through
    /// etcd first. The lock is released (its lease revoked) on every path.
    func coordinated<T: Sendable>(_ plan: Plan, runID: String, wait: Bool, _ body: () async throws -> T) async throws -> T {
        guard let settings = plan.coordination?.etcd else { return try await body() }
        if coordinator != nil { throw FailoverError.invalid("this executor already coordinates a run; one at a time") }
        let (driver, sites) = try makeDrivers(plan: plan, kind: drivers.kind(plan: plan))
        let identifier = try await ClusterIdentity.systemIdentifier(plan: plan, driver: driver, sites: sites, journal: journal)
        let c = Coordinator(settings: settings, systemIdentifier: identifier)
        try await c.acquire(.thisProcess(run: runID, plan: plan, stateDirectory: options.stateDirectory), wait: wait)
        logger.info(
            "coordinated: cluster run lock taken", metadata: ["cluster": "\(identifier)", "token": "\(c.token)", "key": "\(c.lockKey)"])
        do {
            try await journal.importCoordinated(from: c)
            try ClusterIdentity.remember(identifier, in: journal)
            try journal.attach(c, run: runID)
            coordinator = c
            let value = try await body()
            await endCoordination(c)
            return value
        } catch {
            await endCoordination(c)
            throw error
        }
    }

    func endCoordination(_ c: Coordinator) async {
        journal.detachCoordinator()
        coordinator = nil
        await c.release()
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
    func auditSkipLostCapture(run: String, scope: String) async throws {
        guard options.skipLostCapture else { return }
        try await Blocking.run { [journal] in
            try AuditLog(journal: journal).append(
                kind: .override, run: run, details: ["override": "skip-lost-capture", "scope": scope])
        }
    }

    /// Refuses --assume-fenced naming a site the plan lacks (invalid input), and writes the override to the
    /// audit log: the operator, not failoverd, vouches that the site's servers cannot take writes.
    func auditAssumeFenced(plan: Plan, run: String, scope: String) async throws {
        for site in options.assumeFenced where plan.site(named: site) == nil {
            throw FailoverError.invalid(
                "--assume-fenced \(site): plan \"\(plan.name)\" has no such site; sites: \(plan.sites.map(\.name).joined(separator: ", "))")
        }
        guard !options.assumeFenced.isEmpty else { return }
        let details = ["override": "assume-fenced", "sites": options.assumeFenced.joined(separator: ","), "scope": scope]
        try await Blocking.run { [journal] in try AuditLog(journal: journal).append(kind: .override, run: run, details: details) }
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
        for (site, instance) in plan.allInstances {
            guard (try? await Blocking.run({ [journal] in try journal.isFenced(instance: instance.name) })) == true,
                observer.managed(site) == nil, let status = try? await observer.status(of: instance), !status.running
            else { continue }
            if (try? await driver.setFenceMarker(instance, reason: "fenced by failoverd; marker written once the host answered")) != nil {
                logger.info("fence marker written", metadata: ["instance": "\(instance.name)"])
            }
        }
    }
}
