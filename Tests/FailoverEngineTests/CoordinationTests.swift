import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The plan field `coordination` and what a plan without it says plainly. No etcd needed.
struct CoordinationPlanTests {
    @Test("a TLS file of coordination.etcd is checked like every file the plan names: regular, no link, root's, a key private")
    func filesAreChecked() throws {
        let dir = CLI.tempDirectory("failoverd-coord-files")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o700)
        let key = dir + "/client.key"
        let cert = dir + "/client.pem"
        try "key".write(toFile: key, atomically: true, encoding: .utf8)
        try "cert".write(toFile: cert, atomically: true, encoding: .utf8)
        chmod(cert, 0o644)
        chmod(key, 0o600)
        var plan = try PlanLoader.load(CLI.plan("switchover"))
        plan.coordination = Coordination(
            etcd: EtcdCoordination(endpoints: ["https://127.0.0.1:2379"], caFile: cert, certFile: cert, keyFile: key))
        #expect(HostAccess.coordinationFileProblems(plan).isEmpty)

        chmod(key, 0o644)
        let readable = HostAccess.coordinationFileProblems(plan)
        #expect(readable.map(\.field) == ["coordination.etcd.keyFile"])
        #expect(readable.first?.problem.contains("readable by others") == true)
        #expect(throws: FailoverError.self) { try HostAccess.check(plan) }

        chmod(key, 0o600)
        let link = dir + "/link.key"
        symlink(key, link)
        plan.coordination?.etcd.keyFile = link
        #expect(HostAccess.coordinationFileProblems(plan).first?.problem.contains("symbolic link") == true)

        plan.coordination?.etcd.keyFile = dir + "/missing.key"
        #expect(HostAccess.coordinationFileProblems(plan).map(\.field) == ["coordination.etcd.keyFile"])

        chmod(cert, 0o666)
        plan.coordination?.etcd.keyFile = key
        #expect(HostAccess.coordinationFileProblems(plan).first?.problem.contains("writable by others") == true)
    }

    @Test("without coordination, status says plainly that nothing stops a second machine; with it, where the lock is")
    func statusSaysWhatGuardsTheSites() async throws {
        let state = CLI.tempDirectory("failoverd-coord-status")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let run = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", state])
        #expect(run.status == 0, "\(run.stderr)")
        let status = try await CLI.run(["status", "--state", state])
        #expect(status.stdout.contains("coordination: none"), "\(status.stdout)")
        #expect(status.stdout.contains("nothing stops a second machine"), "\(status.stdout)")
        #expect(Coordination.summary(nil).contains("nothing stops a second machine"))
        let with = Coordination.summary(Coordination(etcd: EtcdCoordination(endpoints: ["http://127.0.0.1:2379"])))
        #expect(with.contains("/failoverd/clusters/") && with.contains("10 s"))
    }
}

/// Coordinated runs against a real etcd (one member, or three) and, where servers matter, real PostgreSQL.
@Suite(.serialized) struct CoordinationTests {
    /// `plan` with `coordination` and `transitions`, written to DIR/NAME.json under the plan name NAME.
    static func write(_ plan: Plan, name: String, transitions: [Transition], coordination: Coordination, in dir: String) throws -> String {
        var p = plan
        p.name = name
        p.transitions = transitions
        p.coordination = coordination
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = dir + "/\(name).json"
        try encoder.encode(p).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The number of the last step of transition `transition` (from 1) of the plan at `path`.
    static func lastStep(of transition: Int, in path: String) throws -> (last: Int, total: Int) {
        let steps = try Planner(plan: PlanLoader.load(path)).steps().get()
        return (try #require(steps.filter { $0.transition == transition }.map(\.number).max()), steps.count)
    }

    /// The step of `kind` in the first transition of the plan at `path`.
    static func step(_ kind: StepKind, in path: String) throws -> Int {
        try #require(try Planner(plan: PlanLoader.load(path)).steps().get().first { $0.kind == kind }?.number)
    }

    /// Waits until a running failoverd printed step `n` as finished (`[n/total] done|satisfied`).
    static func waitForStep(_ n: Int, total: Int, of process: CLI.Running, timeout: Double = 120) async throws {
        _ = try await Poll.until("step \(n) to finish", timeout: timeout, interval: 0.02) {
            let out = process.outputSoFar()
            if !process.isRunning && !out.contains("[\(n)/\(total)]") {
                throw Poll.Abort(error: FailoverError.failed("failoverd exited before step \(n): \(out)"))
            }
            return out.contains("[\(n)/\(total)] done") || out.contains("[\(n)/\(total)] satisfied") ? true : nil
        }
    }

    static let twoSites = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    @Test("two coordinators on the same plan at the same instant, 20 times: exactly one runs, the other exits 4 naming it")
    func exactlyOneOfTwoRuns() async throws {
        try await EtcdFixture.with { etcd in
            let dir = CLI.tempDirectory("failoverd-coord-pair")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let plan = try PlanLoader.load(CLI.plan("switchover"))
            let tries = Int(ProcessInfo.processInfo.environment["FAILOVERD_COORD_TRIES"] ?? "") ?? 20
            for i in 1...tries {
                // A prefix per try: each try is a fresh cluster history (the simulated servers live in each state directory).
                let path = try Self.write(
                    plan, name: "pair-\(i)",
                    transitions: [Transition(action: .switchover, to: "dr"), Transition(action: .switchover, to: "prod")],
                    // A lease long enough that a keepalive late on a loaded machine is not what ends a try: the race
                    // is for the lock, not for the lease.
                    coordination: etcd.coordination(prefix: "/pair\(i)", lease: 20), in: dir)
                let args = ["run", path, "--simulate", "--quiet", "--dwell", "1"]
                let a = try CLI.start(args + ["--state", dir + "/a\(i)"])
                let b = try CLI.start(args + ["--state", dir + "/b\(i)"])
                let results = [await a.wait(), await b.wait()]
                let codes = results.map(\.status).sorted()
                #expect(codes == [0, 4], "try \(i): \(results.map { "\($0.status): \($0.stderr)" })")
                if let loser = results.first(where: { $0.status == 4 }) {
                    #expect(loser.stderr.contains("another coordinator holds the run lock"), "\(loser.stderr)")
                    #expect(loser.stderr.contains("pid ") && loser.stderr.contains("run r-"), "\(loser.stderr)")
                }
            }
        }
    }

    @Test("etcd out of reach: a coordinated plan does not start (exit 3, nothing journaled), never a fallback to the local lock")
    func unreachableEtcdRefuses() async throws {
        let dir = CLI.tempDirectory("failoverd-coord-down")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = try FreePorts.take(1)[0]
        let path = try Self.write(
            PlanLoader.load(CLI.plan("switchover")), name: "down", transitions: [Transition(action: .switchover, to: "dr")],
            coordination: Coordination(etcd: EtcdCoordination(endpoints: ["http://127.0.0.1:\(port)"], leaseSeconds: 2)), in: dir)
        let r = try await CLI.run(["run", path, "--simulate", "--quiet", "--state", dir + "/s"])
        #expect(r.status == 3, "\(r.status): \(r.stderr)")
        #expect(r.stderr.contains("etcd cannot be reached"), "\(r.stderr)")
        let journal = try Journal(stateDirectory: dir + "/s")
        #expect(try journal.lastRun() == nil)
        #expect(try journal.recordedRoles().isEmpty)
    }
}

/// Coordinated runs on real PostgreSQL sandboxes: the race of two operators, a kill -9 and a takeover from
/// another state directory, a lease lost in the middle of a run, and etcd's quorum lost.
@Suite(.serialized) struct CoordinationRealTests {
    typealias C = CoordinationTests

    /// The issue's race, coordinated: two operators with two state directories start a failover to dr and a
    /// failover to dr2 of one three-site cluster at the same instant. Every instance is sampled every 20 ms:
    /// never two writable primaries; exactly one run promotes, the other exits 4.
    @Test("failover to dr and to dr2 at the same instant from two state directories: one promotes, the other exits 4")
    func raceOfTwoOperators() async throws {
        let tries = Int(ProcessInfo.processInfo.environment["FAILOVERD_COORD_RACE_TRIES"] ?? "") ?? 2
        for attempt in 1...tries {
            try await EtcdFixture.with { etcd in
                let layout = [
                    SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby),
                    SiteLayout(name: "dr2", role: .streamingStandby),
                ]
                try await SandboxFixture.with(layout) { fx in
                    let prod = fx.instance("prod-0")
                    try await fx.insertRows(1...10, on: prod)
                    for name in ["dr-0", "dr2-0"] { try await fx.waitForRow(10, on: fx.instance(name)) }
                    // The race is for the lock; a lease this long is not lost to a late keepalive on a loaded machine.
                    let coordination = etcd.coordination(lease: 20)
                    let toDR = try C.write(
                        fx.plan, name: "to-dr", transitions: [Transition(action: .failover, to: "dr")], coordination: coordination,
                        in: fx.root)
                    let toDR2 = try C.write(
                        fx.plan, name: "to-dr2", transitions: [Transition(action: .failover, to: "dr2")], coordination: coordination,
                        in: fx.root)
                    let sampler = WritableSampler(fx: fx)
                    let sampling = Task { await sampler.run() }
                    let a = try CLI.start(["run", toDR, "--quiet", "--state", fx.root + "/operator-a"])
                    let b = try CLI.start(["run", toDR2, "--quiet", "--state", fx.root + "/operator-b"])
                    let (ra, rb) = (await a.wait(), await b.wait())
                    sampling.cancel()
                    let most = await sampling.value
                    #expect(most <= 1, "try \(attempt): \(most) writable primaries at once")
                    #expect(
                        [ra.status, rb.status].sorted() == [0, 4],
                        "try \(attempt): a \(ra.status) \(ra.stderr) / b \(rb.status) \(rb.stderr)")
                    let loser = ra.status == 4 ? ra : rb
                    #expect(loser.stderr.contains("another coordinator holds the run lock"), "\(loser.stderr)")
                    let winner = ra.status == 0 ? "dr-0" : "dr2-0"
                    let other = winner == "dr-0" ? "dr2-0" : "dr-0"
                    #expect(try await fx.driver.status(of: fx.instance(winner)).isWritablePrimary)
                    let otherStatus = try await fx.driver.status(of: fx.instance(other))
                    #expect(!otherStatus.isWritablePrimary, "\(other) must not be promoted")
                }
            }
        }
    }

    /// kill -9 of coordinator A around a step of a coordinated switchover; coordinator B, with its own empty
    /// state directory, takes over with `resume --plan`: it waits for A's lease, copies the run from etcd,
    /// re-proves the interrupted step against the servers, and ends where an uninterrupted run ends.
    @Test(
        "kill -9 of the coordinator, then resume --plan from another state directory finishes the run",
        arguments: ["promote:before", "stop:after"])
    func killedCoordinatorIsTakenOver(_ point: String) async throws {
        try await EtcdFixture.with { etcd in
            try await SandboxFixture.with(C.twoSites) { fx in
                let prod = fx.instance("prod-0")
                let dr = fx.instance("dr-0")
                try await fx.insertRows(1...20, on: prod)
                let path = try C.write(
                    fx.plan, name: "coordinated-switchover", transitions: [Transition(action: .switchover, to: "dr")],
                    coordination: etcd.coordination(lease: 6), in: fx.root)
                let parts = point.split(separator: ":")
                let kind: StepKind = parts[0] == "promote" ? .promote : .stop
                let n = try C.step(kind, in: path)
                let a = fx.root + "/machine-a"
                let b = fx.root + "/machine-b"
                let crashed = try await CLI.run(["run", path, "--quiet", "--crash-at", "\(n):\(parts[1])", "--state", a])
                #expect(crashed.killedBySignal && crashed.status == SIGKILL, "\(crashed.status) \(crashed.stderr)")

                // Another machine, another (empty) state directory: the run is seen from etcd, and finished there.
                let seen = try await CLI.run(["status", "--plan", path, "--state", b])
                #expect(seen.status == 0, "\(seen.stderr)")
                #expect(seen.stdout.contains("running"), "\(seen.stdout)")
                let started = ContinuousClock.now
                let resumed = try await CLI.run(["resume", "--plan", path, "--quiet", "--state", b])
                #expect(resumed.status == 0, "resume: \(resumed.stderr)")
                let waited = ContinuousClock.now - started
                #expect(waited < .seconds(60), "takeover took \(waited)")

                let journal = try Journal(stateDirectory: b)
                #expect(try journal.recordedRoles() == ["prod": .streamingStandby, "dr": .primary])
                #expect(try await fx.driver.status(of: dr).isWritablePrimary)
                try await fx.insertRows(21...21, on: dr)
                try await fx.waitForStreaming(prod, from: dr)
                try await fx.waitForRow(21, on: prod)
                #expect(try await fx.sql(prod, "SELECT count(*) FROM t").first?.first == "21")

                // One audit chain for the cluster: B's copy holds A's events and its own, each naming its coordinator.
                let audit = AuditLog(journal: journal)
                #expect(try await audit.verify().intact)
                let coordinators = Set(
                    try audit.query().compactMap { e in
                        (try? JSONSerialization.jsonObject(with: Data(e.details.utf8)) as? [String: String])?["coordinator"]
                    })
                #expect(coordinators.count == 2, "\(coordinators)")
                // A's own journal is whole too (a prefix of the chain), and status from A shows the run succeeded.
                #expect(try await AuditLog(journal: Journal(stateDirectory: a)).verify().intact)
                let fromA = try await CLI.run(["status", "--plan", path, "--state", a])
                #expect(fromA.stdout.contains("succeeded"), "\(fromA.stdout)")
                let verify = try await CLI.run(["audit", "verify", "--state", b])
                #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
            }
        }
    }

    /// A coordinator whose lease is lost in the middle of a run (revoked here, as an expiry would) stops
    /// before its next side effect: the next transition's steps stay pending in etcd, the servers show no
    /// further change; B then finishes the run.
    @Test("a lost lease stops the run before its next side effect; another coordinator finishes it")
    func lostLeaseStopsTheRun() async throws {
        try await EtcdFixture.with { etcd in
            try await SandboxFixture.with(C.twoSites) { fx in
                let prod = fx.instance("prod-0")
                let dr = fx.instance("dr-0")
                try await fx.insertRows(1...5, on: prod)
                let path = try C.write(
                    fx.plan, name: "there-and-back",
                    transitions: [Transition(action: .switchover, to: "dr"), Transition(action: .switchover, to: "prod")],
                    coordination: etcd.coordination(lease: 6), in: fx.root)
                let (last, total) = try C.lastStep(of: 1, in: path)
                let a = try CLI.start(["run", path, "--dwell", "6", "--state", fx.root + "/machine-a"])
                try await C.waitForStep(last, total: total, of: a)
                // The lease is lost while A waits between the transitions.
                let keys = try await etcd.keys(under: "/failoverd/clusters/")
                let lockKey = try #require(keys.keys.first { $0.hasSuffix("/lock") })
                let range = try await etcd.post("/v3/kv/range", ["key": EtcdGateway.b64(lockKey)])
                let lease = try #require((range["kvs"] as? [[String: Any]])?.first?["lease"] as? String)
                _ = try await etcd.post("/v3/lease/revoke", ["ID": lease])
                let result = await a.wait()
                #expect(result.status == 4, "\(result.status): \(result.stderr)")
                #expect(result.stderr.contains("lost the run lock"), "\(result.stderr)")
                // No step of the second transition started, in etcd; the servers stayed as transition 1 left them.
                let base = String(lockKey.dropLast("/lock".count))
                let steps = try await etcd.keys(under: base + "/j/steps/")
                let second = steps.values.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                    .filter { ($0["number"] as? Int ?? 0) > last }
                #expect(!second.isEmpty && second.allSatisfy { $0["status"] as? String == "pending" }, "\(second)")
                #expect(try await fx.driver.status(of: dr).isWritablePrimary)
                #expect(try await fx.driver.status(of: prod).inRecovery)
                // A's own journal holds nothing after the loss either.
                let aJournal = try Journal(stateDirectory: fx.root + "/machine-a")
                let aRun = try #require(try aJournal.lastRun())
                let aSteps = try aJournal.steps(of: aRun.id)
                #expect(aSteps.filter { $0.step.number > last }.allSatisfy { $0.status == .pending })

                let b = try await CLI.run(["resume", "--plan", path, "--quiet", "--state", fx.root + "/machine-b"])
                #expect(b.status == 0, "\(b.stderr)")
                #expect(try await fx.driver.status(of: prod).isWritablePrimary)
            }
        }
    }

    /// Three etcd members, two stopped: a coordinated run does not start (nothing changed); a run under way
    /// stops before its next act; with quorum back, `resume` finishes.
    @Test("two of three etcd members stopped: no start, an ongoing run stops before its next act, resume finishes with quorum back")
    func quorumLost() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            try await SandboxFixture.with(C.twoSites) { fx in
                let prod = fx.instance("prod-0")
                let dr = fx.instance("dr-0")
                let path = try C.write(
                    fx.plan, name: "quorum",
                    transitions: [Transition(action: .switchover, to: "dr"), Transition(action: .switchover, to: "prod")],
                    coordination: etcd.coordination(lease: 6), in: fx.root)
                let state = fx.root + "/machine-a"
                await etcd.stop(1)
                await etcd.stop(2)
                let refused = try await CLI.run(["run", path, "--quiet", "--state", state])
                #expect(refused.status == 3, "\(refused.status): \(refused.stderr)")
                #expect(refused.stderr.contains("etcd cannot be reached"), "\(refused.stderr)")
                #expect(try Journal(stateDirectory: state).lastRun() == nil)
                #expect(try await fx.driver.status(of: prod).isWritablePrimary)
                #expect(try await fx.driver.status(of: dr).inRecovery)

                try await etcd.start(1, wait: false)
                try await etcd.start(2)
                let (last, total) = try C.lastStep(of: 1, in: path)
                let a = try CLI.start(["run", path, "--dwell", "6", "--state", state])
                try await C.waitForStep(last, total: total, of: a)
                await etcd.stop(1)
                await etcd.stop(2)
                let stopped = await a.wait()
                #expect(stopped.status == 4, "\(stopped.status): \(stopped.stderr)")
                #expect(stopped.stderr.contains("etcd cannot be reached"), "\(stopped.stderr)")
                #expect(try await fx.driver.status(of: dr).isWritablePrimary)
                #expect(try await fx.driver.status(of: prod).inRecovery)

                try await etcd.start(1, wait: false)
                try await etcd.start(2)
                let resumed = try await CLI.run(["resume", "--quiet", "--state", state])
                #expect(resumed.status == 0, "\(resumed.stderr)")
                #expect(try await fx.driver.status(of: prod).isWritablePrimary)
                #expect(try Journal(stateDirectory: state).recordedRoles() == ["prod": .primary, "dr": .streamingStandby])
            }
        }
    }
}

/// Samples every instance of a sandbox every 20 ms and keeps the most writable primaries seen at once.
actor WritableSampler {
    let fx: SandboxFixture
    init(fx: SandboxFixture) { self.fx = fx }

    func run() async -> Int {
        var most = 0
        while !Task.isCancelled {
            var writable = 0
            for (_, instance) in fx.plan.allInstances {
                if (try? await fx.driver.status(of: instance))?.isWritablePrimary == true { writable += 1 }
            }
            most = max(most, writable)
            // The sampling period the issue asks for, not a wait for a condition.
            try? await Task.sleep(for: .milliseconds(20))
        }
        return most
    }
}
