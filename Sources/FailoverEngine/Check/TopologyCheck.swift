import Foundation
import Logging

/// `failoverd check`: the live topology of a plan's sites, probed through their drivers, and the verdict
/// each transition's gates would give now. No side effect: the gates run on a journal in memory, and
/// nothing is written to a server or to the state directory.
public struct TopologyCheck: Sendable {
    /// One instance as probed now.
    public struct InstanceReport: Codable, Sendable, Equatable {
        /// The instance.
        public var instance: String
        /// Its site.
        public var site: String
        /// `primary`, `streaming-standby`, `archive-standby`, `stopped` or `unreachable`.
        public var seen: String
        /// The instance it streams from, for a streaming standby.
        public var upstream: String?
        /// Why it could not be probed, for `unreachable`.
        public var reason: String?
        /// The database system identifier.
        public var systemIdentifier: String?
        /// Its timeline.
        public var timeline: Int?
        /// pg_current_wal_lsn() on a primary.
        public var currentLSN: String?
        /// pg_last_wal_receive_lsn() on a standby.
        public var receiveLSN: String?
        /// pg_last_wal_replay_lsn() on a standby.
        public var replayLSN: String?
        /// The instance its lag is measured against: its upstream, else the primary seen now.
        public var lagTo: String?
        /// WAL bytes between that instance's position and this standby's replay position.
        public var lagBytes: UInt64?
        /// Replay delay in seconds: 0 when caught up, else the age of the last replayed transaction.
        public var lagSeconds: Double?
        /// pg_stat_wal_receiver.status, when a receiver runs.
        public var walReceiver: String?
        /// pg_stat_archiver.last_archived_wal.
        public var lastArchivedWAL: String?
        /// Seconds since that segment was archived.
        public var lastArchivedAgeSeconds: Double?
        /// pg_stat_archiver.failed_count.
        public var archiveFailures: Int?
        /// Who owns its standby settings: `failoverd`, `failoverd, overridden by postgresql.auto.conf`,
        /// `none` (not set up as a standby by failoverd), or `unknown: …`.
        public var recoverySettings: String
    }

    /// One site: the role the plan declares, the one seen, the one journaled.
    public struct SiteReport: Codable, Sendable, Equatable {
        /// The site.
        public var site: String
        /// The role the plan declares.
        public var declared: String
        /// The role its leader shows now (`fenced` for a stopped instance failoverd fenced, `none` for no data).
        public var seen: String
        /// The role failoverd's journal records, nil when none is recorded.
        public var journaled: String?
        /// A line saying what disagrees, nil when everything agrees.
        public var mismatch: String?
        /// For a Patroni site: true when Patroni says its cluster is paused (maintenance mode: Patroni neither
        /// promotes nor restarts anything), as an interrupted rebuild leaves it; nil for other sites, or when no
        /// member's REST API answered.
        public var paused: Bool? = nil
    }

    /// What one transition's gates would say now.
    public struct GateVerdict: Codable, Sendable, Equatable {
        /// The 1-based transition number.
        public var transition: Int
        /// "switchover to dr", "failover to dr", "rewind prod from dr"…
        public var summary: String
        /// `proceed`, `refuse`, `no-gate` or `unknown`.
        public var verdict: String
        /// The gate's own words: the refusal exactly as a run would print it, or what it proved.
        public var message: String
        /// True for transitions after the first: they run on the topology the earlier ones leave, so the
        /// verdict on today's topology is only indicative.
        public var provisional: Bool
        /// The gate's evidence when it would proceed.
        public var evidence: [String: String]
    }

    /// The whole check.
    public struct Report: Codable, Sendable {
        /// The plan's name.
        public var plan: String
        /// When the probe ran (UTC, ISO 8601).
        public var checkedAt: String
        /// Every instance of the plan.
        public var instances: [InstanceReport]
        /// Every site of the plan.
        public var sites: [SiteReport]
        /// Every transition of the plan, in order.
        public var gates: [GateVerdict]
        /// 0 all clear; 1 an instance could not be probed; 3 a declared role disagrees or the first
        /// transition's gate would refuse.
        public var exitCode: Int32
        /// One line per reason for a non-zero exit code.
        public var problems: [String]
        /// What keeps two machines from running a plan on these sites at once (``Coordination/summary(_:)``).
        public var coordination: String = ""
    }

    /// The plan to check.
    public let plan: Plan
    /// The driver that probes its servers.
    public let driver: any InstanceDriver
    /// The state directory's journal, when one exists (for journaled roles and fences); nil otherwise.
    public let journal: Journal?
    /// Where log lines go.
    public let logger: Logger
    /// The site-level drivers of managed sites (Patroni), by site name: their members are probed through
    /// them, as the gates probe them.
    public let sites: [String: any SiteDriver]

    /// A check of `plan` through `driver`, and through `sites` for managed sites.
    public init(plan: Plan, driver: any InstanceDriver, sites: [String: any SiteDriver] = [:], journal: Journal?, logger: Logger) {
        self.plan = plan
        self.driver = driver
        self.sites = sites
        self.journal = journal
        self.logger = logger
    }

    /// Probes every instance, compares the sites' roles, and evaluates every transition's gates.
    public func run() async throws -> Report {
        var statuses: [String: Result<InstanceStatus, Error>] = [:]
        let observer = InstanceObserver(plan: plan, driver: driver, sites: sites)
        for (_, instance) in plan.allInstances {
            do { statuses[instance.name] = .success(try await observer.status(of: instance)) } catch {
                statuses[instance.name] = .failure(error)
            }
        }
        var problems: [String] = []
        var unprobed = false
        var instances: [InstanceReport] = []
        for (site, instance) in plan.allInstances {
            let report = try await describe(instance, site: site, statuses: statuses)
            if report.seen == "unreachable" {
                unprobed = true
                problems.append("\(instance.name) cannot be probed: \(report.reason ?? "no answer")")
            }
            instances.append(report)
        }
        let sites = try await siteReports(instances)
        problems += sites.compactMap(\.mismatch)
        let gates = await gateVerdicts()
        if let first = gates.first, first.verdict == "refuse" || first.verdict == "unknown" {
            problems.append(
                "transition 1 (\(first.summary)) would \(first.verdict == "refuse" ? "be refused" : "not be decided"): \(first.message)")
        }
        let mismatched =
            sites.contains { $0.mismatch != nil } || gates.first.map { $0.verdict != "proceed" && $0.verdict != "no-gate" } ?? false
        let code: Int32 = unprobed ? 1 : mismatched ? 3 : 0
        var report = Report(
            plan: plan.name, checkedAt: Journal.now(), instances: instances, sites: sites, gates: gates, exitCode: code, problems: problems)
        report.coordination = Coordination.summary(plan.coordination)
        return report
    }

    // MARK: Instances

    func describe(_ instance: Instance, site: Site, statuses: [String: Result<InstanceStatus, Error>]) async throws -> InstanceReport {
        var r = InstanceReport(instance: instance.name, site: site.name, seen: "unreachable", recoverySettings: "unknown")
        do {
            if DriverRegistry.expansion(of: site) == .siteSteps {
                // Its manager (Patroni) writes the recovery settings of its members; failoverd asks it through
                // its site driver (standby_cluster).
                r.recoverySettings = site.driver.rawValue
            } else if let settings = try await driver.recoverySettings(of: instance) {
                r.recoverySettings = settings.overridden ? "failoverd, overridden by postgresql.auto.conf" : "failoverd"
            } else {
                r.recoverySettings = "none"
            }
        } catch {
            r.recoverySettings = "unknown: \(error)"
        }
        let s: InstanceStatus
        switch statuses[instance.name] {
        case .success(let status)?: s = status
        case .failure(let error)?:
            r.reason = "\(error)"
            return r
        case nil: return r
        }
        guard s.running else {
            r.seen = "stopped"
            return r
        }
        guard s.reachable else {
            r.reason = s.unreachableReason ?? "running but not answering SQL"
            return r
        }
        r.systemIdentifier = s.systemIdentifier
        r.timeline = s.walReceiver?.receivedTimeline ?? s.timeline
        r.currentLSN = s.currentLSN?.description
        r.receiveLSN = s.receiveLSN?.description
        r.replayLSN = s.replayLSN?.description
        r.walReceiver = s.walReceiver?.status
        r.lastArchivedWAL = s.lastArchivedWAL
        r.lastArchivedAgeSeconds = s.lastArchivedAgeSeconds
        r.archiveFailures = s.archiverFailedCount
        guard s.inRecovery else {
            r.seen = "primary"
            return r
        }
        let upstream = plan.allInstances.map(\.instance).first { s.walReceiver?.isStreaming(from: $0) == true }
        r.seen = upstream == nil ? "archive-standby" : "streaming-standby"
        r.upstream = upstream?.name
        // Lag against the upstream it streams from, else against the primary seen now.
        let reference =
            upstream
            ?? plan.allInstances.map(\.instance).first { i in
                if case .success(let st)? = statuses[i.name] { return st.isWritablePrimary }
                return false
            }
        if let reference, case .success(let top)? = statuses[reference.name], let position = top.position, let replay = s.replayLSN {
            r.lagTo = reference.name
            let bytes = position.bytes(after: replay)
            r.lagBytes = bytes
            r.lagSeconds = bytes == 0 ? 0 : s.lastReplayAgeSeconds
        }
        return r
    }

    // MARK: Sites

    func siteReports(_ instances: [InstanceReport]) async throws -> [SiteReport] {
        let journaled = try journal?.recordedRoles() ?? [:]
        var reports: [SiteReport] = []
        for site in plan.sites {
            guard let leader = instances.first(where: { $0.instance == site.leader.name }) else { continue }
            var seen = leader.seen
            if seen == "stopped" {
                if try journal?.isFenced(instance: site.leader.name) == true {
                    seen = Role.fenced.rawValue
                } else if sites[site.name] == nil, try await !driver.hasData(site.leader) {
                    seen = Role.none.rawValue
                }
            }
            let declared = site.role.rawValue
            let agrees: Bool
            switch site.role {
            case .fenced: agrees = seen == "fenced" || seen == "stopped"
            case .none: agrees = seen == "none"
            default: agrees = seen == declared
            }
            let recorded = journaled[site.name]?.rawValue
            var mismatch: String?
            if !agrees || (recorded != nil && recorded != declared) {
                mismatch =
                    "site \"\(site.name)\": the plan declares \(declared), \(site.leader.name) is seen as \(seen)"
                    + (recorded.map { ", the journal records \($0)" } ?? "") + "; fix the plan's role or the topology before running it"
            }
            let paused = await patroniPaused(site)
            if paused == true {
                mismatch =
                    (mismatch.map { $0 + "; and " } ?? "site \"\(site.name)\": ")
                    + "Patroni's cluster is paused (maintenance mode: it promotes and restarts nothing), as an interrupted rebuild leaves it; resume the run that paused it (failoverd status names it), or end the pause with `patronictl resume` once its members are as they should be"
            }
            var report = SiteReport(site: site.name, declared: declared, seen: seen, journaled: recorded, mismatch: mismatch)
            report.paused = paused
            reports.append(report)
        }
        return reports
    }

    /// Whether Patroni says `site`'s cluster is paused: `"pause": true` in `GET /patroni` of the first member
    /// that answers; nil for a site that is not Patroni's, or when none answers.
    func patroniPaused(_ site: Site) async -> Bool? {
        guard site.driver == .patroni, let cluster = site.patroni else { return nil }
        let rest = PatroniREST(cluster: cluster, runner: CommandRunner(defaultTimeout: 15))
        for instance in site.instances {
            guard let url = instance.patroni?.url, let member = try? await rest.get(url, "/patroni").object else { continue }
            return member["pause"] as? Bool == true
        }
        return nil
    }

    // MARK: Gates

    /// Each transition's first gate step, run by the executor's own gate code on a journal in memory.
    func gateVerdicts() async -> [GateVerdict] {
        let steps: [Step]
        switch Planner(plan: plan).steps() {
        case .success(let s): steps = s
        case .failure(let refusal):
            return [
                GateVerdict(
                    transition: 1, summary: "the plan", verdict: "refuse", message: refusal.message, provisional: false, evidence: [:])
            ]
        }
        let scratch: Journal
        do { scratch = try Journal(inMemory: ()) } catch {
            return [
                GateVerdict(transition: 1, summary: "the plan", verdict: "unknown", message: "\(error)", provisional: false, evidence: [:])
            ]
        }
        var ctx = StepContext(
            plan: plan, driver: driver, journal: scratch, runID: "check", epoch: 0, allowDataLoss: false, logger: logger, evidence: [:],
            steps: steps, pollInterval: DriverRegistry.pollInterval(driver), sites: sites)
        ctx.lagWaitSeconds = 0
        var verdicts: [GateVerdict] = []
        for (index, transition) in plan.transitions.enumerated() {
            let number = index + 1
            let summary = Self.summary(transition)
            guard let gate = steps.first(where: { $0.transition == number && ($0.kind == .gateSwitchover || $0.kind == .gateFailover) })
            else {
                verdicts.append(
                    GateVerdict(
                        transition: number, summary: summary, verdict: "no-gate",
                        message: "would proceed: no gate for this action; the state machine allows it", provisional: number > 1,
                        evidence: [:]))
                continue
            }
            do {
                let evidence = try await StepRunner(ctx: ctx, step: gate).act()
                verdicts.append(
                    GateVerdict(
                        transition: number, summary: summary, verdict: "proceed",
                        message: "would proceed: " + (try Self.proof(gate, evidence)),
                        provisional: number > 1, evidence: try evidence.journalFields(run: "check", step: gate)))
            } catch let error as FailoverError where error.code == .refused {
                verdicts.append(
                    GateVerdict(
                        transition: number, summary: summary, verdict: "refuse", message: "would refuse: " + error.message,
                        provisional: number > 1,
                        evidence: [:]))
            } catch {
                verdicts.append(
                    GateVerdict(
                        transition: number, summary: summary, verdict: "unknown", message: "cannot tell: \(error)", provisional: number > 1,
                        evidence: [:]))
            }
        }
        return verdicts
    }

    /// "switchover to dr", "rewind prod from dr"…
    static func summary(_ t: Transition) -> String {
        var text = t.action.rawValue + " " + t.subject
        if let upstream = t.upstream { text += " from \(upstream)" }
        if let source = t.source { text += " from \(source)" }
        return text
    }

    /// What a gate that passes proved, in words.
    static func proof(_ gate: Step, _ evidence: any StepEvidence) throws -> String {
        switch (gate.operation, evidence) {
        case (.gateSwitchover(let target, let primary), let e as SwitchoverGateEvidence):
            let override = e.override.map { " (\($0))" } ?? ""
            return "\(target) streams from \(primary), \(e.lagBytes) bytes behind, same timeline \(e.timeline)\(override)"
        case (.gateFailover(let target), let e as FailoverGateEvidence):
            let candidates = e.candidates.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            return "\(target) holds the most WAL (\(e.targetLSN) on timeline \(e.targetTimeline))"
                + (candidates.isEmpty ? "" : "; candidates: " + candidates.joined(separator: ", "))
        default:
            return try evidence.journalFields().sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        }
    }
}
