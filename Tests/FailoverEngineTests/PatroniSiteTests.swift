import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// Patroni sites for real: etcd (Debian), Patroni 4.1 (PyPI) and PostgreSQL 15 built by `sandbox up`, driven
/// by failoverd through Patroni's REST API only.
@Suite(.serialized) struct PatroniSiteTests {
    static let layout = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    func count(_ fx: SandboxFixture, _ instance: Instance) async throws -> String? {
        try await fx.sql(instance, "SELECT count(*) FROM t").first?.first ?? nil
    }

    func patroni(_ fx: SandboxFixture) -> PatroniSite { PatroniSite(plan: fx.plan, timeout: 60, pollInterval: 0.1) }

    @Test("switchover both ways between two Patroni clusters: the demotion token proved, rows kept, the old site following")
    func switchoverBothWays() async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            try await fx.insertRows(1...20, on: prod)
            let there = try fx.planFile("there", [Transition(action: .switchover, to: "dr")])
            let run = try await fx.failoverd(["run", there, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            let first = try #require(try Journal(stateDirectory: fx.state).lastRun()).id
            #expect(try await fx.driver.status(of: dr).isWritablePrimary)
            // What dr had when it was promoted: 20 rows, and of 21...25 whatever reached the repository.
            let kept = try #require(try await count(fx, dr).flatMap { Int($0) })
            #expect((20...25).contains(kept))
            try await fx.insertRows(21...21, on: dr)
            _ = try await fx.waitForStreaming(prod, from: dr)
            // prod streams through its permanent slot on dr's leader, which keeps WAL for it.
            #expect(try await fx.sql(prod, "SELECT slot_name FROM pg_stat_wal_receiver").first?.first == "failoverd_prod")
            #expect(try await fx.sql(dr, "SELECT active FROM pg_replication_slots WHERE slot_name = 'failoverd_prod'").first?.first == "t")
            try await fx.waitForRow(21, on: prod)
            // Patroni itself says what failoverd asked: dr leads, prod is a standby cluster.
            #expect(try await patroni(fx).memberInfo(fx.plan.site(named: "prod")!, prod)["role"] as? String == "standby_leader")

            let back = try fx.planFile(
                "back", [Transition(action: .switchover, to: "prod")], roles: ["prod": .streamingStandby, "dr": .primary])
            let run2 = try await fx.failoverd(["run", back, "--quiet"])
            #expect(run2.status == 0, "\(run2.stderr)")
            #expect(try await fx.primaryTimeline(prod) == 3)
            try await fx.insertRows(22...22, on: prod)
            _ = try await fx.waitForStreaming(dr, from: prod)
            try await fx.waitForRow(22, on: dr)
            #expect(try await count(fx, dr) == "22")

            let journal = try Journal(stateDirectory: fx.state)
            let second = try #require(try journal.lastRun()).id
            #expect(try journal.recordedRoles() == ["prod": .primary, "dr": .streamingStandby])
            // Each demotion journaled a shutdown checkpoint, and the replay step proved that very token.
            for runID in [first, second] {
                let steps = try journal.steps(of: runID)
                let token = try #require(try steps.first { $0.step.kind == .demote }?.evidence(as: DemotionToken.self))
                let replay = try #require(try steps.first { $0.step.kind == .awaitReplay }?.evidence(as: ReplayEvidence.self))
                #expect(replay.demotionToken == token.text)
            }
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    @Test("the gate refuses a switchover when the target site's leader does not stream from the old one, and nothing changes")
    func gateRefusesWithoutStreaming() async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            let drSite = fx.plan.site(named: "dr")!
            // Outside failoverd, the way an operator would: dr's standby cluster replays from the repository only.
            // Patroni answers 503 until its view of the DCS holds the cluster's configuration (just after bootstrap).
            let response = try await Poll.until("dr's Patroni to hold its cluster configuration", timeout: 60, interval: 0.2) {
                let r = try await patroni(fx).api(drSite).patch(
                    dr.patroni!.url, "/config", json: ["standby_cluster": ["host": NSNull(), "port": NSNull()]])
                return r.status == 503 ? nil : r
            }
            #expect(response.status == 200)
            _ = try await Poll.until("dr-0 to stop streaming", timeout: 60, interval: 0.1) {
                try await fx.driver.status(of: dr).walReceiver?.status == "streaming" ? nil : true
            }
            let path = try fx.planFile("gate", [Transition(action: .switchover, to: "dr")])
            let run = try await fx.failoverd(["run", path, "--quiet"])
            #expect(run.status == 3, "\(run.stderr)")
            #expect(run.stderr.contains("dr-0"), "\(run.stderr)")
            #expect(run.stderr.contains("Nothing was changed"), "\(run.stderr)")
            #expect(try await fx.driver.status(of: prod).isWritablePrimary)
            #expect(try await patroni(fx).memberInfo(fx.plan.site(named: "prod")!, prod)["role"] as? String == "primary")
        }
    }

    @Test(
        "failover with the old site's Patroni and PostgreSQL killed, the old primary back only as a standby, then failback (rewind, rebuild)",
        arguments: [FailbackMethod.rewind, .rebuild])
    func failoverThenFailback(method: FailbackMethod) async throws {
        try await SandboxFixture.with(Self.layout, patroni: true) { fx in
            let (prod, dr) = (fx.instance("prod-0"), fx.instance("dr-0"))
            try await fx.insertRows(1...20, on: prod)
            try await fx.waitForRow(20, on: dr)
            // dr stops streaming (failoverd's own disable-streaming, through Patroni), so prod's next rows
            // exist on prod alone: the timelines diverge at the failover.
            let disable = try fx.planFile("disable", [Transition(action: .disableStreaming, site: "dr")])
            let d = try await fx.failoverd(["run", disable, "--quiet"])
            #expect(d.status == 0, "\(d.stderr)")
            #expect(try await fx.driver.status(of: dr).walReceiver?.status != "streaming")
            try await fx.insertRows(21...25, on: prod)

            // The primary's data center goes away: its Patroni stops, and its PostgreSQL with it.
            let user = try OSUser.postgresUser(for: fx.plan)
            // kill -9 of Patroni, then of the postmaster: nothing is archived or sent on the way down.
            let daemon = fx.sandbox.patroniDaemon(prod, user: user)
            let patroniPID = try #require(daemon.live).pid
            kill(patroniPID, SIGKILL)
            let postmaster = try #require(Postmaster.livePID(in: prod.dataDirectory))
            kill(postmaster, SIGKILL)
            _ = try await Poll.until("prod-0's postmaster to be gone", timeout: 30, interval: 0.05) {
                Postmaster.livePID(in: prod.dataDirectory) == nil && daemon.live == nil ? true : nil
            }

            let failover = try fx.planFile(
                "failover", [Transition(action: .failover, to: "dr")], roles: ["prod": .primary, "dr": .archiveStandby])
            let f = try await fx.failoverd(["run", failover, "--quiet"])
            #expect(f.status == 0, "\(f.stderr)")
            #expect(try await fx.driver.status(of: dr).isWritablePrimary)
            // What dr had when it was promoted: 20 rows, and of 21...25 whatever reached the repository.
            let kept = try #require(try await count(fx, dr).flatMap { Int($0) })
            #expect((20...25).contains(kept))
            let journal = try Journal(stateDirectory: fx.state)
            #expect(try journal.recordedRoles() == ["prod": .fenced, "dr": .primary])
            let lastRun = try #require(try journal.lastRun())
            let fenceStep = try journal.steps(of: lastRun.id).first { $0.step.kind == .fenceSite }
            let fence = try #require(try fenceStep?.evidence(as: FenceEvidence.self))
            #expect(fence.lastKnownFrom.contains("standby_cluster written"), "\(fence.lastKnownFrom)")
            try await fx.insertRows(100...101, on: dr)

            // Its Patroni comes back (the data center returns): the DCS says standby cluster, so prod-0 starts
            // read-only and never takes a write on the old timeline.
            try await fx.sandbox.patroniDaemon(prod, user: user).start([
                Sandbox.patroniExecutable, InstancePaths(prod).stateDirectory + "/patroni.yml",
            ])
            let back = try await Poll.until("prod-0 to run again under Patroni", timeout: 120, interval: 0.2) {
                () async throws -> InstanceStatus? in
                let s = try await fx.driver.status(of: prod)
                return s.reachable ? s : nil
            }
            #expect(back.inRecovery, "the fenced primary came back writable")

            try await fx.runPatroniFailback(method)
            #expect(try await fx.driver.status(of: prod).isWritablePrimary)
            // The rows only the old timeline had are gone (rewound away); dr's rows are there.
            #expect(try await count(fx, prod) == String(kept + 2))
            #expect(try await fx.sql(prod, "SELECT count(*) FROM t WHERE id BETWEEN 21 AND 25").first?.first == String(kept - 20))
            try await fx.insertRows(102...102, on: prod)
            _ = try await fx.waitForStreaming(dr, from: prod)
            try await fx.waitForRow(102, on: dr)
            #expect(try journal.recordedRoles() == ["prod": .primary, "dr": .streamingStandby])
            #expect(try await AuditLog(journal: journal).verify().intact)
            let rejoin = try journal.steps(of: try #require(try journal.lastRun()).id).first { $0.step.kind == .rejoinSite }
            #expect(try rejoin?.evidence(as: RejoinEvidence.self)?.method == method.rawValue)
            // When the timelines diverged (dr lacked rows), Patroni ran pg_rewind through use_pg_rewind.
            if kept < 25 && method == .rewind {
                let log = try String(contentsOfFile: InstancePaths(prod).stateDirectory + "/patroni.log", encoding: .utf8)
                #expect(log.contains("pg_rewind"), "prod-0 diverged and rejoined without a rewind")
            }
        }
    }

    static func crashPoints() -> [String] {
        let plan = try! PlanLoader.load(CLI.plan("patroni-switchover"))
        let count = try! Planner(plan: plan).steps().get().count
        return (1...count).flatMap { ["\($0):before", "\($0):after"] }
    }
}

/// kill -9 at every step of the Patroni switchover plan, then resume, in one Patroni sandbox shared by the
/// cases (``SandboxPool``): each starts with prod leading and dr's standby cluster streaming from it, and
/// switches back afterwards.
@Suite(.sandboxPool(PatroniSiteTests.layout, patroni: true, width: 1)) struct PatroniCrashResumeTests {
    @Test(
        "kill -9 at every step of the Patroni switchover plan, resume: same roles, no row lost", arguments: PatroniSiteTests.crashPoints())
    func crashAndResume(at point: String) async throws {
        try await RealCrashResumeTests.crashAndResume(plan: "patroni-switchover", at: point)
    }
}

extension SandboxFixture {
    /// Runs the failback of prod (fenced) from dr (primary) by `method`; on failure, records its error and the
    /// end of prod-0's Patroni log.
    func runPatroniFailback(_ method: FailbackMethod) async throws {
        let path = try planFile(
            "failback", [Transition(action: .failback, to: "prod", method: method)], roles: ["prod": .fenced, "dr": .primary])
        let run = try await failoverd(["run", path, "--quiet"])
        if run.status != 0 {
            let log =
                (try? String(contentsOfFile: InstancePaths(instance("prod-0")).stateDirectory + "/patroni.log", encoding: .utf8)) ?? ""
            Issue.record("failback by \(method.rawValue) failed: \(run.stderr)\nprod-0's Patroni log ends:\n\(log.suffix(6000))")
        } else if method == .rebuild {
            // The rebuild restored from a backup of the new primary, taken on its timeline after the fork.
            let info = try await driver.runner.run(driver.backrest.executable, driver.backrest.arguments("info", ["--output=json"]))
                .checked()
            let stanzas = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [[String: Any]])
            let last = try #require((stanzas.first?["backup"] as? [[String: Any]])?.last)
            let start = try #require((last["archive"] as? [String: Any])?["start"] as? String)
            #expect(start.hasPrefix("00000002"), "the latest backup starts at \(start), before the promotion to timeline 2")
        }
    }
}

/// The Patroni driver's pieces that need no server.
@Suite struct PatroniUnitTests {
    @Test("a Patroni site with a member on another host: a rebuild is planned, and refused by the driver before anything changes")
    func remoteRebuildIsRefused() async throws {
        var plan = try PlanLoader.load(CLI.plan("patroni-failback-with-rewind"))
        plan.transitions[1].method = .rebuild
        #expect(
            try Planner(plan: plan).steps().get().contains { $0.operation == .rejoinSite(site: "prod", source: "dr", method: .rebuild) })
        plan.sites[0].instances[0].host = "198.18.0.10"
        await expectFailure(.refused, "is on 198.18.0.10") {
            try await PatroniSite(plan: plan).rebuild(plan.sites[0], from: plan.sites[1])
        }
    }

    @Test("Patroni before 4.1 is refused for demotion; 4.1 and later are accepted")
    func versions() {
        #expect(!PatroniSite.isSupported("3.0.2"))
        #expect(!PatroniSite.isSupported("4.0.7"))
        #expect(PatroniSite.isSupported("4.1.0"))
        #expect(PatroniSite.isSupported("4.1.5"))
        #expect(PatroniSite.isSupported("5.0.0"))
        #expect(!PatroniSite.isSupported("unknown"))
    }

    @Test("a live site's fence is done on Patroni 4.1.x only, where it was verified; others are refused")
    func fenceVersions() {
        #expect(!PatroniSite.isFenceVerified("3.0.2"))
        #expect(!PatroniSite.isFenceVerified("4.0.7"))
        #expect(PatroniSite.isFenceVerified("4.1.0"))
        #expect(PatroniSite.isFenceVerified("4.1.5"))
        #expect(!PatroniSite.isFenceVerified("4.2.0"))
        #expect(!PatroniSite.isFenceVerified("5.0.0"))
        #expect(!PatroniSite.isFenceVerified("unknown"))
    }

    @Test("a fenced standby_cluster has no host, port or slot, only a failing restore_command")
    func fencedSection() throws {
        let plan = try PlanLoader.load(CLI.plan("patroni-switchover"))
        let section = PatroniSite(plan: plan).standbyCluster(following: plan.sites[1].leader, slot: "failoverd_prod", fenced: true)
        #expect(section.keys.sorted() == ["create_replica_methods", "restore_command"])
        #expect(section["restore_command"] as? String == "/bin/false")
        let following = PatroniSite(plan: plan).standbyCluster(following: nil)
        #expect(following["host"] == nil && following["port"] == nil && following["primary_slot_name"] == nil)
    }

    @Test("a WAL record header says shutdown checkpoint only for resource manager XLOG with info 0x00")
    func recordTypes() {
        #expect(WALRecordType(info: 0x00, resourceManager: 0) == .shutdownCheckpoint)
        #expect(WALRecordType(info: 0x10, resourceManager: 0) == .onlineCheckpoint)
        #expect(WALRecordType(info: 0x00, resourceManager: 10) != .shutdownCheckpoint)
    }

    @Test("REST credentials reach curl as a netrc file name, never as a password on its command line")
    func noSecretOnTheCommandLine() {
        let rest = PatroniREST(
            cluster: PatroniCluster(scope: "dr", etcd: nil, netrcFile: "/etc/failoverd/patroni.netrc", caFile: "/etc/failoverd/ca.pem"),
            runner: CommandRunner())
        let args = rest.arguments("PATCH", "https://10.0.0.1:8008", "/config", body: "{\"standby_cluster\":null}")
        #expect(args.contains("--netrc-file") && args.contains("/etc/failoverd/patroni.netrc"))
        #expect(args.contains("--cacert"))
        #expect(!args.contains { $0.contains("--user") || $0.hasPrefix("-u") })
        #expect(args.last == "https://10.0.0.1:8008/config")
    }

    @Test("patroni.url is http(s)://HOST:PORT and nothing else")
    func urls() {
        #expect(PlanValues.urlProblem("http://127.0.0.1:8008") == nil)
        #expect(PlanValues.urlProblem("https://db-1.example.com:8443") == nil)
        #expect(PlanValues.urlProblem("http://[::1]:8008") == nil)
        #expect(PlanValues.urlProblem("http://user:pw@127.0.0.1:8008")?.contains("netrcFile") == true)
        #expect(PlanValues.urlProblem("http://127.0.0.1:8008/config") != nil)
        #expect(PlanValues.urlProblem("ftp://127.0.0.1:8008") != nil)
        #expect(PlanValues.urlProblem("http://127.0.0.1") != nil)
        #expect(PlanValues.urlProblem("http://127.0.0.1:0") != nil)
    }

    @Test("a Patroni URL holding a password is refused without the password in any message, and a sound Patroni plan is valid")
    func urlPasswordIsNeverRepeated() throws {
        let text = try String(contentsOfFile: CLI.plan("patroni-switchover"), encoding: .utf8)
        #expect(PlanValidator.validate(Data(text.utf8)).errors.isEmpty)
        let hostile = text.replacingOccurrences(of: "http://127.0.0.1:8620", with: "http://admin:hunter2@127.0.0.1:8620")
        let validation = PlanValidator.validate(Data(hostile.utf8))
        #expect(validation.errors.contains { $0.path == "$.sites[0].instances[0].patroni.url" })
        #expect(!validation.problems.contains { ($0.message + $0.hint).contains("hunter2") })
    }

    @Test("a refused connection is told apart from a connection that succeeds (the refusal alone proves nothing stopped)")
    func refusedIsProof() throws {
        let port = try FreePorts.take(1)[0]
        #expect(TCPProbe.isRefused(host: "127.0.0.1", port: port))
        // A listener on loopback: connected, so not refused.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0 && listen(fd, 1) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        #expect(!TCPProbe.isRefused(host: "127.0.0.1", port: Int(UInt16(bigEndian: address.sin_port))))
    }
}
