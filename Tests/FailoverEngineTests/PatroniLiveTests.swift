import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// Transitions away from a Patroni site that still runs (Patroni and PostgreSQL answering): the ordinary
/// failover away from a degraded but running data center. Real etcd, Patroni 4.1 and PostgreSQL 15.
@Suite(.serialized) struct PatroniLiveTests {
    static let layout = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    func patroni(_ fx: SandboxFixture) -> PatroniSite { PatroniSite(plan: fx.plan, timeout: 60, pollInterval: 0.1) }

    func role(_ fx: SandboxFixture, _ instance: Instance) async throws -> String? {
        let site = try #require(fx.plan.sites.first { $0.instances.contains(instance) })
        return try await patroni(fx).memberInfo(site, instance)["role"] as? String
    }

    /// The fenced leader: Patroni's standby leader, in recovery, with no WAL source, refusing a write.
    func expectFencedStandbyLeader(_ fx: SandboxFixture, _ instance: Instance) async throws {
        #expect(try await role(fx, instance) == "standby_leader")
        #expect(try await fx.driver.status(of: instance).inRecovery)
        #expect(try await patroni(fx).replaysNothing(instance))
        await #expect(throws: (any Error).self) {
            try await fx.sql(instance, "CREATE TABLE fenced_write (id int)")
        }
        let section = try await patroni(fx).config(fx.plan.site(named: "prod")!)["standby_cluster"] as? [String: Any]
        #expect(section?["host"] == nil && section?["port"] == nil && section?["primary_slot_name"] == nil, "\(section ?? [:])")
        #expect(section?["restore_command"] as? String == "/bin/false")
    }

    @Test("fence of a live Patroni site: its primary becomes a standby leader that replays nothing and takes no write")
    func fenceLiveSite() async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let prod = fx.instance("prod-0")
            let version =
                try #require(
                    try await patroni(fx).memberInfo(fx.plan.site(named: "prod")!, prod)["patroni"] as? [String: Any])["version"] as? String
            print("Patroni \(version ?? "unknown") (FAILOVERD_SANDBOX_PATRONI chooses another)")
            try await fx.insertRows(1...5, on: prod)
            let path = try fx.planFile("fence", [Transition(action: .fence, site: "prod")])
            let run = try await fx.failoverd(["run", path, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            try await expectFencedStandbyLeader(fx, prod)
            #expect(try Journal(stateDirectory: fx.state).recordedRoles()["prod"] == .fenced)
        }
    }

    @Test(
        "failover away from a live Patroni site under write load loses no acknowledged commit; failback (rewind, rebuild)",
        arguments: [FailbackMethod.rewind, .rebuild])
    func failoverFromLiveSiteThenFailback(method: FailbackMethod) async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            let workload = Workload(
                instances: fx.plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 2, clock: DrillClock(),
                connInfo: { [plan = fx.plan] in plan.adminConnInfo($0) })
            try await workload.prepare(primary: prod)
            workload.start()
            // Writes are acknowledged on prod before the failover starts.
            _ = try await Poll.until("the writers to commit on prod-0", timeout: 60, interval: 0.05) {
                workload.ledger.current.entries.filter(\.acknowledged).count >= 50 ? true : nil
            }
            let failover = try fx.planFile("failover", [Transition(action: .failover, to: "dr")])
            let f = try await fx.failoverd(["run", failover, "--quiet"])
            // The writers follow the new primary for a moment, then stop.
            if f.status == 0 {
                _ = try await Poll.until("the writers to commit on dr-0", timeout: 60, interval: 0.05) {
                    workload.ledger.current.entries.contains { $0.acknowledged && $0.port == dr.port } ? true : nil
                }
            }
            await workload.stop()
            #expect(f.status == 0, "\(f.stderr)")
            #expect(try await fx.driver.status(of: dr).isWritablePrimary)
            try await expectFencedStandbyLeader(fx, prod)
            // Patroni's fast stop sent prod-0's last WAL to dr-0, which streamed from it: every commit the
            // writers saw acknowledged is on the new primary.
            let acknowledged = Set(workload.ledger.current.entries.filter(\.acknowledged).map(\.id))
            let present = Set(
                try await fx.sql(dr, "SELECT id FROM \(Workload.table)").compactMap { $0.first.flatMap { $0 }.flatMap { Int64($0) } })
            #expect(
                acknowledged.subtracting(present).isEmpty,
                "acknowledged commits missing on dr-0: \(acknowledged.subtracting(present).count)")
            #expect(acknowledged.count > 50)
            let journal = try Journal(stateDirectory: fx.state)
            #expect(try journal.recordedRoles() == ["prod": .fenced, "dr": .primary])

            try await fx.insertRows(1...3, on: dr)
            try await fx.runPatroniFailback(method)
            #expect(try await fx.driver.status(of: prod).isWritablePrimary)
            #expect(try await fx.sql(prod, "SELECT count(*) FROM t").first?.first == "3")
            let onProd = try await fx.sql(prod, "SELECT count(*) FROM \(Workload.table)").first?.first.flatMap { $0 }.flatMap { Int($0) }
            #expect(onProd ?? 0 >= acknowledged.count)
            try await fx.insertRows(4...4, on: prod)
            _ = try await fx.waitForStreaming(dr, from: prod)
            try await fx.waitForRow(4, on: dr)
            #expect(try journal.recordedRoles() == ["prod": .primary, "dr": .streamingStandby])
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    @Test(
        "a member whose Patroni answers but whose PostgreSQL does not (postmaster stopped by SIGSTOP): the failover is refused, nothing changed"
    )
    func hungPostgresIsRefused() async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            try await fx.insertRows(1...5, on: prod)
            let postmaster = try #require(Postmaster.livePID(in: prod.dataDirectory))
            kill(postmaster, SIGSTOP)
            defer { kill(postmaster, SIGCONT) }
            let failover = try fx.planFile("failover", [Transition(action: .failover, to: "dr")])
            let f = try await fx.failoverd(["run", failover, "--quiet"])
            #expect(f.status == 3, "\(f.stderr)")
            #expect(f.stderr.contains("prod-0") && f.stderr.contains("--assume-fenced prod"), "\(f.stderr)")
            #expect(f.stderr.contains("Nothing was changed"), "\(f.stderr)")
            kill(postmaster, SIGCONT)
            // Patroni was asked nothing: prod-0 is still its primary, dr-0 still a standby.
            #expect(try await role(fx, prod) == "primary")
            #expect(try await patroni(fx).config(fx.plan.site(named: "prod")!)["standby_cluster"] == nil)
            _ = try await Poll.until("prod-0 to answer again", timeout: 60, interval: 0.05) {
                try await fx.driver.status(of: prod).reachable ? true : nil
            }
            #expect(try await fx.driver.status(of: prod).isWritablePrimary)
            #expect(try await fx.driver.status(of: dr).inRecovery)
        }
    }

    @Test(
        "the same hung member vouched for with --assume-fenced: standby_cluster is still set, dr is promoted, and prod-0 comes back read-only"
    )
    func hungPostgresVouched() async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            let postmaster = try #require(Postmaster.livePID(in: prod.dataDirectory))
            kill(postmaster, SIGSTOP)
            defer { kill(postmaster, SIGCONT) }
            let failover = try fx.planFile("failover", [Transition(action: .failover, to: "dr")])
            let f = try await fx.failoverd(["run", failover, "--quiet", "--assume-fenced", "prod"])
            #expect(f.status == 0, "\(f.stderr)")
            #expect(try await fx.driver.status(of: dr).isWritablePrimary)
            let journal = try Journal(stateDirectory: fx.state)
            let fenceStep = try journal.steps(of: try #require(try journal.lastRun()).id).first { $0.step.kind == .fenceSite }
            #expect(try fenceStep?.evidence(as: FenceEvidence.self)?.fencedBy?.contains("--assume-fenced prod") == true)
            // Patroni holds the fence's configuration: once the postmaster runs again, Patroni demotes it.
            kill(postmaster, SIGCONT)
            _ = try await Poll.until("prod-0 to come back as a standby leader", timeout: 60, interval: 0.1) { () async throws -> Bool? in
                guard (try? await fx.driver.status(of: prod))?.reachable == true else { return nil }
                return try await role(fx, prod) == "standby_leader" ? true : nil
            }
            try await expectFencedStandbyLeader(fx, prod)
        }
    }
}
