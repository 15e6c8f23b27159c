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
        public var outcome: String
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
    /// `status` verb through the run's driver; see ``unfinishedRunInstances(stateDirectory:)``).
    public var instances: [InstanceStart]?

    /// Reads the report from a state directory's journal.
    public static func read(stateDirectory: String) throws -> StatusReport {
        let journal = try Journal(stateDirectory: stateDirectory)
        return try journal.db.read { db in
            let sites = try Row.fetchAll(db, sql: "SELECT * FROM site_roles ORDER BY site").map {
                SiteRole(name: $0["site"], role: $0["role"], runID: $0["run_id"], updatedAt: $0["updated_at"])
            }
            var last: LastRun?
            if let r = try Row.fetchOne(db, sql: "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1") {
                let id: String = r["id"]
                let counts = try Row.fetchOne(
                    db,
                    sql: "SELECT sum(status='done') d, sum(status='satisfied') s, sum(status='started') i FROM steps WHERE run_id = ?",
                    arguments: [id])
                let outcome: String = r["outcome"]
                last = LastRun(
                    id: id, plan: r["plan_name"], driver: r["driver"], drill: r["is_drill"], outcome: outcome, startedAt: r["started_at"],
                    endedAt: r["ended_at"], steps: r["step_count"], stepsDone: counts?["d"] ?? 0, stepsSatisfied: counts?["s"] ?? 0,
                    stepsInDoubt: counts?["i"] ?? 0, error: r["error"],
                    resume: outcome == "running" || outcome == "failed" ? "failoverd resume \(id) --state \(stateDirectory)" : nil)
            }
            let l = try Row.fetchOne(db, sql: "SELECT * FROM run_lock WHERE id = 1")!
            let lock = (l["pid"] as Int?).map {
                LockHolder(
                    runID: l["run_id"], pid: $0, host: l["host"] ?? "?", acquiredAt: l["acquired_at"], epoch: l["epoch"],
                    alive: RunLock.isAlive(
                        pid: Int32($0), host: l["host"] ?? "?", startTime: l["pid_start_time"], renewedAt: l["renewed_at"],
                        lease: l["lease_seconds"] ?? 30))
            }
            let fenced = try String.fetchAll(db, sql: "SELECT instance FROM fenced_instances ORDER BY instance")
            return StatusReport(sites: sites, lastRun: last, lock: lock, epoch: l["epoch"], fenced: fenced, stateDirectory: stateDirectory)
        }
    }
}
