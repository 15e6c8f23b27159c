import Foundation
import GRDB

/// What `failoverd status` shows: each site's recorded role, the last run and the lock.
public struct StatusReport: Codable, Sendable {
    /// A site and its recorded role.
    public struct SiteRole: Codable, Sendable, Equatable {
        /// The site name.
        public var name: String
        /// The recorded role.
        public var role: String
        /// The run that set it (nil when adopted from a plan's declaration).
        public var runID: String?
        /// When it was recorded.
        public var updatedAt: String
    }

    /// The last run.
    public struct LastRun: Codable, Sendable {
        public var id: String
        public var plan: String
        public var driver: String
        public var drill: Bool
        public var outcome: RunState
        public var startedAt: String
        public var endedAt: String?
        public var steps: Int
        public var stepsDone: Int
        public var stepsSatisfied: Int
        public var stepsInDoubt: Int
        public var error: String?
        /// The command that continues it, when it is unfinished.
        public var resume: String?
    }

    /// The run lock's holder, when one holds it.
    public struct LockHolder: Codable, Sendable {
        public var runID: String?
        public var pid: Int
        public var host: String
        public var acquiredAt: String?
        public var epoch: Int64
        /// False when the holder is gone: the next run or resume takes the lock over.
        public var alive: Bool
    }

    /// Sites by name.
    public var sites: [SiteRole]
    /// The last run, if any.
    public var lastRun: LastRun?
    /// The lock holder, if any.
    public var lock: LockHolder?
    /// The fencing epoch.
    public var epoch: Int64
    /// Instances failoverd has fenced and will not start as primaries.
    public var fenced: [String]
    /// The state directory.
    public var stateDirectory: String
    /// For an unfinished run, each instance of its plan and how it would start now (filled in by the
    /// `status` verb through the run's driver; see ``unfinishedRunInstances(stateDirectory:logger:)``).
    public var instances: [InstanceStart]?
    /// What keeps a second machine from running a plan on these sites (the last run's plan): plainly nothing
    /// without coordination (``Coordination/summary(_:)``); nil before any run.
    public var coordination: String?
    /// With `--plan`: the coordinated run of the plan's cluster, as etcd holds it.
    public var coordinated: CoordinatedStatus?

    /// Reads the report from a state directory's journal.
    public static func read(stateDirectory: String) throws -> StatusReport {
        try Journal(stateDirectory: stateDirectory).statusReport(stateDirectory: stateDirectory)
    }
}
