import Foundation
import Logging

/// Gives the executor the driver of a plan: the seam that lets tests run a scripted driver in process.
public protocol DriverProvider: Sendable {
    /// The driver name journaled with a run of `plan` (`local`, `simulated`, …).
    func name(plan: Plan) -> String
    /// The driver for `plan`; `name` is the one journaled with the run (a resume passes the run's).
    func make(plan: Plan, name: String) throws -> any InstanceDriver
    /// How often waits poll, in seconds, with this driver.
    func pollInterval(_ driver: any InstanceDriver) -> Double
    /// The site-level drivers of the plan's managed sites (Patroni, an operator), by site name: their
    /// transitions expand into site steps. Sites not listed are reached through the instance driver.
    func managedSites(plan: Plan) throws -> [String: any SiteDriver]
}

extension DriverProvider {
    /// No managed sites: every site's servers are reached through the instance driver.
    public func managedSites(plan: Plan) throws -> [String: any SiteDriver] { [:] }
}

/// The drivers of a state directory: simulated with --simulate or when every site says `simulated`, local
/// otherwise.
public struct StandardDrivers: DriverProvider {
    /// The state directory (the simulated world lives there).
    public var stateDirectory: String
    /// Run against the simulated driver.
    public var simulate: Bool
    /// Where the drivers log.
    public var logger: Logger

    /// Creates the provider.
    public init(stateDirectory: String, simulate: Bool, logger: Logger) {
        self.stateDirectory = stateDirectory
        self.simulate = simulate
        self.logger = logger
    }

    public func name(plan: Plan) -> String { DriverFactory.name(plan: plan, simulate: simulate) }

    public func make(plan: Plan, name: String) throws -> any InstanceDriver {
        if name == "ssh" {
            let driver = try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
            driver.warmUp()
            return driver
        }
        return try DriverFactory.make(plan: plan, stateDirectory: stateDirectory, simulate: name == "simulated", logger: logger)
    }

    public func pollInterval(_ driver: any InstanceDriver) -> Double { DriverFactory.pollInterval(driver) }

    /// Patroni sites are driven through Patroni's REST API (site steps); under --simulate, every site is
    /// simulated at the instance level.
    public func managedSites(plan: Plan) throws -> [String: any SiteDriver] {
        guard !simulate else { return [:] }
        let patroni = PatroniSite(plan: plan, logger: logger)
        return Dictionary(uniqueKeysWithValues: plan.sites.filter { $0.driver == "patroni" }.map { ($0.name, patroni as any SiteDriver) })
    }
}

/// Chooses the driver for a run: simulated with --simulate or when every site says `simulated`, local otherwise.
public enum DriverFactory {
    /// The driver for `plan`, logging to the caller's `logger`.
    public static func make(plan: Plan, stateDirectory: String, simulate: Bool, logger: Logger) throws -> any InstanceDriver {
        if simulate || plan.sites.allSatisfy({ $0.driver == "simulated" }) {
            return try SimulatedDriver(plan: plan, stateDirectory: stateDirectory)
        }
        if plan.sites.contains(where: { $0.driver == "ssh" }) {
            if let other = plan.sites.first(where: { $0.driver != "ssh" }) {
                throw FailoverError.invalid(
                    "site \"\(other.name)\" uses driver \(other.driver) while other sites use ssh; one run drives its sites through one driver: make every site ssh (this host's sites too, through its own sshd) or none."
                )
            }
            return try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
        }
        return try LocalPostgresDriver(plan: plan, logger: logger)
    }

    /// The driver name recorded with the run.
    public static func name(plan: Plan, simulate: Bool) -> String {
        if simulate || plan.sites.allSatisfy({ $0.driver == "simulated" }) { return "simulated" }
        return plan.sites.contains(where: { $0.driver == "ssh" }) ? "ssh" : "local"
    }

    /// How often waits poll: the simulated clock needs no pause.
    static func pollInterval(_ driver: any InstanceDriver) -> Double { driver is SimulatedDriver ? 0.001 : 0.05 }
}
