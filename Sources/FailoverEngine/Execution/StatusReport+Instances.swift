import Foundation
import Logging

extension StatusReport {
    /// How one instance of an unfinished run's plan would come up if started now, whoever starts it.
    public struct InstanceStart: Codable, Sendable, Equatable {
        /// The instance.
        public var instance: String
        /// The site it belongs to.
        public var site: String
        /// What a probe sees now: "stopped", "a standby (in recovery)", "a primary accepting writes", …
        public var seen: String
        /// How it starts: "a standby of dr-0", "an archive standby", "refused by failoverd (fenced)…", or
        /// "a primary".
        public var startsAs: String
    }

    /// For an unfinished run (running or failed), each instance of its plan: what it is now and how it
    /// would start, from failoverd's standby settings and fence records. Nil when the last run is finished.
    public static func unfinishedRunInstances(stateDirectory: String, logger: Logger) async throws -> [InstanceStart]? {
        let journal = try Journal(stateDirectory: stateDirectory)
        guard let run = try journal.unfinishedRun() else { return nil }
        let plan = try run.plan()
        guard let kind = DriverKind(rawValue: run.driver) else {
            throw FailoverError.invalid("run \(run.id) was journaled with driver \(run.driver), which this failoverd does not know")
        }
        let driver = try DriverRegistry.instanceDriver(
            plan: plan, runDriver: kind, stateDirectory: stateDirectory, tools: .system, logger: logger)
        let observer = InstanceObserver(
            plan: plan, driver: driver,
            sites: try DriverRegistry.siteDrivers(plan: plan, runDriver: kind, stateDirectory: stateDirectory, logger: logger))
        var result: [InstanceStart] = []
        for (site, instance) in plan.allInstances {
            let seen: String
            do { seen = try await observer.status(of: instance).seen } catch { seen = "unknown (\(error))" }
            let startsAs: String
            do {
                if observer.managed(site) != nil {
                    startsAs = "as its \(site.driver) cluster starts it (failoverd does not own its standby settings)"
                } else if let settings = try await driver.recoverySettings(of: instance) {
                    startsAs = settings.upstream.map { "a standby of \($0.name)" } ?? "an archive standby"
                } else if try journal.isFenced(instance: instance.name) {
                    startsAs = "refused by failoverd (fenced); no standby settings yet"
                } else {
                    startsAs = try await driver.hasData(instance) ? "a primary" : "nothing (no data directory)"
                }
            } catch {
                startsAs = "unknown (\(error))"
            }
            result.append(InstanceStart(instance: instance.name, site: site.name, seen: seen, startsAs: startsAs))
        }
        return result
    }
}
