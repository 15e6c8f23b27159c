import Foundation

/// What `failoverd fleet status` shows: the fleet run, its lock, and every member with its step, read from
/// the fleet record and from each member's own journal.
public struct FleetStatus: Codable, Sendable {
    /// One member.
    public struct Member: Codable, Sendable {
        /// Its name.
        public var member: String
        /// Its plan's name.
        public var plan: String
        /// As the fleet record holds it (`running` for a member left mid-run by a killed fleet process).
        public var status: String
        /// True when the record says it runs but no fleet process runs it: `fleet resume` continues it.
        public var interrupted: Bool
        /// The members it waits for.
        public var waitsFor: [String]
        /// Its run, once known.
        public var runID: String?
        /// Its run's state in its journal.
        public var runOutcome: String?
        /// The step in progress (or the last one begun), from its journal.
        public var step: Int?
        /// The steps of its run.
        public var steps: Int?
        /// What that step does.
        public var stepSummary: String?
        /// Steps done or satisfied.
        public var stepsFinished: Int?
        /// When the fleet first started it.
        public var startedAt: String?
        /// When it ended.
        public var endedAt: String?
        /// Seconds from its start to its end (or to now).
        public var seconds: Double?
        /// Why it failed, was refused or skipped.
        public var error: String?
        /// Its state directory: `failoverd status --state` it alone.
        public var stateDirectory: String
    }

    /// A fleet run, without its stored fleet.
    public struct Run: Codable, Sendable {
        /// The fleet run id.
        public var id: String
        /// How it stands.
        public var outcome: RunState
        /// The fleet file it was started from.
        public var fleetFile: String
        /// How many members act at once.
        public var concurrency: Int
        /// Failed or refused members that stop new starts.
        public var brake: Int
        /// user@host of the process that started it.
        public var actor: String
        /// A drill's fleet run.
        public var drill: Bool
        /// A rehearsal against the simulated driver.
        public var simulate: Bool
        /// When it started.
        public var startedAt: String
        /// When it ended.
        public var endedAt: String?
        /// The members that did not succeed, with their state.
        public var error: String?

        init(_ r: FleetRunRecord) {
            id = r.id
            outcome = r.outcome
            fleetFile = r.fleetFile
            concurrency = r.concurrency
            brake = r.brake
            actor = r.actor
            drill = r.isDrill
            simulate = r.simulate
            startedAt = r.startedAt
            endedAt = r.endedAt
            error = r.error
        }
    }

    /// The fleet's name.
    public var fleet: String
    /// failoverd's state directory.
    public var stateDirectory: String
    /// The latest fleet run.
    public var fleetRun: Run?
    /// The fleet lock's holder, alive or not.
    public var lock: FleetStore.LockHolder?
    /// Every member.
    public var members: [Member]
    /// How many members are in each state.
    public var counts: [String: Int]
    /// The command that continues the fleet run, when it is unfinished and not running.
    public var resume: String?

    /// Reads the status of the fleet named `fleet` in `stateDirectory`.
    public static func read(fleet: String, stateDirectory: String) throws -> FleetStatus {
        let paths = FleetPaths(stateDirectory: stateDirectory, fleet: fleet)
        let store = try FleetStore(paths: paths, create: false)
        let lock = try store.lockHolder()
        guard let run = try store.latestRun() else {
            return FleetStatus(
                fleet: fleet, stateDirectory: stateDirectory, fleetRun: nil, lock: lock, members: [], counts: [:], resume: nil)
        }
        let dependencies = (try? run.fleet().dependencies) ?? [:]
        let alive = lock?.alive == true
        var members: [Member] = []
        for m in try store.members(of: run.id) {
            var member = Member(
                member: m.member, plan: m.planName, status: m.status.rawValue,
                interrupted: !alive && [.starting, .running].contains(m.status), waitsFor: dependencies[m.member] ?? [], runID: m.runID,
                startedAt: m.startedAt, endedAt: m.endedAt, error: m.error, stateDirectory: m.stateDirectory)
            if [.starting, .running, .failed, .succeeded, .refused, .abandoned].contains(m.status),
                let journalRun = try? FleetRunner.memberRun(m)
            {
                member.runID = journalRun.id
                member.runOutcome = journalRun.outcome.rawValue
                if let steps = try? Journal(stateDirectory: m.stateDirectory).steps(of: journalRun.id) {
                    member.steps = steps.count
                    member.stepsFinished = steps.filter(\.status.isFinished).count
                    let current = steps.last { $0.status == .started || $0.status == .failed } ?? steps.last { $0.status.isFinished }
                    member.step = current?.step.number
                    member.stepSummary = current?.step.summary
                }
            }
            if let start = m.startedAt.flatMap(Journal.date) {
                let end = m.endedAt.flatMap(Journal.date) ?? ([.starting, .running].contains(m.status) && alive ? Date() : nil)
                member.seconds = end.map { $0.timeIntervalSince(start) }
            }
            members.append(member)
        }
        var counts: [String: Int] = [:]
        for m in members { counts[m.interrupted ? "interrupted" : m.status, default: 0] += 1 }
        let resume =
            run.outcome.isUnfinished && !alive ? "failoverd fleet resume \(fleet) --state \(stateDirectory)" : nil
        return FleetStatus(
            fleet: fleet, stateDirectory: stateDirectory, fleetRun: Run(run), lock: lock, members: members, counts: counts, resume: resume)
    }

    /// The names of the fleets that have a record in `stateDirectory`.
    public static func fleets(in stateDirectory: String) -> [String] {
        let root = FleetPaths.root(stateDirectory)
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter {
            Files.exists(root + "/" + $0 + "/fleet.sqlite")
        }
        .sorted()
    }

    /// The fleet a verb means: `argument` as a fleet file (its name) or a fleet's name; without one, the only
    /// fleet of the state directory (for resume, the only one with an unfinished run).
    public static func resolve(_ argument: String?, stateDirectory: String, unfinishedOnly: Bool = false) throws -> String {
        if let argument {
            if argument.hasSuffix(".json") || argument.contains("/") {
                return try FleetLoader.load(argument).name
            }
            if let problem = PlanValues.nameProblem(argument) {
                throw FailoverError.invalid(
                    "fleet \(PlanValues.quoted(argument)): a fleet's name \(problem); give the fleet's name or its file")
            }
            return argument
        }
        var names = fleets(in: stateDirectory)
        if unfinishedOnly {
            names = names.filter { name in
                let store = try? FleetStore(paths: FleetPaths(stateDirectory: stateDirectory, fleet: name), create: false)
                return (try? store?.latestRun())??.outcome.isUnfinished == true
            }
        }
        guard names.count == 1 else {
            throw FailoverError.invalid(
                names.isEmpty
                    ? "no \(unfinishedOnly ? "unfinished " : "")fleet in state directory \(stateDirectory); give the fleet's name or file (and --state)"
                    : "state directory \(stateDirectory) holds \(names.count) \(unfinishedOnly ? "unfinished " : "")fleets (\(names.joined(separator: ", "))); name the one you mean"
            )
        }
        return names[0]
    }
}
