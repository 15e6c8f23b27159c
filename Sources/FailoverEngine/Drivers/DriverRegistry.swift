import Foundation
import Logging

/// How one kind of site is driven.
public struct DriverTraits: Sendable {
    /// The site driver of a site-level kind: a manager (Patroni) runs the servers, and failoverd asks it for
    /// whole-site requests and for its members' status. Nil for an instance-level kind: failoverd owns the
    /// servers and drives each primitive through the run's instance driver.
    let siteDriver: (@Sendable (Plan, Logger) -> any SiteDriver)?
    /// What failoverd's host needs for every real run of such a site (a rehearsal needs nothing).
    public let hostNeeds: [HostTool]
    /// What failoverd's host needs for one step of such a site, beyond ``hostNeeds``.
    let stepNeeds: @Sendable (StepOperation) -> [HostTool]

    /// How the planner expands the site's transitions, and so where its members' status is read:
    /// `instanceSteps`, the PostgreSQL primitives, one journaled step each, carried out and probed by the run's
    /// instance driver; `siteSteps`, one step per request to the site's own ``SiteDriver``, which also
    /// reports its members (``InstanceObserver``).
    public var expansion: StepExpansion { siteDriver == nil ? .instanceSteps : .siteSteps }
}

/// One place for what each ``DriverKind`` means to a run, for every caller (`plan`, `check`, `drill`, `run`,
/// `run --simulate`, `resume`, `status`, `adopt`): how its sites' transitions become steps (``Planner``
/// asks ``expansion(of:)``), where its members' status is read, which drivers a run gets, and what
/// failoverd's host needs. A rehearsal (`--simulate`) swaps the drivers, never the steps: a site-level site
/// is driven by ``SimulatedSite``, an instance-level one by ``SimulatedDriver``.
public enum DriverRegistry {
    /// The traits of `kind`.
    public static func traits(of kind: DriverKind) -> DriverTraits {
        switch kind {
        case .local:
            DriverTraits(siteDriver: nil, hostNeeds: [.postgresBinaries, .pgBackRest], stepNeeds: { _ in [] })
        case .ssh:
            DriverTraits(
                siteDriver: nil, hostNeeds: [.openSSH],
                stepNeeds: { operation in
                    // A capture copies the former primary's WAL here and reads it with pg_waldump, here.
                    guard case .captureDivergence = operation else { return [] }
                    return [.postgresBinaries]
                })
        case .simulated:
            DriverTraits(siteDriver: nil, hostNeeds: [], stepNeeds: { _ in [] })
        case .patroni:
            DriverTraits(
                siteDriver: { PatroniSite(plan: $0, logger: $1) }, hostNeeds: [.curl],
                stepNeeds: { operation in
                    switch operation {
                    // A rebuild restores the members' data directories here, with pgBackRest, under Patroni's pause.
                    case .rejoinSite(_, _, .rebuild): return [.postgresBinaries, .pgBackRest]
                    // A capture reads the former leader's WAL (from its data directory here, or the repository
                    // with pgBackRest) and lists it with pg_waldump, here.
                    case .captureDivergence: return [.postgresBinaries, .pgBackRest]
                    default: return []
                    }
                })
        }
    }

    /// How `site`'s transitions become steps (``DriverTraits/expansion``).
    public static func expansion(of site: Site) -> StepExpansion { traits(of: site.driver).expansion }

    /// The driver journaled with a run of `plan`, whose instance driver carries out the plan's instance steps:
    /// `simulated` with --simulate or when every site is simulated, `ssh` when a site is, `local` otherwise
    /// (a plan of site-level sites only included, as every journal has recorded it).
    public static func runDriver(plan: Plan, simulate: Bool) -> DriverKind {
        if simulate || plan.sites.allSatisfy({ $0.driver == .simulated }) { return .simulated }
        return plan.sites.contains { $0.driver == .ssh } ? .ssh : .local
    }

    /// One program failoverd's host needs, and what needs it.
    public struct HostNeed: Sendable, Equatable {
        /// The program.
        public var tool: HostTool
        /// The site or step that needs it, in words.
        public var neededBy: String
    }

    /// What failoverd's host needs for a run of `plan` journaled with `runDriver`: each site's kind's needs,
    /// and those of the plan's steps. A rehearsal needs nothing.
    public static func hostNeeds(plan: Plan, runDriver: DriverKind) -> [HostNeed] {
        guard runDriver != .simulated else { return [] }
        var needs: [HostNeed] = []
        func add(_ tools: [HostTool], _ neededBy: String) {
            for tool in tools where !needs.contains(where: { $0.tool == tool }) { needs.append(HostNeed(tool: tool, neededBy: neededBy)) }
        }
        for site in plan.sites { add(traits(of: site.driver).hostNeeds, "site \"\(site.name)\" (driver \(site.driver))") }
        for step in (try? Planner(plan: plan).steps().get()) ?? [] {
            guard let site = plan.site(named: step.site) else { continue }
            add(traits(of: site.driver).stepNeeds(step.operation), "step \(step.number) (\(step.summary))")
        }
        return needs
    }

    /// Throws an invalid-input error (exit 2) naming every program of ``hostNeeds(plan:runDriver:)`` that
    /// `tools` cannot find, what needs it and how to install it.
    public static func checkHost(plan: Plan, runDriver: DriverKind, tools: HostTools) throws {
        let missing = hostNeeds(plan: plan, runDriver: runDriver).filter { tools.locate($0.tool) == nil }
        guard !missing.isEmpty else { return }
        throw FailoverError.invalid(
            missing.map { "\(tools.missing($0.tool)); \($0.neededBy) needs it on this host." }.joined(separator: "\n"))
    }

    /// The instance driver of a run of `plan` journaled with `runDriver`, once the host has what the plan
    /// needs: the simulated one, the SSH one, or the local one; ``NoInstanceDriver`` when every site is
    /// driven at the site level (Patroni), so that no PostgreSQL program is needed on this host for them.
    public static func instanceDriver(plan: Plan, runDriver: DriverKind, stateDirectory: String, tools: HostTools, logger: Logger)
        throws -> any InstanceDriver
    {
        let owned = plan.sites.filter { expansion(of: $0) == .instanceSteps }
        switch runDriver {
        case .simulated:
            return try SimulatedDriver(plan: plan, stateDirectory: stateDirectory)
        case .ssh:
            if let other = owned.first(where: { $0.driver != .ssh }) {
                throw FailoverError.invalid(
                    "site \"\(other.name)\" uses driver \(other.driver) while other sites use ssh; one run drives its sites through one driver: make every site ssh (this host's sites too, through its own sshd) or none."
                )
            }
            try checkHost(plan: plan, runDriver: runDriver, tools: tools)
            return try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
        case .local:
            try checkHost(plan: plan, runDriver: runDriver, tools: tools)
            guard !owned.isEmpty else { return NoInstanceDriver() }
            return try LocalPostgresDriver(plan: plan, binDirectory: tools.postgresBinDirectory, logger: logger)
        case .patroni:
            throw FailoverError.invalid(
                "a run's driver is local, ssh or simulated; patroni drives the sites of a plan, not its runs (the journal says otherwise: look at it with failoverd status)."
            )
        }
    }

    /// The site driver of each site-level site of `plan`, by name, for a run journaled with `runDriver`: its
    /// kind's own (``PatroniSite``), or ``SimulatedSite`` in a rehearsal. Instance-level sites have none: their
    /// site level is ``InstanceSite`` over the instance driver.
    public static func siteDrivers(plan: Plan, runDriver: DriverKind, stateDirectory: String, logger: Logger) throws
        -> [String: any SiteDriver]
    {
        var drivers: [String: any SiteDriver] = [:]
        var world: SimulatedDriver?
        for site in plan.sites {
            guard let make = traits(of: site.driver).siteDriver else { continue }
            guard runDriver == .simulated else {
                drivers[site.name] = make(plan, logger)
                continue
            }
            let simulated = try world ?? SimulatedDriver(plan: plan, stateDirectory: stateDirectory)
            world = simulated
            drivers[site.name] = SimulatedSite(world: simulated, timeout: plan.policy.stepTimeoutSeconds)
        }
        return drivers
    }

    /// Throws unless every site-level site of `plan` has its site driver in `sites`: a Patroni member is never
    /// driven, or probed, as if failoverd owned its server.
    static func requireSiteDrivers(_ plan: Plan, _ sites: [String: any SiteDriver]) throws {
        if let site = plan.sites.first(where: { expansion(of: $0) == .siteSteps && sites[$0.name] == nil }) {
            throw FailoverError.invalid(
                "site \"\(site.name)\" (driver \(site.driver)) is driven at the site level, and this run has no site driver for it; failoverd will not reach its members as if it owned their servers."
            )
        }
    }

    /// How often waits poll with `driver`: the simulated clock needs no pause.
    public static func pollInterval(_ driver: any InstanceDriver) -> Double { driver is SimulatedDriver ? 0.001 : 0.05 }
}
