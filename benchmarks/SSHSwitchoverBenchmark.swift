@_spi(Benchmarks) import FailoverEngine
import Foundation

/// Write unavailability of failoverd's switchover over SSH in the lab, against the same switchover by the
/// local driver on loopback, in the same run: both topologies up, each under its own two writers, and
/// the rounds alternate (local, then SSH) so both see the same machine.
struct SSHSwitchoverBenchmark: Sendable {
    /// A plan of two local sites on loopback (primary, streaming standby).
    let local: Plan
    /// The same topology as ssh sites for the lab (each instance on its own port: the ledger tells the
    /// new primary's writes by port).
    let ssh: Plan
    /// Rounds: each is one local and one SSH switchover.
    let rounds: Int
    /// The state directory of the sandbox and lab manifests.
    let stateDirectory: String
    /// Progress lines.
    let say: @Sendable (String) -> Void

    /// The benchmark.
    init(local: Plan, ssh: Plan, rounds: Int, stateDirectory: String, say: @escaping @Sendable (String) -> Void) {
        self.local = local
        self.ssh = ssh
        self.rounds = rounds
        self.stateDirectory = stateDirectory
        self.say = say
    }

    /// Two plans of the same topology under `root` (paths `ROOT-local/…` and `ROOT/…`): local sites on free
    /// loopback ports, and ssh sites on 198.18.1.10:5432 and 198.18.2.10:5433 for the lab.
    static func plans(root: String) throws -> (local: Plan, ssh: Plan) {
        let ports = try FreePorts.take(2)
        func site(_ name: String, _ role: Role, _ driver: DriverKind, _ host: String, _ port: Int, _ dir: String) -> BenchPlan.SiteSpec {
            BenchPlan.SiteSpec(name: name, role: role, driver: driver, host: host, port: port, dataDirectory: dir + "/data/" + name + "-0")
        }
        func plan(_ name: String, _ dir: String, _ sites: [BenchPlan.SiteSpec]) throws -> Plan {
            try BenchPlan.make(
                name: name, repository: dir + "/repo", stanza: "bench", passfile: dir + "/secrets/pgpass", stepTimeoutSeconds: 60,
                sites: sites)
        }
        let localDir = root + "-local"
        let local = try plan(
            "bench-local", localDir,
            [
                site("prod", .primary, .local, "127.0.0.1", ports[0], localDir),
                site("dr", .streamingStandby, .local, "127.0.0.1", ports[1], localDir),
            ])
        var sshSites = [
            site("dc1", .primary, .ssh, "198.18.1.10", 5432, root), site("dc2", .streamingStandby, .ssh, "198.18.2.10", 5433, root),
        ]
        for i in sshSites.indices {
            sshSites[i].ssh = ["user": "fodlab", "identityFile": root + "/ssh/id_ed25519", "knownHostsFile": root + "/ssh/known_hosts"]
        }
        let ssh = try plan("bench-ssh", root, sshSites)
        return (local, ssh)
    }

    /// Seconds of write unavailability of each local and each SSH switchover.
    func run() async throws -> (local: [Double], ssh: [Double]) {
        try StateDirectory.prepare(stateDirectory)
        let sandbox = Sandbox(plan: local, stateDirectory: stateDirectory)
        let lab = Lab(plan: ssh, stateDirectory: stateDirectory)
        do {
            if sandbox.exists { try await sandbox.down() }
            if lab.exists { try await lab.down() }
            try await sandbox.up()
            try await lab.up()
            let result = try await measure()
            try await lab.down()
            try await sandbox.down()
            return result
        } catch {
            if lab.exists { _ = try? await lab.down() }
            if sandbox.exists { _ = try? await sandbox.down() }
            throw error
        }
    }

    /// One side: its plan, its workload and which site is primary now.
    final class Side: @unchecked Sendable {
        let plan: Plan
        let workload: Workload
        var primary: Site
        var standby: Site
        init(plan: Plan, clock: DrillClock, driver: LocalPostgresDriver) throws {
            self.plan = plan
            guard let p = plan.declaredPrimary, let s = plan.sites.first(where: { $0.role == .streamingStandby }) else {
                throw FailoverError.invalid("the benchmark needs a primary site and a streaming-standby site in \(plan.name)")
            }
            primary = p
            standby = s
            workload = Workload(instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 2, clock: clock) {
                driver.adminConnInfo($0)
            }
        }
    }

    func measure() async throws -> (local: [Double], ssh: [Double]) {
        let clock = DrillClock()
        // The observer reads both through the local driver: in the lab every host shares this file system and
        // process table, and SQL goes to 198.18.x as it would to any host.
        let localSide = try Side(plan: local, clock: clock, driver: try LocalPostgresDriver(plan: local))
        let sshSide = try Side(plan: ssh, clock: clock, driver: try LocalPostgresDriver(plan: ssh))
        let observer = SwitchoverBenchmark(plan: local, rounds: rounds, stateDirectory: stateDirectory, say: say)
        for side in [localSide, sshSide] {
            try await side.workload.prepare(primary: side.primary.leader)
            side.workload.start()
        }
        var results: ([Double], [Double]) = ([], [])
        do {
            for round in 1...rounds {
                for (index, side) in [localSide, sshSide].enumerated() {
                    let driver = try LocalPostgresDriver(plan: side.plan)
                    try await observer.caughtUp(side.standby.leader, behind: side.primary.leader, driver)
                    let (target, workload) = (side.standby.leader, side.workload)
                    let window = try await SwitchoverBenchmark.throughEngine(
                        side.plan, from: side.primary.name, to: side.standby.name, clock: clock
                    ) { try await observer.unavailability(since: $0, on: target, workload) }
                    if index == 0 { results.0.append(window) } else { results.1.append(window) }
                    swap(&side.primary, &side.standby)
                }
                say(String(format: "round %d: local %.3f s, ssh %.3f s", round, results.0.last!, results.1.last!))
            }
        } catch {
            for side in [localSide, sshSide] { await side.workload.stop() }
            throw error
        }
        for side in [localSide, sshSide] { await side.workload.stop() }
        return results
    }
}
