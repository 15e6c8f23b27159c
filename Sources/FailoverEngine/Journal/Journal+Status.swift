import Foundation
import GRDB

extension Journal {
    /// What `failoverd status` shows: each site's recorded role, the last run with its step counts, the run
    /// lock and the fenced instances, read in one transaction.
    func statusReport(stateDirectory: String) throws -> StatusReport {
        try db.read { db in
            let sites = try Row.fetchAll(db, sql: "SELECT * FROM site_roles ORDER BY site").map {
                StatusReport.SiteRole(name: $0["site"], role: $0["role"], runID: $0["run_id"], updatedAt: $0["updated_at"])
            }
            var last: StatusReport.LastRun?
            if let r = try Row.fetchOne(db, sql: "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1") {
                let id: String = r["id"]
                let counts = try Row.fetchOne(
                    db,
                    sql: "SELECT sum(status='done') d, sum(status='satisfied') s, sum(status='started') i FROM steps WHERE run_id = ?",
                    arguments: [id])
                let outcome = try RunState(journaled: r["outcome"], run: id)
                last = StatusReport.LastRun(
                    id: id, plan: r["plan_name"], driver: r["driver"], drill: r["is_drill"], outcome: outcome, startedAt: r["started_at"],
                    endedAt: r["ended_at"], steps: r["step_count"], stepsDone: counts?["d"] ?? 0, stepsSatisfied: counts?["s"] ?? 0,
                    stepsInDoubt: counts?["i"] ?? 0, error: r["error"],
                    resume: outcome == .running || outcome == .failed ? "failoverd resume \(id) --state \(stateDirectory)" : nil)
            }
            guard let l = try Row.fetchOne(db, sql: "SELECT * FROM run_lock WHERE id = 1") else {
                throw FailoverError.invalid("the journal \(path) has no run lock row; it is not a failoverd journal")
            }
            let lock = (l["pid"] as Int?).map {
                StatusReport.LockHolder(
                    runID: l["run_id"], pid: $0, host: l["host"] ?? "?", acquiredAt: l["acquired_at"], epoch: l["epoch"],
                    alive: RunLock.isAlive(
                        pid: Int32($0), host: l["host"] ?? "?", startTime: l["pid_start_time"], renewedAt: l["renewed_at"],
                        lease: l["lease_seconds"] ?? 30))
            }
            let fenced = try String.fetchAll(db, sql: "SELECT instance FROM fenced_instances ORDER BY instance")
            var report = StatusReport(
                sites: sites, lastRun: last, lock: lock, epoch: l["epoch"], fenced: fenced, stateDirectory: stateDirectory)
            if let json = try String.fetchOne(db, sql: "SELECT plan_json FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1") {
                report.coordination = Coordination.summary((try? Plan.decode(Data(json.utf8)))?.coordination)
            }
            return report
        }
    }
}
