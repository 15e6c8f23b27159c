import Foundation
import Logging

/// Where `fleet run --crash-at` kills the fleet process: at a member's step, before or after its act.
public struct FleetCrashPoint: Sendable, Equatable, CustomStringConvertible {
    /// The member.
    public var member: String
    /// The step of its run and the phase.
    public var point: CrashPoint

    /// Parses `MEMBER:N:before` or `MEMBER:N:after`.
    public init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":"), let point = CrashPoint(String(text[text.index(after: colon)...])) else { return nil }
        member = String(text[..<colon])
        self.point = point
        if member.isEmpty { return nil }
    }

    public var description: String { "\(member):\(point)" }
}

/// How to carry out a fleet run or a resume.
public struct FleetOptions: Sendable {
    /// failoverd's state directory: the fleet lives in `STATE/fleets/<fleet>`.
    public var stateDirectory: String
    /// Rehearse every member against the simulated driver (a model in each member's state directory).
    public var simulate: Bool
    /// The fault switch: kill the fleet process at a member's step.
    public var crashAt: FleetCrashPoint?
    /// True when a drill runs the fleet.
    public var isDrill: Bool
    /// Where the library logs; each member logs with its name as metadata.
    public var logger: Logger
    /// Called at every change of a member (and of the fleet), with a line for people.
    public var onEvent: (@Sendable (FleetEvent) -> Void)?
    /// Called with every member's step progress (a drill injects its faults here).
    public var onMemberProgress: (@Sendable (String, StepProgress) async -> Void)?
    /// Signs audit checkpoints in the members' journals.
    public var auditSigner: AuditSigner?
    /// Seconds each member's run lets the world run between its transitions (drills); 0 by default.
    public var dwellBetweenTransitions: Double = 0

    /// Options with defaults: real drivers, no fault, not a drill.
    public init(
        stateDirectory: String, simulate: Bool = false, crashAt: FleetCrashPoint? = nil, isDrill: Bool = false,
        logger: Logger = Logger(label: "failoverd.fleet"), onEvent: (@Sendable (FleetEvent) -> Void)? = nil
    ) {
        self.stateDirectory = stateDirectory
        self.simulate = simulate
        self.crashAt = crashAt
        self.isDrill = isDrill
        self.logger = logger
        self.onEvent = onEvent
    }
}

/// A change in a fleet run, for progress displays.
public struct FleetEvent: Sendable {
    /// The member it is about; nil for the fleet itself (the brake, the start, the end).
    public var member: String?
    /// The member's new state.
    public var status: MemberState?
    /// For a running member: the step it begins, of how many, and what it does.
    public var step: Int?
    /// How many steps the member's run has.
    public var steps: Int?
    /// The step's summary.
    public var stepSummary: String?
    /// Why (a failure, a refusal, a skip, the brake).
    public var message: String?
    /// Seconds since this fleet run (or resume) began.
    public var elapsed: Double
    /// How many members are in each state now.
    public var counts: [MemberState: Int]
    /// The line a terminal shows: `[  3.20s] auth       running step 3/11 stop dc1-0  | 1 done, 2 running, 3 waiting of 6`.
    public var line: String
}

/// How a fleet run (or resume) ended.
public struct FleetOutcome: Sendable, Codable {
    /// The fleet's name.
    public var fleet: String
    /// The fleet run id.
    public var fleetRunID: String
    /// The fleet run's state now.
    public var outcome: RunState
    /// Every member as the record holds it.
    public var members: [FleetMemberRecord]
    /// Why the brake engaged, if it did.
    public var brake: String?
    /// Seconds this invocation took.
    public var seconds: Double

    /// 0 when every member succeeded, 1 when any failed (or was abandoned), 3 when any was refused.
    public var exitCode: Int32 {
        if members.allSatisfy({ $0.status == .succeeded }) { return 0 }
        if members.contains(where: { [.failed, .abandoned, .starting, .running].contains($0.status) }) { return 1 }
        if members.contains(where: { $0.status == .refused }) { return 3 }
        return 1
    }
}

/// Runs a fleet: each member an ordinary run of its plan (its own executor, journal and run lock, in
/// `STATE/fleets/<fleet>/members/<member>`), in process, under the concurrency bound, the order and the brake.
///
/// Members run in this process so that a kill of the fleet process stops every member with it: nothing is
/// left running unseen, and `fleet resume` continues each member through its journal's crash-safe resume.
/// A member that fails or is refused never stops a member already running; the brake only stops new starts.
public final class FleetRunner: Sendable {
    let fleet: Fleet
    let store: FleetStore
    let options: FleetOptions
    let runID: String
    let simulate: Bool
    let origin = ContinuousClock.now
    let state: Locked<[String: FleetMemberRecord]>
    let brakeReason = Locked<String?>(nil)

    init(fleet: Fleet, store: FleetStore, runID: String, simulate: Bool, members: [FleetMemberRecord], options: FleetOptions) {
        self.fleet = fleet
        self.store = store
        self.runID = runID
        self.simulate = simulate
        self.options = options
        state = Locked(Dictionary(uniqueKeysWithValues: members.map { ($0.member, $0) }))
    }

    // MARK: Verbs

    /// Starts a new fleet run of `fleet`, read from `fleetFile`.
    ///
    /// Exit 4 when the fleet is already running (or another running fleet drives one of its clusters); exit 3
    /// when an earlier fleet run of it is unfinished (continue it with `fleet resume`, or `fleet abandon` it).
    public static func run(_ fleet: Fleet, fleetFile: String, options: FleetOptions) async throws -> FleetOutcome {
        if let crash = options.crashAt, fleet.member(named: crash.member) == nil {
            throw FailoverError.invalid(
                "--crash-at \(crash): fleet \(PlanValues.quoted(fleet.name)) has no member \(PlanValues.quoted(crash.member)); members: \(fleet.members.map(\.name).joined(separator: ", "))"
            )
        }
        let paths = FleetPaths(stateDirectory: options.stateDirectory, fleet: fleet.name)
        let store = try FleetStore(paths: paths, create: true)
        let runID = FleetStore.makeRunID()
        _ = try store.acquireLock(fleetRun: runID)
        do {
            if let last = try store.latestRun(), last.outcome.isUnfinished {
                throw FailoverError.refused(
                    "fleet run \(last.id) of fleet \(PlanValues.quoted(fleet.name)) is unfinished (\(last.outcome == .running ? "interrupted" : last.outcome.rawValue)); continue it with: failoverd fleet resume \(fleet.name) --state \(options.stateDirectory)  (or give it up with: failoverd fleet abandon \(fleet.name) --state \(options.stateDirectory))"
                )
            }
            try FleetGuard.checkOthers(fleet, paths: paths)
            let json = String(decoding: fleet.canonicalJSON(), as: UTF8.self)
            let record = FleetRunRecord(
                id: runID, fleetName: fleet.name, fleetFile: fleetFile, fleetJSON: json, fleetSHA256: AuditLog.sha256(json),
                concurrency: fleet.concurrency, brake: fleet.brake, outcome: .running, error: nil, actor: AuditLog.actor,
                isDrill: options.isDrill,
                simulate: options.simulate, startedAt: Journal.now(), endedAt: nil)
            let members = fleet.members.enumerated().map { i, m in
                FleetMemberRecord(
                    fleetRun: runID, member: m.name, position: i, planName: m.plan.name, stateDirectory: paths.member(m.name),
                    status: .waiting,
                    runID: nil, previousRunID: nil, attempts: 0, startedAt: nil, endedAt: nil, error: nil)
            }
            try store.createRun(record, members: members)
            let runner = FleetRunner(
                fleet: fleet, store: store, runID: runID, simulate: options.simulate, members: members, options: options)
            return try await runner.schedule(fleet.members.map { Candidate(member: $0.name, mode: .fresh, exempt: false) })
        } catch {
            try? store.releaseLock()
            throw error
        }
    }

    /// Continues the latest fleet run of the fleet named `name`: members left mid-run are resumed through
    /// their journals (whatever the brake), failed ones are resumed, refused, skipped and waiting ones start.
    public static func resume(fleet name: String, options: FleetOptions) async throws -> FleetOutcome {
        let paths = FleetPaths(stateDirectory: options.stateDirectory, fleet: name)
        let store = try FleetStore(paths: paths, create: false)
        guard let last = try store.latestRun() else {
            throw FailoverError.invalid(
                "fleet \(PlanValues.quoted(name)) in \(options.stateDirectory) has no fleet run; start one with failoverd fleet run FLEET")
        }
        _ = try store.acquireLock(fleetRun: last.id)
        do {
            guard last.outcome.isUnfinished else {
                throw FailoverError.invalid(
                    "fleet run \(last.id) of fleet \(PlanValues.quoted(name)) is \(last.outcome); there is nothing to resume"
                        + (last.outcome == .refused ? " (nothing was changed: start a new one with failoverd fleet run FLEET)" : ""))
            }
            let fleet = try last.fleet()
            try FleetGuard.checkOthers(fleet, paths: paths)
            var members = try store.members(of: last.id)
            var candidates: [Candidate] = []
            for i in members.indices {
                let (record, candidate) = try reconcile(members[i], plan: fleet.member(named: members[i].member)?.plan)
                members[i] = record
                if let candidate { candidates.append(candidate) }
                try store.update(record)
            }
            try store.finishRun(last.id, outcome: .running, error: nil)
            let runner = FleetRunner(
                fleet: fleet, store: store, runID: last.id, simulate: last.simulate, members: members, options: options)
            // Members left mid-change first, then failed ones, then the others in the fleet file's order.
            let ordered = candidates.sorted { a, b in
                let pa = a.exempt ? 0 : (a.mode == .fresh ? 2 : 1)
                let pb = b.exempt ? 0 : (b.mode == .fresh ? 2 : 1)
                if pa != pb { return pa < pb }
                return (members.first { $0.member == a.member }?.position ?? 0) < (members.first { $0.member == b.member }?.position ?? 0)
            }
            return try await runner.schedule(ordered)
        } catch {
            try? store.releaseLock()
            throw error
        }
    }

    /// What resume does with a member, from the record and the member's journal (which is the truth).
    static func reconcile(_ member: FleetMemberRecord, plan: Plan?) throws -> (FleetMemberRecord, Candidate?) {
        var m = member
        switch m.status {
        case .succeeded, .abandoned:
            return (m, nil)
        case .waiting, .skipped, .refused:
            m.status = .waiting
            return (m, Candidate(member: m.member, mode: .fresh, exempt: false))
        case .starting, .running, .failed:
            break
        }
        let interrupted = m.status != .failed
        let run = try memberRun(m)
        guard let run else {
            // Killed before its run was created: nothing of it ran.
            m.status = .waiting
            return (m, Candidate(member: m.member, mode: .fresh, exempt: interrupted))
        }
        m.runID = run.id
        switch run.outcome {
        case .succeeded:
            m.status = .succeeded
            m.error = nil
            m.endedAt = m.endedAt ?? run.endedAt
            return (m, nil)
        case .abandoned:
            m.status = .abandoned
            m.error = run.error ?? "abandoned"
            return (m, nil)
        case .refused:
            m.status = .waiting
            return (m, Candidate(member: m.member, mode: .fresh, exempt: interrupted))
        case .running, .failed:
            m.status = interrupted ? .running : .failed
            return (m, Candidate(member: m.member, mode: .resume(run.id), exempt: interrupted))
        }
    }

    /// The member's run in its journal: the recorded one, else the latest one started after the fleet started it.
    static func memberRun(_ m: FleetMemberRecord) throws -> RunRecord? {
        guard Files.exists(m.stateDirectory + "/journal.sqlite") else { return nil }
        let journal = try Journal(stateDirectory: m.stateDirectory)
        if let id = m.runID { return try journal.run(id) }
        guard let last = try journal.lastRun(), last.id != m.previousRunID else { return nil }
        return last
    }

    /// Abandons the latest unfinished fleet run of `name` and every unfinished member run in it, so that a new
    /// fleet run may start. Refuses (exit 4) while the fleet runs.
    /// - Returns: the member runs abandoned, as `member: run`.
    public static func abandon(fleet name: String, reason: String, options: FleetOptions) async throws -> [String] {
        let paths = FleetPaths(stateDirectory: options.stateDirectory, fleet: name)
        let store = try FleetStore(paths: paths, create: false)
        guard let last = try store.latestRun(), last.outcome.isUnfinished else {
            throw FailoverError.invalid(
                "fleet \(PlanValues.quoted(name)) has no unfinished fleet run in \(options.stateDirectory); nothing to abandon")
        }
        _ = try store.acquireLock(fleetRun: last.id)
        defer { try? store.releaseLock() }
        var abandoned: [String] = []
        for var m in try store.members(of: last.id) where m.status != .succeeded {
            if let run = try memberRun(m), run.isUnfinished {
                var runOptions = RunOptions(stateDirectory: m.stateDirectory, simulate: last.simulate, logger: options.logger)
                runOptions.auditSigner = options.auditSigner
                try await Executor(options: runOptions).abandon(runID: run.id, reason: "fleet run \(last.id) abandoned: \(reason)")
                abandoned.append("\(m.member): \(run.id)")
                m.runID = run.id
                m.status = .abandoned
                m.error = "abandoned with fleet run \(last.id): \(reason)"
                try store.update(m, event: "member-end", "abandoned run \(run.id)")
            }
        }
        try store.finishRun(last.id, outcome: .abandoned, error: reason)
        try store.event(last.id, "fleet-abandon", "by \(AuditLog.actor): \(reason)")
        return abandoned
    }

    // MARK: Scheduling

    /// How a member is (re)started: a new run of its plan, or a resume of its run.
    enum Mode: Equatable {
        case fresh
        case resume(String)
    }

    /// A member to start, and whether the brake spares it (a member left mid-run by a killed fleet process).
    struct Candidate {
        var member: String
        var mode: Mode
        var exempt: Bool
    }

    var elapsed: Double { CommandRunner.seconds(since: origin) }

    /// Starts the candidates under the concurrency bound, the order and the brake; waits for every started one.
    func schedule(_ candidates: [Candidate]) async throws -> FleetOutcome {
        let heartbeat = Task { [store] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(FleetStore.leaseSeconds / 3))
                _ = try? await Blocking.run { try store.renewLock() }
            }
        }
        defer { heartbeat.cancel() }
        let dependencies = fleet.dependencies
        var pending = candidates
        for c in candidates {
            let waits = dependencies[c.member] ?? []
            emit(c.member, .waiting, message: waits.isEmpty ? nil : "waits for \(waits.joined(separator: ", "))")
        }
        await withTaskGroup(of: (String, MemberState).self) { group in
            var running = 0
            var failed: [String] = []
            while true {
                while running < fleet.concurrency {
                    let snapshot = state.current
                    let braked = brakeReason.current != nil
                    guard
                        let index = pending.firstIndex(where: { c in
                            (c.exempt || !braked) && (dependencies[c.member] ?? []).allSatisfy { snapshot[$0]?.status == .succeeded }
                        })
                    else { break }
                    let c = pending.remove(at: index)
                    running += 1
                    // Each member's blocking work (journal commits, libpq, processes) goes through Blocking,
                    // so two members busy in it never hold up the others.
                    group.addTask {
                        (c.member, await self.execute(c.member, mode: c.mode))
                    }
                }
                guard running > 0, let (member, status) = await group.next() else { break }
                running -= 1
                // The brake counts the failures and refusals of this invocation.
                guard status.isFailure else { continue }
                failed.append("\(member) \(status)")
                if failed.count >= fleet.brake, brakeReason.current == nil {
                    let waiting = pending.filter { !$0.exempt }.count
                    let reason =
                        "\(PlanValidator.count(failed.count, "member")) failed or refused (\(failed.joined(separator: ", "))); brake \(fleet.brake): no new member starts"
                    brakeReason.withLock { $0 = reason }
                    _ = try? await Blocking.run { [store, runID] in try store.event(runID, "brake", reason) }
                    emit(
                        nil, nil,
                        message:
                            "brake engaged: \(reason); \(PlanValidator.count(running, "running member")) \(running == 1 ? "finishes its" : "finish their") run, \(PlanValidator.count(waiting, "waiting member")) will be skipped"
                    )
                }
            }
        }
        // What never started: skipped by the brake, or waiting for a member that did not succeed.
        for c in pending {
            var m = state.current[c.member]!
            let waits = dependencies[c.member] ?? []
            let blocker = waits.first { state.current[$0]?.status != .succeeded }
            m.status = .skipped
            if let reason = brakeReason.current {
                m.error = "skipped by the brake: \(reason)"
            } else if let blocker {
                m.error =
                    "skipped: waits for \(blocker), which \(state.current[blocker].map { $0.status == .skipped ? "was skipped" : "\($0.status)" } ?? "did not run")"
            } else {
                m.error = "skipped"
            }
            await save(m, event: "member-skip", m.error!)
            emit(c.member, .skipped, message: m.error)
        }
        let members = try store.members(of: runID)
        let outcome: RunState
        if members.allSatisfy({ $0.status == .succeeded }) {
            outcome = .succeeded
        } else if members.contains(where: { [.succeeded, .failed, .abandoned, .running, .starting].contains($0.status) }) {
            outcome = .failed
        } else {
            outcome = .refused
        }
        let problems = members.filter { $0.status != .succeeded }.map { "\($0.member) \($0.status)" }
        try store.finishRun(runID, outcome: outcome, error: problems.isEmpty ? nil : problems.joined(separator: ", "))
        try store.releaseLock()
        emit(nil, nil, message: "fleet run \(runID) \(outcome)")
        return FleetOutcome(
            fleet: fleet.name, fleetRunID: runID, outcome: outcome, members: members, brake: brakeReason.current, seconds: elapsed)
    }

    /// Runs (or resumes) one member to its end, records how it ended and returns that.
    func execute(_ name: String, mode: Mode) async -> MemberState {
        guard let member = fleet.member(named: name), var m = state.current[name] else { return .refused }
        let fresh = mode == .fresh
        let journal: Journal
        do {
            let (directory, signer) = (m.stateDirectory, options.auditSigner)
            let (opened, previous) = try await Blocking.run { () throws -> (Journal, String?) in
                let journal = try Journal(stateDirectory: directory, auditSigner: signer)
                return (journal, fresh ? try journal.lastRun()?.id : nil)
            }
            journal = opened
            if fresh { m.previousRunID = previous }
        } catch {
            m.status = .refused
            m.error = "cannot open its journal in \(m.stateDirectory): \(error)"
            m.endedAt = Journal.now()
            await save(m, event: "member-end", m.error!)
            emit(name, .refused, message: m.error)
            return .refused
        }
        if fresh { m.runID = nil }
        m.status = .starting
        m.attempts += 1
        m.startedAt = m.startedAt ?? Journal.now()
        m.endedAt = nil
        m.error = nil
        // Recorded before the run begins: a kill from here on is found by resume in the member's journal.
        await save(m, event: "member-start", fresh ? "new run of plan \(member.plan.name)" : "resume of run \(m.runID ?? "?")")
        let details = [
            "fleet": fleet.name, "fleetRun": runID, "member": name, "verb": fresh ? "run" : "resume",
            "concurrency": String(fleet.concurrency), "brake": String(fleet.brake),
        ]
        _ = try? await Blocking.run { try AuditLog(journal: journal).append(kind: .fleetMember, details: details) }
        emit(name, .running, message: fresh ? "starting a new run of plan \(member.plan.name)" : "resuming run \(m.runID ?? "?")")
        let hook = options.onMemberProgress
        var runOptions = RunOptions(
            stateDirectory: m.stateDirectory, simulate: simulate,
            crashAt: options.crashAt.flatMap { $0.member == name ? $0.point : nil }, isDrill: options.isDrill,
            logger: Self.logger(options.logger, member: name),
            onProgress: { [weak self] p in
                await hook?(name, p)
                guard p.phase == .begin else { return }
                self?.emit(name, .running, step: p.step.number, steps: p.total, summary: p.step.summary)
            })
        runOptions.auditSigner = options.auditSigner
        runOptions.dwellBetweenTransitions = options.dwellBetweenTransitions
        let executor = Executor(
            journal: journal, drivers: StandardDrivers(stateDirectory: m.stateDirectory, simulate: simulate, logger: runOptions.logger),
            logger: runOptions.logger, options: runOptions)
        var failure: FailoverError?
        do {
            switch mode {
            case .fresh: _ = try await executor.run(member.plan)
            case .resume(let id): _ = try await executor.resume(runID: id)
            }
        } catch let e as FailoverError {
            failure = e
        } catch {
            failure = FailoverError.failed("\(error)")
        }
        await RemoteShell.closeAll(stateDirectory: m.stateDirectory)
        // The member's journal says how its run stands.
        let previousRunID = m.previousRunID
        let run: RunRecord? = await Blocking.run {
            switch mode {
            case .fresh: (try? journal.lastRun()).flatMap { $0?.id != previousRunID ? $0 : nil }
            case .resume(let id): try? journal.run(id)
            }
        }
        m.runID = run?.id ?? m.runID
        m.endedAt = Journal.now()
        if failure == nil {
            m.status = .succeeded
        } else {
            switch run?.outcome {
            case .succeeded?: m.status = .succeeded
            case .refused?, nil: m.status = .refused
            case .abandoned?: m.status = .abandoned
            case .failed?, .running?: m.status = .failed
            }
        }
        m.error = m.status == .succeeded ? nil : failure.map { Self.firstLine($0.message) }
        await save(m, event: "member-end", m.status == .succeeded ? "succeeded, run \(m.runID ?? "?")" : "\(m.status): \(m.error ?? "")")
        emit(name, m.status, message: m.status == .succeeded ? "run \(m.runID ?? "?")" : m.error)
        return m.status
    }

    static func logger(_ base: Logger, member: String) -> Logger {
        var logger = base
        logger[metadataKey: "member"] = "\(member)"
        return logger
    }

    static func firstLine(_ text: String) -> String { String(text.split(separator: "\n", maxSplits: 1).first ?? "") }

    // MARK: Record and events

    func save(_ m: FleetMemberRecord, event kind: String, _ detail: String) async {
        state.withLock { $0[m.member] = m }
        do {
            try await Blocking.run { [store] in try store.update(m, event: kind, detail) }
        } catch {
            options.logger.error("could not update the fleet record", metadata: ["member": "\(m.member)", "error": "\(error)"])
        }
    }

    func emit(
        _ member: String?, _ status: MemberState?, step: Int? = nil, steps: Int? = nil, summary: String? = nil, message: String? = nil
    ) {
        guard let onEvent = options.onEvent else { return }
        let members = state.current
        var counts: [MemberState: Int] = [:]
        for m in members.values { counts[m.status, default: 0] += 1 }
        let width = max(8, fleet.members.map(\.name.count).max() ?? 8)
        let t = elapsed
        var text: String
        switch status {
        case .running? where step != nil:
            text = "running step \(step!)/\(steps ?? 0) \(summary ?? "")"
        case .running?:
            text = message ?? "starting"
        case .succeeded?:
            text = "done" + (message.map { " (\($0))" } ?? "")
        case .some(let s):
            text = s == .waiting ? "waiting" : s == .skipped ? "skipped" : "\(s)"
            if let message { text += ": \(message)" }
        case nil:
            text = message ?? ""
        }
        let done = counts[.succeeded] ?? 0
        let active = (counts[.running] ?? 0) + (counts[.starting] ?? 0)
        var tally = "\(done)/\(members.count) done, \(active) running, \(counts[.waiting] ?? 0) waiting"
        for s in [MemberState.failed, .refused, .skipped, .abandoned] where (counts[s] ?? 0) > 0 { tally += ", \(counts[s]!) \(s)" }
        let line =
            String(format: "[%7.2fs] ", t) + (member ?? "fleet").padding(toLength: width, withPad: " ", startingAt: 0)
            + "  \(text)  | \(tally)"
        onEvent(
            FleetEvent(
                member: member, status: status, step: step, steps: steps, stepSummary: summary, message: message, elapsed: t,
                counts: counts, line: line))
    }
}
