import Foundation

/// Chooses the driver for a run: simulated with --simulate or when every site says `simulated`, local otherwise.
public enum DriverFactory {
    /// The driver for `plan`.
    public static func make(plan: Plan, stateDirectory: String, simulate: Bool) throws -> any SiteDriver {
        if simulate || plan.sites.allSatisfy({ $0.driver == "simulated" }) {
            return try SimulatedDriver(plan: plan, stateDirectory: stateDirectory)
        }
        return try LocalPostgresDriver(plan: plan)
    }

    /// The driver name recorded with the run.
    public static func name(plan: Plan, simulate: Bool) -> String {
        simulate || plan.sites.allSatisfy({ $0.driver == "simulated" }) ? "simulated" : "local"
    }

    /// How often waits poll: the simulated clock needs no pause.
    static func pollInterval(_ driver: any SiteDriver) -> Double { driver is SimulatedDriver ? 0.001 : 0.05 }
}
