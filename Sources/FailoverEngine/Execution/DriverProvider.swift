import Foundation
import Logging

/// Gives the executor the drivers of a plan: the seam that lets tests run a scripted driver in process.
/// Which steps a plan has is not the provider's to say: ``Planner`` decides it from the plan alone.
public protocol DriverProvider: Sendable {
    /// The driver journaled with a run of `plan` (`local`, `ssh`, `simulated`).
    func kind(plan: Plan) -> DriverKind
    /// The instance driver of `plan`'s instance-level sites, for a run journaled with `kind` (a resume passes
    /// the run's).
    func make(plan: Plan, kind: DriverKind) throws -> any InstanceDriver
    /// How often waits poll, in seconds, with this driver.
    func pollInterval(_ driver: any InstanceDriver) -> Double
    /// The site driver of each site-level site of `plan` (``DriverRegistry/expansion(of:)``), by site name,
    /// for a run journaled with `kind`. Every site-level site must have one: a run refuses to start without.
    func siteDrivers(plan: Plan, kind: DriverKind) throws -> [String: any SiteDriver]
}

/// The drivers of a state directory, as ``DriverRegistry`` says: simulated with --simulate (or when every
/// site says `simulated`), the sites' own drivers otherwise.
public struct StandardDrivers: DriverProvider {
    /// The state directory (the simulated world lives there).
    public var stateDirectory: String
    /// Run against the simulated drivers.
    public var simulate: Bool
    /// Where the drivers log.
    public var logger: Logger
    /// Where this host's programs are.
    public var tools: HostTools

    /// Creates the provider.
    public init(stateDirectory: String, simulate: Bool, logger: Logger, tools: HostTools = .system) {
        self.stateDirectory = stateDirectory
        self.simulate = simulate
        self.logger = logger
        self.tools = tools
    }

    public func kind(plan: Plan) -> DriverKind { DriverRegistry.runDriver(plan: plan, simulate: simulate) }

    /// The registry's instance driver; the SSH driver opens its connections in the background at once.
    public func make(plan: Plan, kind: DriverKind) throws -> any InstanceDriver {
        let driver = try DriverRegistry.instanceDriver(
            plan: plan, runDriver: kind, stateDirectory: stateDirectory, tools: tools, logger: logger)
        (driver as? SSHPostgresDriver)?.warmUp()
        return driver
    }

    public func pollInterval(_ driver: any InstanceDriver) -> Double { DriverRegistry.pollInterval(driver) }

    public func siteDrivers(plan: Plan, kind: DriverKind) throws -> [String: any SiteDriver] {
        try DriverRegistry.siteDrivers(plan: plan, runDriver: kind, stateDirectory: stateDirectory, logger: logger)
    }
}
