import Foundation
import Logging

/// What `failoverd status --plan PLAN` shows on any machine: the coordinated run of the plan's cluster, as
/// etcd holds it.
public struct CoordinatedStatus: Codable, Sendable {
    /// The PostgreSQL system identifier that names the cluster.
    public var cluster: String
    /// The lock key.
    public var lockKey: String
    /// The coordinator holding the lock, when one does.
    public var holder: Coordinator.Holder?
    /// Its fencing token (the lock key's create revision).
    public var token: Int64?
    /// Seconds the holder's lease has left; nil when no lock is held.
    public var leaseSecondsLeft: Int64?
    /// True while the holder's lease is alive.
    public var leaseAlive: Bool
    /// The cluster's latest run in etcd.
    public var run: String?
    /// Its plan.
    public var plan: String?
    /// Its outcome (running, failed, succeeded…).
    public var outcome: String?
    /// Its latest step with a status other than pending: `N kind status`.
    public var step: String?
    /// When that step started (or the run, when no step did).
    public var since: String?
    /// Events in the cluster's audit chain.
    public var auditEvents: Int

    /// Reads the cluster of `plan` from etcd (the identity from its servers, else this state directory).
    public static func read(plan: Plan, stateDirectory: String, simulate: Bool = false, logger: Logger) async throws -> CoordinatedStatus {
        guard let settings = plan.coordination?.etcd else {
            throw FailoverError.invalid(
                "plan \"\(plan.name)\" has no \"coordination\": there is no cluster-wide state to show; `failoverd status --state DIR` shows one state directory. \(Coordination.summary(nil))"
            )
        }
        let file = (stateDirectory as NSString).appendingPathComponent("journal.sqlite")
        let journal = FileManager.default.fileExists(atPath: file) ? try Journal(stateDirectory: stateDirectory) : try Journal(inMemory: ())
        let drivers = StandardDrivers(stateDirectory: stateDirectory, simulate: simulate, logger: logger)
        let kind = drivers.kind(plan: plan)
        let driver = try drivers.make(plan: plan, kind: kind)
        let identifier = try await ClusterIdentity.systemIdentifier(
            plan: plan, driver: driver, sites: try drivers.siteDrivers(plan: plan, kind: kind), journal: journal)
        let c = Coordinator(settings: settings, systemIdentifier: identifier)
        do {
            let lock = try await c.currentLock()
            let runs = try await c.range("j/runs/")
            let rows = runs.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.value.utf8))) as? [String: Any] }
            let latest = rows.max { ($0["started_at"] as? String ?? "") < ($1["started_at"] as? String ?? "") }
            var step: String?
            var since = latest?["started_at"] as? String
            if let id = latest?["id"] as? String {
                let steps = try await c.range("j/steps/\(id)/").compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.value.utf8))) as? [String: Any]
                }
                if let s = steps.last(where: { ($0["status"] as? String ?? "pending") != "pending" }) {
                    step = "\(s["number"] as? Int ?? 0) \(s["kind"] as? String ?? "?") \(s["status"] as? String ?? "?")"
                    since = s["started_at"] as? String ?? since
                }
            }
            let audit = try await c.range("j/audit/")
            return CoordinatedStatus(
                cluster: identifier, lockKey: c.lockKey, holder: lock?.holder, token: lock?.value.createRevision,
                leaseSecondsLeft: lock?.ttl, leaseAlive: (lock?.ttl ?? 0) > 0, run: latest?["id"] as? String,
                plan: latest?["plan_name"] as? String, outcome: latest?["outcome"] as? String, step: step, since: since,
                auditEvents: audit.count)
        } catch let e as FailoverError {
            throw e
        } catch {
            throw c.unreachable(error, doing: "reading the cluster's run")
        }
    }
}
