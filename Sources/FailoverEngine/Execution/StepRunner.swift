import Foundation
import Logging

/// What one step needs from the run: the plan, the driver, the journal, options and earlier evidence.
struct StepContext: Sendable {
    let plan: Plan
    let driver: any InstanceDriver
    let journal: Journal
    let runID: String
    let epoch: Int64
    let allowDataLoss: Bool
    let logger: Logger
    /// Evidence of finished steps of this run, by step number, decoded once where it left the journal
    /// (``JournaledSteps``) or as the act returned it. A finished step that journaled none has no entry.
    let evidence: [Int: any StepEvidence]
    let steps: [Step]
    let pollInterval: Double
    /// The site-level drivers of managed sites (those whose expansion is site steps), by site name. Every
    /// other site is reached through `driver`.
    var sites: [String: any SiteDriver] = [:]
    /// Sites the operator declared fenced by other means for this run or resume (--assume-fenced).
    var assumeFenced: Set<String> = []
    /// The operator passed --skip-lost-capture: capture-divergence records the override instead of capturing.
    var skipLostCapture = false
    /// Called inside an act at its midpoint (capture-divergence: WAL copied, not yet sealed): the fault switch's `N:mid`.
    var midpoint: @Sendable () -> Void = {}

    /// failoverd's state directory (the journal's).
    var stateDirectory: String { (journal.path as NSString).deletingLastPathComponent }

    var timeout: Double { plan.policy.stepTimeoutSeconds }
    /// How long the switchover gate waits for a streaming target's lag to come within policy: the step
    /// timeout in a run, 0 in `check`, which reports what it sees now.
    var lagWaitSeconds: Double?

    /// The plan's instance of that name; throws when the plan has none.
    func instance(named name: String) throws -> Instance {
        guard let i = plan.allInstances.first(where: { $0.instance.name == name })?.instance else {
            throw FailoverError.failed("the plan has no instance \(name)")
        }
        return i
    }

    /// The plan's site of that name; throws when the plan has none.
    func site(named name: String) throws -> Site {
        guard let s = plan.site(named: name) else { throw FailoverError.failed("the plan has no site \(name)") }
        return s
    }

    /// The site-level driver of `site`: its own for a managed site, else the site level over `driver`.
    func siteDriver(for site: Site) -> any SiteDriver {
        sites[site.name] ?? InstanceSite(driver: driver, timeout: timeout, pollInterval: pollInterval)
    }

    /// What a probe of `instance` sees, through its site's driver: a managed site reports its members, an
    /// instance driver probes the server. A member the managed site does not report cannot be seen.
    func status(of instance: Instance) async throws -> InstanceStatus {
        try await InstanceObserver(plan: plan, driver: driver, sites: sites).status(of: instance)
    }

    /// The evidence step `number` journaled, as `type`; nil only when it journaled none (not finished,
    /// satisfied, or nothing to prove). Throws when that step's evidence is another type.
    func evidence<E: StepEvidence>(of number: Int, as type: E.Type) throws -> E? {
        guard let e = evidence[number] else { return nil }
        guard let typed = e as? E else {
            let kind = steps.first { $0.number == number }.map { " (\($0.kind.rawValue))" } ?? ""
            throw FailoverError.failed(
                "run \(runID) step \(number)\(kind) journaled \(Swift.type(of: e)) evidence, where a \(E.self) was read; this is a failoverd defect: report it with this message."
            )
        }
        return typed
    }

    /// Waits for `condition` with the step timeout; fails naming `what` at the deadline.
    func wait<T: Sendable>(_ what: String, timeout: Double? = nil, _ condition: () async throws -> T?) async throws -> T {
        guard let v = try await Wait.until(timeout: timeout ?? self.timeout, interval: pollInterval, condition) else {
            throw FailoverError.failed(
                "timed out after \(Int(timeout ?? self.timeout)) s waiting until \(what); policy.stepTimeoutSeconds sets the limit")
        }
        return v
    }
}

/// Runs one step: resolves its operation into its runnable type (Execution/Steps/), and holds what the
/// step types share: the gates, the overwrite check, and the probes of following, archive recovery and lag.
struct StepRunner {
    let ctx: StepContext
    let step: Step
    /// The step's act started before in this run (a crash or a failure cut it short): it is being retried.
    var inDoubt = false

    var driver: any InstanceDriver { ctx.driver }

    /// True when the step's postcondition already holds: it is recorded `satisfied` and skipped.
    func check() async throws -> Bool {
        let runnable = try step.operation.runnable(in: ctx)
        if let u = step.unlessFollowing, let i = step.instance,
            try await isFollowing(try ctx.instance(named: i), try ctx.instance(named: u))
        {
            return true
        }
        return try await runnable.check(self)
    }

    /// Performs the step's side effect; returns the evidence to journal.
    func act() async throws -> any StepEvidence {
        try await step.operation.runnable(in: ctx).act(self)
    }

    /// Confirms the postcondition after the act.
    func verify() async throws {
        guard try await step.operation.runnable(in: ctx).verify(self) else {
            throw FailoverError.failed("step \(step.number) (\(step.summary)) did not reach its postcondition")
        }
    }

    // MARK: shared probes

    /// Streaming from `upstream` on the upstream's timeline.
    func isFollowing(_ i: Instance, _ upstream: Instance) async throws -> Bool {
        let s = try await ctx.status(of: i)
        guard s.running, s.inRecovery, let r = s.walReceiver, r.isStreaming(from: upstream) else { return false }
        let u = try await ctx.status(of: upstream)
        guard u.running else { return false }
        let upTimeline = u.inRecovery ? (u.walReceiver?.receivedTimeline ?? u.timeline) : u.timeline
        return (r.receivedTimeline ?? s.timeline) == upTimeline
    }

    func isArchiveRecovering(_ i: Instance) async throws -> Bool {
        let s = try await ctx.status(of: i)
        return s.running && s.inRecovery && (s.walReceiver == nil || s.walReceiver?.status != "streaming")
    }

    /// The lag in bytes when within policy, nil otherwise.
    func lag(of i: Instance, behind upstream: Instance) async throws -> UInt64? {
        let s = try await ctx.status(of: i)
        let u = try await ctx.status(of: upstream)
        guard s.running, s.inRecovery, let pos = s.replayLSN, let top = u.position else { return nil }
        let lag = top.bytes(after: pos)
        return lag <= ctx.plan.policy.maxLagBytes ? lag : nil
    }

    /// The journaled evidence of the last earlier step of `kind` for `instance` in this transition.
    func evidence<E: StepEvidence>(ofKind kind: StepKind, instance: String, as type: E.Type) throws -> E? {
        try lastStep(ofKind: kind, instance: instance).flatMap { try ctx.evidence(of: $0.number, as: type) }
    }

    /// The last earlier step of `kind` for `instance` in this transition.
    func lastStep(ofKind kind: StepKind, instance: String) -> Step? {
        ctx.steps.last { $0.kind == kind && $0.instance == instance && $0.transition == step.transition && $0.number < step.number }
    }
}
