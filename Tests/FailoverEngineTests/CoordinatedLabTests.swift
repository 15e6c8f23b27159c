import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The lab of a coordinated plan (plans/dc-switchover-coordinated.json, with its own name and paths): three
/// real etcd members, one in a host namespace of each data center and one in the witness namespace; a second
/// coordinator run inside a data center with `failoverd lab exec`. Every command is the real CLI.
@Suite(.serialized, .enabled(if: LabFixture.available, "needs root, sshd and ip"))
struct CoordinatedLabTests {
    static let prefix = "/tmp/failoverd-coordlab-"

    /// One lab of the coordinated plan, built by `lab up` in a fresh directory.
    struct CoordinatedLab: Sendable {
        let root: String
        let plan: Plan
        let planPath: String
        var labState: String { root + "/lab-state" }
        var lab: Lab { Lab(plan: plan, stateDirectory: labState) }
        /// The host of `site`'s first instance.
        func host(_ site: String) -> String { plan.site(named: site)!.leader.host }

        /// `failoverd lab exec PLAN HOST -- failoverd ARGS`: failoverd run inside the namespace of `host`.
        func exec(on host: String, _ args: [String]) async throws -> CLI.Result {
            try await CLI.run(["lab", "exec", planPath, host, "--state", labState, "--", CLI.binary] + args)
        }
    }

    /// The shipped coordinated plan with `name` and every path under `root`/lab: same hosts, ports and etcd.
    static func makePlan(root: String, name: String) throws -> String {
        let text = try String(contentsOfFile: CLI.plan("dc-switchover-coordinated"), encoding: .utf8)
            .replacingOccurrences(of: "/tmp/failoverd-lab-dcc", with: root + "/lab")
            .replacingOccurrences(of: "\"dc-switchover-coordinated\"", with: "\"\(name)\"")
        let path = root + "/plan.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Builds the lab with `failoverd lab up`, runs `body`, and always takes it down with `failoverd lab down`
    /// (one lab at a time in the test process: ``LabGate``); then proves nothing of it is left: no namespace
    /// (the witness's included), no etcd member, no data directory.
    static func withLab(_ name: String, _ body: @escaping @Sendable (CoordinatedLab) async throws -> Void) async throws {
        try await LabGate.exclusive {
            await reapDead()
            let root = prefix + "\(getpid())-" + name
            try? FileManager.default.removeItem(atPath: root)
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            chmod(root, 0o755)
            let planPath = try makePlan(root: root, name: "coordlab-" + name)
            let fixture = CoordinatedLab(root: root, plan: try PlanLoader.load(planPath), planPath: planPath)
            var failure: (any Error)?
            do {
                let up = try await CLI.run(["lab", "up", planPath, "--state", fixture.labState])
                try #require(up.status == 0, "lab up: \(up.stdout) \(up.stderr)")
                try await body(fixture)
            } catch { failure = error }
            let manifest = try? LabManifest.load(for: fixture.plan, in: fixture.labState)
            if fixture.lab.exists {
                let down = try await CLI.run(["lab", "down", planPath, "--state", fixture.labState])
                #expect(down.status == 0, "lab down: \(down.stderr)")
            }
            for process in manifest?.processes ?? [] {
                #expect(
                    !ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01),
                    "\(process.what) survived lab down")
            }
            for dir in manifest?.etcdDirectories ?? [] { #expect(!FileManager.default.fileExists(atPath: dir), "\(dir) survived lab down") }
            #expect(try await !fixture.lab.existingNamespaces().contains(fixture.lab.witnessNamespace), "the witness namespace survived")
            #expect(try await fixture.lab.running() == nil, "something of the lab survived lab down")
            try? FileManager.default.removeItem(atPath: root)
            if let failure { throw failure }
        }
    }

    /// Takes down the labs of test processes that died.
    static func reapDead() async {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where ("/tmp/" + entry).hasPrefix(prefix) {
            let root = "/tmp/" + entry
            guard let owner = pid_t(entry.dropFirst(prefix.count - "/tmp/".count).split(separator: "-").first ?? ""),
                !SandboxFixture.isRunning(owner), let plan = try? PlanLoader.load(root + "/plan.json")
            else { continue }
            _ = try? await Lab(plan: plan, stateDirectory: root + "/lab-state").down()
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// The inode of a network namespace (of a process, or a named one under /run/netns).
    static func namespaceInode(_ path: String) -> UInt? {
        var s = stat()
        return stat(path, &s) == 0 ? UInt(s.st_ino) : nil
    }

    @Test(
        "lab up starts three etcd members as the OS user, each in its data center's namespace or the witness's; lab exec runs inside a host"
    )
    func membersRunWhereThePlanSays() async throws {
        try await Self.withLab("members") { fx in
            let manifest = try #require(try LabManifest.load(for: fx.plan, in: fx.labState))
            let members = try fx.lab.etcdMembers()
            #expect(members.map(\.name) == ["etcd-dc1", "etcd-dc2", "etcd-witness"])
            let user = try OSUser.postgresUser(for: fx.plan)
            for member in members {
                let process = try #require(
                    manifest.processes.first { $0.what == "etcd \(member.name) \(member.client)" }, "\(manifest.processes)")
                #expect(ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01))
                #expect(ProcessIdentity.realUID(process.pid) == user.uid, "\(member.name) does not run as \(user.name)")
                #expect(
                    Self.namespaceInode("/proc/\(process.pid)/ns/net") == Self.namespaceInode("/run/netns/" + member.namespace),
                    "\(member.name) is not in namespace \(member.namespace)")
                let dir = try #require(manifest.etcdDirectories?.first { $0.hasSuffix("/" + member.name) })
                #expect(dir.hasPrefix(fx.root + "/lab/"), "\(dir) is not in the lab's tree")
            }
            // The cluster has its three members and answers from the control host.
            let list = try await CommandRunner().run(
                "/usr/bin/curl", ["-sf", "--max-time", "5", "-X", "POST", members[0].client + "/v3/cluster/member/list"])
            #expect(list.succeeded && members.allSatisfy { list.stdout.contains($0.name) }, "\(list.stdout)")

            // lab exec: the command sees the host's own address, and a host the lab does not have is refused.
            let inside = try await CLI.run([
                "lab", "exec", fx.planPath, fx.host("dc2"), "--state", fx.labState, "--", "/usr/sbin/ip", "-o", "-4", "addr", "show",
            ])
            #expect(
                inside.status == 0 && inside.stdout.contains(fx.host("dc2") + "/15") && !inside.stdout.contains(Lab.controlAddress),
                "\(inside.stdout)")
            let refused = try await CLI.run(["lab", "exec", fx.planPath, "198.18.99.99", "--state", fx.labState, "--", "/bin/true"])
            #expect(refused.status == 2 && refused.stderr.contains("198.18.99.99 is not a host of plan"), "\(refused.stderr)")
        }
    }

    @Test("lab up refuses coordination.etcd.endpoints it cannot build, naming the field, before building anything")
    func endpointsTheLabCannotBuildAreRefused() async throws {
        let root = CLI.tempDirectory("failoverd-coordlab-refused")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cases: [(String, [String])] = [
            ("with an address of 198.18.0.0/15", ["http://198.18.11.10:2379", "http://198.18.12.10:2379", "http://10.1.2.3:2379"]),
            ("names 2 member(s)", ["http://198.18.11.10:2379", "http://198.18.13.10:2379"]),
            (
                "the lab creates one witness namespace",
                ["http://198.18.11.10:2379", "http://198.18.13.10:2379", "http://198.18.14.10:2379"]
            ),
            (
                "must not be a port PostgreSQL or sshd uses",
                ["http://198.18.11.10:5432", "http://198.18.12.10:2379", "http://198.18.13.10:2379"]
            ),
        ]
        for (i, (message, endpoints)) in cases.enumerated() {
            var plan = try PlanLoader.load(CLI.plan("dc-switchover-coordinated"))
            plan.name = "coordlab-refused-\(i)"
            plan.coordination?.etcd.endpoints = endpoints
            let path = root + "/plan-\(i).json"
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))
            let up = try await CLI.run(["lab", "up", path, "--state", root + "/state-\(i)"])
            #expect(up.status == 2, "\(endpoints): \(up.status) \(up.stderr)")
            #expect(up.stderr.contains("coordination.etcd.endpoints") && up.stderr.contains(message), "\(up.stderr)")
            #expect(!FileManager.default.fileExists(atPath: root + "/state-\(i)/lab-\(plan.name).json"), "lab up began to build")
            #expect(!up.stderr.contains("removes what it built"), "\(up.stderr)")
        }
    }

    @Test("coordinator A killed at the promotion of the coordinated switchover; B, inside the other data center, resumes and finishes")
    func killedCoordinatorIsTakenOverFromTheOtherDataCenter() async throws {
        try await Self.withLab("takeover") { fx in
            let outside = OutsideView(plan: fx.plan)
            try await outside.writeMarker(1, on: fx.plan.site(named: "dc1")!.leader)
            let promote = try #require(try Planner(plan: fx.plan).steps().get().first { $0.kind == .promote }?.number)
            let a = fx.root + "/coordinator-a"
            let b = fx.root + "/coordinator-b"
            // A on the control host (the root namespace), killed before its promotion.
            let crashed = try await CLI.run(["run", fx.planPath, "--quiet", "--crash-at", "\(promote):before", "--state", a])
            #expect(crashed.killedBySignal && crashed.status == SIGKILL, "\(crashed.status) \(crashed.stderr)")

            // B in dc2's namespace, with its own empty state directory: it sees the run in etcd and finishes it.
            let seen = try await fx.exec(on: fx.host("dc2"), ["status", "--plan", fx.planPath, "--state", b])
            #expect(seen.status == 0 && seen.stdout.contains("running"), "\(seen.stdout) \(seen.stderr)")
            let started = ContinuousClock.now
            let resumed = try await fx.exec(on: fx.host("dc2"), ["resume", "--plan", fx.planPath, "--quiet", "--state", b])
            print("TIMING coordinated lab takeover (resume --plan inside dc2): \(ContinuousClock.now - started)")
            #expect(resumed.status == 0, "resume inside dc2: \(resumed.stdout) \(resumed.stderr)")

            // The planned roles, read from PostgreSQL itself; the row written before is on both, and a new one streams.
            try await outside.expectFinalRoles(markerWrittenBefore: 1)
            let expected = try Planner(plan: fx.plan).finalRoles().get().mapValues(\.rawValue)
            #expect(try await CLI.roles(state: b) == expected)
            // One audit chain: B's copy verifies, and holds A's events and B's, each naming its coordinator.
            let verify = try await CLI.run(["audit", "verify", "--state", b])
            #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
            let coordinators = Set(
                try AuditLog(journal: Journal(stateDirectory: b)).query().compactMap { e in
                    (try? JSONSerialization.jsonObject(with: Data(e.details.utf8)) as? [String: String])?["coordinator"]
                })
            #expect(coordinators.count == 2, "\(coordinators)")
        }
    }

    @Test("a data center cut off loses etcd quorum on its side only: status --plan answers from the other side, refuses on the cut one")
    func aCutOffDataCenterLosesQuorumOnItsSideOnly() async throws {
        try await Self.withLab("partition") { fx in
            let (dc1, dc2) = (fx.host("dc1"), fx.host("dc2"))
            let before = try await fx.exec(on: dc1, ["status", "--plan", fx.planPath, "--state", fx.root + "/dc1-before"])
            #expect(before.status == 0 && before.stdout.contains("run lock free"), "\(before.stdout) \(before.stderr)")

            let cut = try await CLI.run(["lab", "partition", fx.planPath, "dc1", "--state", fx.labState])
            try #require(cut.status == 0, "\(cut.stderr)")
            let surviving = try await fx.exec(on: dc2, ["status", "--plan", fx.planPath, "--state", fx.root + "/dc2"])
            #expect(surviving.status == 0 && surviving.stdout.contains("run lock free"), "\(surviving.stdout) \(surviving.stderr)")
            let cutSide = try await fx.exec(on: dc1, ["status", "--plan", fx.planPath, "--state", fx.root + "/dc1"])
            #expect(
                cutSide.status == 3 && cutSide.stderr.contains("etcd cannot be reached"),
                "\(cutSide.status) \(cutSide.stdout) \(cutSide.stderr)")
            // The cut side's own member is up, but without quorum: it cannot serve a linearizable read.
            #expect(cutSide.stderr.contains("http://\(dc1):2379"), "\(cutSide.stderr)")

            let healed = try await CLI.run(["lab", "heal", fx.planPath, "dc1", "--state", fx.labState])
            try #require(healed.status == 0, "\(healed.stderr)")
            let back = try await Poll.until("dc1's side to see etcd with quorum again", timeout: 60, interval: 0.5) { () -> Bool? in
                try await fx.exec(on: dc1, ["status", "--plan", fx.planPath, "--state", fx.root + "/dc1-after"]).status == 0 ? true : nil
            }
            #expect(back)
        }
    }

    @Test(
        "drill --faults crash-coordinator: the first coordinator killed before the promotion, the second in dc2 finishes; the report names who ran each step and the takeover time"
    )
    func drillCrashCoordinator() async throws {
        try await Self.withLab("drill") { fx in
            let promote = try #require(try Planner(plan: fx.plan).steps().get().first { $0.kind == .promote }?.number)
            let report = fx.root + "/report"
            let drilled = try await CLI.run([
                "drill", fx.planPath, "--reuse", "--faults", "crash-coordinator@\(promote):before", "--report", report, "--writers", "2",
                "--warmup", "1",
            ])
            try #require(drilled.status == 0, "\(drilled.stdout.suffix(2000))\n\(drilled.stderr)")
            let checks = try LabTests.expectDrillChecksPassed(report)
            #expect(checks["the second coordinator took the run over"]?.0 == true, "\(checks.keys)")
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report + "/report.json"))) as? [String: Any])
            let coordination = try #require(json["coordination"] as? [String: Any], "\(json.keys)")
            #expect(coordination["secondHost"] as? String == fx.host("dc2"))
            let takeover = try #require(coordination["takeoverSeconds"] as? Double)
            // The second coordinator waits out the first's lease before it may act.
            #expect(takeover > 0 && takeover < Double(fx.plan.coordination!.etcd.effectiveLeaseSeconds) + 30, "\(takeover)")
            print("TIMING crash-coordinator takeover (fault to the second coordinator's first act): \(takeover) s")
            let steps = try #require(coordination["steps"] as? [[String: Any]])
            for step in steps {
                let n = try #require(step["number"] as? Int)
                #expect(step["which"] as? String == (n < promote ? "first" : "second"), "step \(n): \(step)")
            }
            let markdown = try String(contentsOfFile: report + "/report.md", encoding: .utf8)
            #expect(markdown.contains("## Coordinators") && markdown.contains("takeover"), "\(markdown)")
            let outside = OutsideView(plan: fx.plan)
            let primary = try #require(fx.plan.site(named: "dc2")?.leader)
            try await outside.writeMarker(1, on: primary)
            try await outside.expectFinalRoles(markerWrittenBefore: 1)
        }
    }

    @Test(
        "isolate-coordinator: A, cut off etcd and every site as the promotion begins, stops with exit 4 and writes nothing; B finishes from dc2"
    )
    func drillIsolateCoordinator() async throws {
        try await Self.withLab("isolate") { fx in
            let promote = try #require(try Planner(plan: fx.plan).steps().get().first { $0.kind == .promote }?.number)
            let report = fx.root + "/report"
            let state = report + "/state"
            let drilled = try await CLI.run([
                "drill", fx.planPath, "--reuse", "--faults", "isolate-coordinator@\(promote)", "--report", report,
                "--writers", "2", "--warmup", "1",
            ])
            try #require(drilled.status == 0, "\(drilled.stdout.suffix(3000))\n\(drilled.stderr)")
            let checks = try LabTests.expectDrillChecksPassed(report)
            for name in [
                "the second coordinator took the run over", "the cut-off coordinator stopped with exit 4",
                "the cut-off coordinator wrote nothing after the cut",
                "the servers saw no session from the cut-off coordinator after the cut",
            ] {
                #expect(checks[name]?.0 == true, "\(name): \(checks[name]?.1 ?? "missing; checks: \(checks.keys.sorted())")")
            }
            print("DRILL isolate-coordinator: \(checks.filter { $0.key.contains("coordinator") }.map { "\($0.key): \($0.value.1)" })")
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report + "/report.json"))) as? [String: Any])
            let coordination = try #require(json["coordination"] as? [String: Any], "\(json.keys)")
            #expect(coordination["secondHost"] as? String == fx.host("dc2"))
            let takeover = try #require(coordination["takeoverSeconds"] as? Double)
            print("TIMING isolate-coordinator takeover (cut to the second coordinator's first act): \(takeover) s")
            // The second coordinator waits out the first one's lease, last renewed up to a sixth of it before the cut.
            let lease = Double(fx.plan.coordination!.etcd.effectiveLeaseSeconds)
            #expect(takeover >= lease * 5 / 6 - 0.5, "\(takeover)")
            // Outside the drill's word: A's own journal ends before the promotion, never marked done by A; the run's
            // journal in B's state directory verifies and holds the promotion done by B only.
            let a = try Journal(stateDirectory: state)
            let run = try #require(try a.lastRun())
            let promotedByA = try a.steps(of: run.id).contains { $0.step.number == promote && $0.status == .done }
            #expect(!promotedByA, "A's journal shows the promotion done")
            let verify = try await CLI.run(["audit", "verify", "--state", state + "/coordinator-b"])
            #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
            let outside = OutsideView(plan: fx.plan)
            try await outside.writeMarker(1, on: try #require(fx.plan.site(named: "dc2")?.leader))
            try await outside.expectFinalRoles(markerWrittenBefore: 1)
        }
    }
}
