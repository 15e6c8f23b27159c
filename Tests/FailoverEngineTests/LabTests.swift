import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The SSH driver against real sshd and PostgreSQL 15 in network namespaces: one lab of four hosts for the
/// suite (see ``LabFixture``), a fresh PostgreSQL topology per test.
@Suite(.serialized, .enabled(if: LabFixture.available, "needs root, sshd and ip"), .lab)
struct LabTests {
    var fixture: LabFixture { LabFixture.current! }

    /// Strings a shell would read as syntax reach the remote command as the very bytes sent: quoted once,
    /// through sshd, the login shell, sudo, env and sh -c.
    @Test func hostileStringsSurviveRemoteQuotingByteForByte() async throws {
        let canary = fixture.root + "/canary-touched"
        let hostile = [
            "'", "\"", "''", "'\\''", "$(touch \(canary))", "`touch \(canary)`", "; touch \(canary)", "| touch \(canary)",
            "&& touch \(canary)", "$HOME", "${PATH}", "\\", "\\'", "a\nb", "\n", "\t", "*", "?", "[a-z]", "~", "~root", "!", "!!", "-n",
            "--",
            "-", " ", "  two  spaces  ", "", "é ü 雪 🐘", "{a,b}", "#comment", ">\(canary)", "<", "%s", "\r", "a\u{7F}b", "\u{1B}[31m",
        ]
        let driver = try SSHPostgresDriver(plan: fixture.plan, stateDirectory: fixture.root + "/state-quoting")
        defer { Task { await RemoteShell.closeAll(stateDirectory: fixture.root + "/state-quoting") } }
        let shell = try driver.shell(fixture.plan.sites[0].leader)
        #expect(shell.ssh.user != shell.osUser, "the lab logs in as a user other than the OS user, so sudo is in the path")
        let r = try await shell.run(["printf", "%s\\0"] + hostile).checked()
        let echoed = r.stdout.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init)
        #expect(echoed == hostile)
        // The command ran as the OS user, not as the login user.
        #expect(try await shell.run(["id", "-un"]).checked().stdout == shell.osUser + "\n")
        // As the working directory too.
        let pwd = try await shell.run(["pwd"], workingDirectory: "/tmp").checked()
        #expect(pwd.stdout == "/tmp\n")
        #expect(!FileManager.default.fileExists(atPath: canary), "a hostile string ran a command")
    }

    /// The host key is checked: a known_hosts without the host's key refuses the connection (exit 255).
    @Test func anUnknownHostKeyIsRefused() async throws {
        let known = fixture.root + "/empty_known_hosts"
        try "".write(toFile: known, atomically: true, encoding: .utf8)
        var ssh = fixture.plan.sites[0].ssh!
        ssh.knownHostsFile = known
        let state = fixture.root + "/state-hostkey"
        defer { Task { await RemoteShell.closeAll(stateDirectory: state) } }
        let shell = RemoteShell(
            host: LabFixture.hosts["dc1"]!, ssh: ssh, osUser: "failoverd", controlDirectory: try RemoteShell.controlDirectory(for: state))
        let r = try await shell.run(["true"])
        #expect(r.unreachable)
        #expect(r.outputTail.contains("Host key verification failed"), "\(r.outputTail)")
    }

    /// A shell sudo refuses (an OS user the login user may not become) is reported as sudo's refusal, not as
    /// an unreachable host, and again on the next command: the long-lived shell cannot start, so each command
    /// goes the one-shot way, which says why.
    @Test func aSudoRefusalIsReportedAsSuchNotAsUnreachable() async throws {
        let state = fixture.root + "/state-sudo"
        defer { Task { await RemoteShell.closeAll(stateDirectory: state) } }
        let shell = RemoteShell(
            host: LabFixture.hosts["dc1"]!, ssh: fixture.plan.sites[0].ssh!, osUser: "nobody",
            controlDirectory: try RemoteShell.controlDirectory(for: state))
        for _ in 0..<2 {
            let r = try await shell.run(["true"])
            #expect(!r.unreachable && r.exitCode != 0, "exit \(r.exitCode)")
            #expect(r.outputTail.contains("sudo"), "\(r.outputTail)")
        }
    }

    /// dc-switchover over SSH: the new primary has every row and the old one streams from it.
    @Test func switchoverOverSSHKeepsEveryRow() async throws {
        try await fixture.withTopology("switchover", [Transition(action: .switchover, to: "dc2")], sites: ["dc1", "dc2"]) { t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            try await t.insertRows(1...50, on: dc1)
            let r = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            #expect(try await t.count(on: dc2) == "50")
            try await t.insertRows(51...51, on: dc2)
            try await t.waitForStreaming(dc1, from: dc2)
            try await t.waitForRow(51, on: dc1)
            #expect(try await t.count(on: dc1) == "51")
            #expect(try await CLI.roles(state: t.state) == ["dc1": "streaming-standby", "dc2": "primary"])
        }
    }

    /// Every v1 action on ssh sites, in one plan: bootstrap-standby, enable- and disable-streaming,
    /// switchover, failover, rewind, rebuild, failback and fence; every row on every standby afterwards.
    @Test func everyV1ActionOnSSHSites() async throws {
        let transitions = [
            Transition(action: .bootstrapStandby, site: "dc4"), Transition(action: .enableStreaming, site: "dc3", upstream: "dc1"),
            Transition(action: .disableStreaming, site: "dc3"), Transition(action: .switchover, to: "dc2"),
            Transition(action: .failover, to: "dc1"), Transition(action: .rewind, site: "dc2", source: "dc1"),
            Transition(action: .rebuild, site: "dc4"), Transition(action: .failover, to: "dc2"),
            Transition(action: .failback, to: "dc1", method: .rebuild), Transition(action: .fence, site: "dc1"),
        ]
        try await fixture.withTopology("every-action", transitions) { t in
            try await t.insertRows(1...30, on: t.instance("dc1"))
            let r = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(
                try await CLI.roles(state: t.state) == [
                    "dc1": "fenced", "dc2": "streaming-standby", "dc3": "archive-standby", "dc4": "archive-standby",
                ])
            #expect(try await t.driver.status(of: t.instance("dc1")).running == false)
            for site in ["dc2", "dc3", "dc4"] {
                try await t.waitForRow(30, on: t.instance(site))
                #expect(try await t.count(on: t.instance(site)) == "30", "\(site)")
                #expect(try await t.driver.status(of: t.instance(site)).inRecovery, "\(site)")
            }
        }
    }

    static let switchoverSteps: [String] = {
        let plan = LabFixture.makePlan(root: "/tmp/failoverd-labtest-points")
        var p = plan
        p.sites = Array(p.sites.prefix(2))
        p.transitions = [Transition(action: .switchover, to: "dc2")]
        let count = (try? Planner(plan: p).steps().get().count) ?? 0
        return (1...max(count, 1)).flatMap { ["\($0):before", "\($0):after"] }
    }()

    /// kill -9 of the engine at every step of dc-switchover, then resume: same roles, no row lost. The cases
    /// share one topology, back in its declared roles after each (``LabFixture/withSharedTopology(_:_:sites:systemd:_:)``).
    @Test(arguments: switchoverSteps) func crashAndResumeAtEveryStepOfDCSwitchover(_ point: String) async throws {
        try await fixture.withSharedTopology("crash", [Transition(action: .switchover, to: "dc2")], sites: ["dc1", "dc2"]) { t, rows in
            try await Self.crashAndResumeSwitchover(t, at: point, rows: rows)
        }
    }

    /// Rows 1–20 past `rows` on dc1, the engine killed at `point` of the dc1 → dc2 switchover, `failoverd
    /// resume`: the roles are those planned, and one more row written on dc2 reaches dc1 with all the others.
    /// `afterResume` checks what else the case promises; then a plain switchover back to dc1, so the topology is
    /// in its declared roles again; returns the rows. The runs of a case have a state directory of their own
    /// (journal and SSH control directory), as they had when each case built its topology.
    static func crashAndResumeSwitchover(
        _ shared: LabTopology, at point: String, rows: Int, sourceLocation: SourceLocation = #_sourceLocation,
        afterResume: () async throws -> Void = {}
    ) async throws -> Int {
        let t = try shared.withState(shared.state + "-" + point.replacingOccurrences(of: ":", with: "-"))
        do {
            let last = try await crashAndResumeSwitchover(case: t, at: point, rows: rows, sourceLocation: sourceLocation, afterResume)
            await t.closeState()
            return last
        } catch {
            await t.closeState()
            throw error
        }
    }

    private static func crashAndResumeSwitchover(
        case t: LabTopology, at point: String, rows: Int, sourceLocation: SourceLocation, _ afterResume: () async throws -> Void
    ) async throws -> Int {
        let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
        try await t.insertRows(rows + 1...rows + 20, on: dc1)
        let crashed = try await t.failoverd(["run", t.planPath, "--quiet", "--crash-at", point])
        #expect(
            crashed.killedBySignal && crashed.status == SIGKILL, "expected SIGKILL at \(point): \(crashed.status) \(crashed.stderr)",
            sourceLocation: sourceLocation)
        let resumed = try await t.failoverd(["resume", "--quiet"])
        #expect(resumed.status == 0, "resume after \(point): \(resumed.stderr)", sourceLocation: sourceLocation)
        #expect(try await CLI.roles(state: t.state) == ["dc1": "streaming-standby", "dc2": "primary"], sourceLocation: sourceLocation)
        let last = rows + 21
        try await t.insertRows(last...last, on: dc2)
        try await t.waitForStreaming(dc1, from: dc2)
        try await t.waitForRow(last, on: dc1)
        #expect(try await t.count(on: dc1) == String(last), sourceLocation: sourceLocation)
        #expect(try await t.count(on: dc2) == String(last), sourceLocation: sourceLocation)
        try await afterResume()

        let back = try t.writePlan(
            "back", [Transition(action: .switchover, to: "dc1")], roles: ["dc1": .streamingStandby, "dc2": .primary])
        let switched = try await t.failoverd(["run", back, "--quiet"])
        #expect(switched.status == 0, "switchover back to dc1: \(switched.stderr)", sourceLocation: sourceLocation)
        try await t.waitForStreaming(dc2, from: dc1)
        return last
    }

    static let systemdCrashPoints: [String] = {
        var p = LabFixture.makePlan(root: "/tmp/failoverd-labtest-points")
        p.sites = Array(p.sites.prefix(2))
        p.transitions = [Transition(action: .switchover, to: "dc2")]
        let steps = (try? Planner(plan: p).steps().get()) ?? []
        return steps.filter { $0.kind == .stop || $0.kind == .start }.flatMap { ["\($0.number):before", "\($0.number):after"] }
    }()

    /// kill -9 of the engine around the steps where systemd sites differ (the old primary's stop through
    /// pg_ctl and `systemctl stop`, its start as a standby through `systemctl start` and the fence drop-in),
    /// both sites under units: the resume ends with the same roles, every row, and both units active.
    @Test(arguments: systemdCrashPoints) func crashAndResumeAroundTheUnitsOfSystemdSites(_ point: String) async throws {
        try await fixture.withSharedTopology(
            "systemd-crash", [Transition(action: .switchover, to: "dc2")], sites: ["dc1", "dc2"], systemd: ["dc1", "dc2"],
            alsoReady: { await (try? Self.inactiveUnits($0).isEmpty) == true }
        ) { t, rows in
            try await Self.crashAndResumeSwitchover(
                t, at: point, rows: rows,
                afterResume: {
                    let inactive = try await Self.inactiveUnits(t)
                    #expect(inactive.isEmpty, "every instance runs under its unit after the resume; not: \(inactive)")
                })
        }
    }

    /// The instances of `t` whose systemd unit is not active.
    static func inactiveUnits(_ t: LabTopology) async throws -> [String] {
        let user = try OSUser.postgresUser(for: t.plan)
        var inactive: [String] = []
        for (_, instance) in t.plan.allInstances {
            guard let service = instance.service, let unit = service.unit, let runtime = service.runtimeDirectory else { continue }
            let active = try await t.lab.userSystemctl(user: user, runtime: runtime, ["is-active", unit])
            if active.stdout != "active\n" {
                inactive.append("\(instance.name) (\(unit): \(active.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))")
            }
        }
        return inactive
    }

    /// The primary's data center cut off: without a hook the failover refuses (exit 3) and nothing is promoted;
    /// with --assume-fenced it promotes, and the override is audited.
    /// A former primary on another host is captured over SSH (its pg_wal copied with cat as the OS user)
    /// before its rewind, and `failoverd lost` lists what it committed after the fork.
    @Test func aFormerPrimaryOnAnotherHostIsCapturedBeforeItsRewind() async throws {
        let transitions = [Transition(action: .failover, to: "dc2"), Transition(action: .rewind, site: "dc1", source: "dc2")]
        try await fixture.withTopology("lost", transitions, sites: ["dc1", "dc2"]) { t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            try await t.insertRows(1...10, on: dc1)
            try await t.waitForRow(10, on: dc2)
            for statement in ["ALTER SYSTEM SET primary_conninfo = ''", "ALTER SYSTEM SET restore_command = ''", "SELECT pg_reload_conf()"]
            {
                _ = try await t.sql(dc2, statement)
            }
            _ = try await Poll.until("dc2's WAL receiver to stop", timeout: 60, interval: 0.05) {
                try await t.driver.status(of: dc2).walReceiver == nil ? true : nil
            }
            var xids = Set<UInt32>()
            for id in 1001...1005 {
                let row = try await t.sql(dc1, "INSERT INTO t VALUES ($1, 'lost') RETURNING txid_current()::text", [String(id)])
                xids.insert(UInt32((UInt64(row.first?.first.flatMap { $0 } ?? "") ?? 0) & 0xFFFF_FFFF))
            }
            try await t.driver.stop(dc1, mode: .immediate)
            let run = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            let listed = try await t.failoverd(["lost", "--json"])
            #expect(listed.status == 0, "\(listed.stderr)")
            let report = try JSONDecoder().decode(LostReport.self, from: Data(listed.stdout.utf8))
            let lost = try #require(report.instances.first)
            #expect(lost.instance == "dc1-0" && lost.walFrom.contains("pg_wal of dc1-0"), "\(lost.walFrom) \(lost.notes)")
            #expect(Set(lost.transactions.map(\.xid)) == xids)
            #expect(lost.transactions.allSatisfy { $0.relations.first?.name == "public.t" })
            try await t.waitForStreaming(dc1, from: dc2)
        }
    }

    @Test func cutOffPrimaryWithoutHookRefusesUnlessAssumedFenced() async throws {
        try await fixture.withTopology("nohook", [Transition(action: .failover, to: "dc2")], sites: ["dc1", "dc2"], fencing: false) { t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            try await t.insertRows(1...10, on: dc1)
            try await t.waitForRow(10, on: dc2)
            try await t.lab.partition(site: "dc1")
            let refused = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(refused.status == 3, "\(refused.stderr)")
            #expect(refused.stderr.contains("cannot be reached") && refused.stderr.contains("--assume-fenced dc1"), "\(refused.stderr)")
            #expect(try await t.driver.status(of: dc2).inRecovery, "nothing was promoted")
            // The operator fences dc1 by other means (here: stays cut off) and says so.
            let assumed = try await t.failoverd(["run", t.planPath, "--quiet", "--assume-fenced", "dc1"])
            #expect(assumed.status == 0, "\(assumed.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            let audit = try await t.failoverd(["audit", "list"])
            #expect(audit.stdout.contains("assume-fenced") && audit.stdout.contains("assumed-fenced"), "\(audit.stdout)")
            // Behind the cut the old primary still runs: the operator's promise, not failoverd's, as the audit says.
            try await t.lab.heal(site: "dc1")
            #expect(try await t.driver.status(of: dc1).isWritablePrimary)
            try await t.driver.stop(dc1, mode: .immediate)
        }
    }

    /// With the plan's fencing hook the failover fences the cut-off site and promotes; after heal the old
    /// primary is stopped, gets its fence marker at the next run, refuses to start as a primary, and is
    /// repaired by rewind with every row.
    @Test func cutOffPrimaryWithHookFencesAndPromotesAndStaysFencedAfterHeal() async throws {
        try await fixture.withTopology("hook", [Transition(action: .failover, to: "dc2")], sites: ["dc1", "dc2"]) { t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            try await t.insertRows(1...10, on: dc1)
            try await t.waitForRow(10, on: dc2)
            try await t.lab.partition(site: "dc1")
            let r = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            #expect(try await t.failoverd(["audit", "list"]).stdout.contains("fencing-hook"))
            try await t.insertRows(11...11, on: dc2)

            try await t.lab.heal(site: "dc1")
            let seen = try await t.driver.status(of: dc1)
            #expect(seen.isProvenNotWritable && !seen.isWritablePrimary, "after heal dc1 is \(seen.seen)")
            // The next run writes the marker the unreachable host could not get; start then refuses.
            let rewindPath = try t.writePlan(
                "rewind", [Transition(action: .rewind, site: "dc1", source: "dc2")], roles: ["dc1": .fenced, "dc2": .primary])
            let crashed = try await t.failoverd(["run", rewindPath, "--quiet", "--crash-at", "1:before"])
            #expect(crashed.killedBySignal, "\(crashed.stderr)")
            #expect(try await t.driver.hasFenceMarker(dc1))
            await expectFailure(.refused, "is fenced") { try await t.driver.start(dc1) }
            #expect(try await !t.driver.status(of: dc1).running)
            let resumed = try await t.failoverd(["resume", "--quiet"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            try await t.waitForStreaming(dc1, from: dc2)
            try await t.waitForRow(11, on: dc1)
            #expect(try await t.count(on: dc1) == "11")
        }
    }

    /// A Debian cluster (pg_ctlcluster, its configuration in ROOT/15/dc2): switched over to, failed away
    /// from (fencing sets start.conf to disabled, so pg_ctlcluster itself refuses to start it), and rewound
    /// (pg_rewind --config-file) back into a streaming standby with every row.
    @Test func aPgCtlClusterSiteSwitchesOverIsFencedThroughStartConfAndIsRewound() async throws {
        try await fixture.withTopology("debian", [Transition(action: .switchover, to: "dc2")], sites: ["dc1", "dc2"], debian: ["dc2"]) {
            t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            #expect(dc2.service?.isPgCtlCluster == true)
            try await t.insertRows(1...10, on: dc1)
            let switched = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(switched.status == 0, "\(switched.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            try await t.insertRows(11...11, on: dc2)

            let failoverPath = try t.writePlan(
                "failover", [Transition(action: .failover, to: "dc1")], roles: ["dc2": .primary, "dc1": .streamingStandby])
            try await t.waitForRow(11, on: dc1)
            let failed = try await t.failoverd(["run", failoverPath, "--quiet"])
            #expect(failed.status == 0, "\(failed.stderr)")
            let paths = ServerPaths(dc2)
            let shell = try t.driver.shell(dc2)
            let startConf = try await shell.run(["cat", paths.startConf]).checked().stdout
            #expect(startConf == "disabled\n")
            let refused = try await shell.run(["pg_ctlcluster", "15", "dc2", "start"], environment: t.driver.serviceEnvironment(dc2))
            #expect(refused.exitCode != 0 && refused.outputTail.contains("Cluster is disabled"), "\(refused.outputTail)")
            #expect(try await !t.driver.status(of: dc2).running)

            let rewindPath = try t.writePlan(
                "rewind", [Transition(action: .rewind, site: "dc2", source: "dc1")], roles: ["dc2": .fenced, "dc1": .primary])
            try await t.insertRows(12...12, on: dc1)
            let rewound = try await t.failoverd(["run", rewindPath, "--quiet"])
            #expect(rewound.status == 0, "\(rewound.stderr)")
            #expect(try await shell.run(["cat", paths.startConf]).checked().stdout == "auto\n")
            try await t.waitForStreaming(dc2, from: dc1)
            try await t.waitForRow(12, on: dc2)
            #expect(try await t.count(on: dc2) == "12")
        }
    }

    /// A systemd unit of the OS user's own manager (a real `systemd --user` in the host's namespace): the site
    /// is switched over to and failed away from; fencing leaves failoverd's drop-in in force, so the unit's
    /// own start job refuses to start it while it is fenced and not a standby; it is rewound back into a
    /// streaming standby, which the same drop-in lets start, with every row.
    @Test func aSystemdSiteSwitchesOverIsFencedThroughItsDropInAndIsRewound() async throws {
        try await fixture.withTopology("systemd", [Transition(action: .switchover, to: "dc2")], sites: ["dc1", "dc2"], systemd: ["dc2"]) {
            t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            let service = try #require(dc2.service)
            let user = try OSUser.postgresUser(for: t.plan)
            func systemctl(_ arguments: [String]) async throws -> CommandResult {
                try await t.lab.userSystemctl(user: user, runtime: service.runtimeDirectory!, arguments)
            }
            let dropIn = service.dropInDirectory! + "/" + SystemdUnit.dropInName
            // The standby was started by its unit, and the unit carries failoverd's drop-in.
            #expect(try await systemctl(["is-active", service.unit!]).stdout == "active\n")
            #expect(try await systemctl(["show", "-p", "DropInPaths", "--value", service.unit!]).stdout.contains(dropIn))
            try await t.insertRows(1...10, on: dc1)
            let switched = try await t.failoverd(["run", t.planPath, "--quiet"])
            #expect(switched.status == 0, "\(switched.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            #expect(try await systemctl(["is-active", service.unit!]).stdout == "active\n", "the new primary runs under its unit")
            try await t.insertRows(11...11, on: dc2)

            // An immediate stop (a crash, to systemd) stays stopped: Restart=on-failure does not bring it back.
            try await t.driver.stop(dc2, mode: .immediate)
            #expect(try await systemctl(["is-active", service.unit!]).stdout != "active\n")
            #expect(try await !t.driver.status(of: dc2).running)
            try await t.driver.start(dc2)
            try await t.waitForRow(11, on: dc1)

            let failoverPath = try t.writePlan(
                "failover", [Transition(action: .failover, to: "dc1")], roles: ["dc2": .primary, "dc1": .streamingStandby])
            let failed = try await t.failoverd(["run", failoverPath, "--quiet"])
            #expect(failed.status == 0, "\(failed.stderr)")
            #expect(try await t.driver.hasFenceMarker(dc2))
            // systemd itself refuses: the unit's start job fails in failoverd's ExecStartPre.
            let refused = try await systemctl(["start", service.unit!])
            #expect(refused.exitCode != 0, "systemctl --user start of a fenced primary succeeded")
            #expect(try await !t.driver.status(of: dc2).running)
            let journal = try await systemctl(["status", "--no-pager", service.unit!]).stdout
            #expect(journal.contains("ExecStartPre"), "\(journal)")
            let log = try await t.driver.shell(dc2).run(["cat", ServerPaths(dc2).logFile]).checked().stdout
            #expect(log.contains("failoverd: dc2-0 is fenced"), "the drop-in says why, in the server's log")
            await expectFailure(.refused, "is fenced") { try await t.driver.start(dc2) }
            // The same unit under the system manager: failoverd never writes /etc, and a fence it cannot see
            // systemd enforce (no drop-in in /etc/systemd/system/UNIT.d) is refused, with the text to install.
            var system = dc2
            system.service = ServiceSettings(manager: "systemd", unit: service.unit!)
            await expectFailure(.refused, "failoverd does not write the system manager's configuration") {
                try await t.driver.setFenceMarker(system, reason: "test")
            }
            #expect(!FileManager.default.fileExists(atPath: "/etc/systemd/system/\(service.unit!).d"))

            let rewindPath = try t.writePlan(
                "rewind", [Transition(action: .rewind, site: "dc2", source: "dc1")], roles: ["dc2": .fenced, "dc1": .primary])
            try await t.insertRows(12...12, on: dc1)
            let rewound = try await t.failoverd(["run", rewindPath, "--quiet"])
            #expect(rewound.status == 0, "\(rewound.stderr)")
            try await t.waitForStreaming(dc2, from: dc1)
            try await t.waitForRow(12, on: dc2)
            #expect(try await t.count(on: dc2) == "12")
            #expect(try await systemctl(["is-active", service.unit!]).stdout == "active\n", "the rewound standby runs under its unit")
        }
    }

    /// A data directory behind a directory the OS user cannot search (EACCES) is unknown, never stopped:
    /// pg_ctl says "no data directory" (exit 4) for it, and so did `test -e`.
    @Test func aDataDirectoryBehindAnUnsearchableParentIsUnknownNotStopped() async throws {
        let locked = fixture.root + "/locked"
        try FileManager.default.createDirectory(atPath: locked + "/data/dc1-0", withIntermediateDirectories: true)
        chmod(locked, 0o700)
        var plan = fixture.plan
        plan.sites = [plan.sites[0]]
        plan.sites[0].instances[0].dataDirectory = locked + "/data/dc1-0"
        plan.sites[0].instances[0].port = 5499
        let state = fixture.root + "/state-eacces"
        defer { Task { await RemoteShell.closeAll(stateDirectory: state) } }
        let driver = try SSHPostgresDriver(plan: plan, stateDirectory: state)
        let instance = plan.sites[0].leader
        let seen = try await driver.status(of: instance)
        #expect(seen.running && !seen.reachable, "an unreadable data directory was taken for \(seen.seen)")
        #expect(!seen.isProvenNotWritable)
        #expect(seen.unreachableReason?.contains("exit 5") == true, "\(seen.unreachableReason ?? "")")
        await expectFailure(.stepFailed, "cannot tell whether") { _ = try await driver.hasData(instance) }
        await expectFailure(.stepFailed, "cannot reach") { _ = try await driver.controlData(of: instance) }
        // A data directory that is really missing (its parent searchable) is stopped, as before.
        chmod(locked, 0o755)
        try FileManager.default.removeItem(atPath: locked + "/data/dc1-0")
        #expect(try await driver.status(of: instance) == .stopped)
        #expect(try await !driver.hasData(instance))
    }

    /// Eight first commands at once on one host: each gets a live session of its own, or the one-shot path;
    /// none gets a session closed under it (which answered "unknown outcome" for a command never sent).
    @Test func concurrentFirstCommandsNeverGetAClosedSession() async throws {
        let state = fixture.root + "/state-concurrent"
        defer { Task { await RemoteShell.closeAll(stateDirectory: state) } }
        let driver = try SSHPostgresDriver(plan: fixture.plan, stateDirectory: state)
        let shell = try driver.shell(fixture.plan.sites[0].leader)
        let results = try await withThrowingTaskGroup(of: (Int, HostResult).self) { group in
            for i in 0..<8 { group.addTask { (i, try await shell.run(["echo", "command \(i)"])) } }
            return try await group.reduce(into: [Int: HostResult]()) { $0[$1.0] = $1.1 }
        }
        for i in 0..<8 {
            let r = try #require(results[i])
            #expect(r.exitCode == 0 && r.stdout == "command \(i)\n", "command \(i): exit \(r.exitCode): \(r.outputTail)")
        }
        // The control sockets are the state directory's own.
        #expect(shell.controlDirectory == state + "/ssh")
        #expect(FileManager.default.fileExists(atPath: shell.controlPath))
    }

    /// A fencing device lost with its data center: the hook fails, so the failover refuses, and
    /// `resume --assume-fenced` of that refused run fails over. The hook and the ssh processes never see
    /// failoverd's pgBackRest secrets.
    @Test func aHookThatCannotReachItsDeviceLetsResumeWithAssumeFencedFailOver() async throws {
        try await fixture.withTopology("hook-gone", [Transition(action: .failover, to: "dc2")], sites: ["dc1", "dc2"]) { t in
            let (dc1, dc2) = (t.instance("dc1"), t.instance("dc2"))
            let hook = fixture.root + "/fence-device-gone"
            let seen = fixture.root + "/hook-gone-env"
            let script = """
                #!/bin/sh
                # The fencing device went down with the data center. Records what the hook and ssh see.
                env > \(ShellQuote.quote(seen)).hook
                for f in $(grep -lz -- \(ShellQuote.quote("ControlPath=" + t.state + "/ssh/")) /proc/[0-9]*/cmdline 2>/dev/null); do
                  tr '\\0' '\\n' < "${f%/cmdline}/environ"
                done > \(ShellQuote.quote(seen)).ssh
                echo "fence device 198.18.1.250 unreachable" >&2
                exit 1

                """
            try script.write(toFile: hook, atomically: true, encoding: .utf8)
            chmod(hook, 0o755)
            var plan = t.plan
            plan.fencing = FencingHook(command: [hook])
            let planPath = t.planPath.replacingOccurrences(of: ".json", with: "-device-gone.json")
            try fixture.write(plan, to: planPath)
            let secret = ["PGBACKREST_REPO1_S3_KEY_SECRET": "canary-secret-7f3a"]

            try await t.insertRows(1...10, on: dc1)
            try await t.waitForRow(10, on: dc2)
            try await t.lab.partition(site: "dc1")
            let refused = try await CLI.run(["run", planPath, "--quiet", "--state", t.state], env: secret)
            #expect(refused.status == 3, "\(refused.stderr)")
            #expect(refused.stderr.contains("fence device 198.18.1.250 unreachable") && refused.stderr.contains("--assume-fenced dc1"))
            #expect(try await t.driver.status(of: dc2).inRecovery, "nothing was promoted")
            let resumed = try await CLI.run(["resume", "--quiet", "--assume-fenced", "dc1", "--state", t.state], env: secret)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(try await t.driver.status(of: dc2).isWritablePrimary)
            #expect(try await CLI.roles(state: t.state) == ["dc1": "fenced", "dc2": "primary"])
            let audit = try await t.failoverd(["audit", "list", "--json"]).stdout
            #expect(audit.contains("fencing-hook") && audit.contains("assumed-fenced"), "\(audit)")

            let hookEnv = try String(contentsOfFile: seen + ".hook", encoding: .utf8)
            let sshEnv = try String(contentsOfFile: seen + ".ssh", encoding: .utf8)
            #expect(hookEnv.contains("PATH=") && !hookEnv.contains("canary-secret"), "the hook saw: \(hookEnv)")
            #expect(!sshEnv.isEmpty, "no ssh process of the run was found")
            #expect(!sshEnv.contains("canary-secret"), "ssh saw: \(sshEnv)")

            // Behind the cut the old primary still runs: the operator's promise, as the audit says.
            try await t.lab.heal(site: "dc1")
            #expect(try await t.driver.status(of: dc1).isWritablePrimary)
            try await t.driver.stop(dc1, mode: .immediate)
        }
    }

    /// The systemd fence is proven by its effect: a later drop-in that resets `ExecStartPre=` leaves
    /// failoverd's drop-in loaded (DropInPaths lists it) but its check gone, and the fence is refused.
    @Test func aDropInThatResetsExecStartPreIsDetectedAndTheFenceRefused() async throws {
        try await fixture.withTopology("systemd-reset", [], roles: ["dc2": .primary], sites: ["dc2"], systemd: ["dc2"]) { t in
            let dc2 = t.instance("dc2")
            let service = try #require(dc2.service)
            let unit = try #require(SystemdUnit(dc2))
            let user = try OSUser.postgresUser(for: t.plan)
            let systemctl = { (arguments: [String]) async throws -> CommandResult in
                try await t.lab.userSystemctl(user: user, runtime: service.runtimeDirectory!, arguments)
            }
            try await t.driver.ensureFenceDropIn(dc2, unit)
            let reset = service.dropInDirectory! + "/zz-reset.conf"
            try Files.write("[Service]\nExecStartPre=\n", to: reset, mode: 0o644, owner: user)
            try await systemctl(["daemon-reload"]).checked()
            let paths = try await systemctl(["show", "-p", "DropInPaths", "--value", unit.unit]).checked().stdout
            #expect(paths.contains(SystemdUnit.dropInName), "failoverd's drop-in is still loaded: \(paths)")
            await expectFailure(.refused, "effective ExecStartPre") { try await t.driver.ensureFenceDropIn(dc2, unit) }
            await expectFailure(.refused, "effective ExecStartPre") { try await t.driver.setFenceMarker(dc2, reason: "test") }
            try Files.removeFile(reset, owner: user)
            try await systemctl(["daemon-reload"]).checked()
            try await t.driver.ensureFenceDropIn(dc2, unit)
        }
    }

    /// Each shipped plan of ssh sites, with the real CLI, while the suite's lab steps aside (one lab per machine).
    /// A plan whose drill adds faults (dc-failover-partitioned: dc1 cut off as the failover begins, healed two
    /// steps later) is drilled as the drill builds it, kept for the checks, then removed by `lab down`. The others
    /// are the issue's scenario: `lab up`; a drill of the same plan refuses at once, naming the lab and `lab
    /// down`, and the lab still works; `drill --reuse` drills it and leaves it up; `lab down`. Either way the
    /// final roles are read from PostgreSQL itself, and nothing of the lab is left.
    @Test(arguments: ShippedPlans.labPlans) func shippedLabPlanRunsForReal(name: String) async throws {
        let started = ContinuousClock.now
        await ShippedPlans.reapDead(name)
        let root = ShippedPlans.temporaryRoot(name)
        let planPath = CLI.plan(name)
        let plan = try PlanLoader.load(planPath)
        let state = root + (ShippedPlans.faults[name] == nil ? "/lab-state" : "/drill/state")
        // One lab per machine: the crash cases' shared topologies go first, then the suite's lab.
        await fixture.shared.stopAll()
        try await fixture.lab.down()
        var failure: (any Error)?
        do {
            if let faults = ShippedPlans.faults[name] {
                try await Self.drillBuildingItsOwnLab(plan: plan, planPath: planPath, faults: faults, root: root)
            } else {
                try await Self.refuseThenDrillRunningLab(plan: plan, planPath: planPath, state: state, root: root)
            }
        } catch { failure = error }
        let lab = Lab(plan: plan, stateDirectory: state)
        if lab.exists {
            let down = try await CLI.run(["lab", "down", planPath, "--state", state])
            #expect(down.status == 0, "lab down \(name): \(down.stderr)")
        }
        #expect(try await lab.running() == nil, "something of \(name)'s lab survived lab down")
        #expect(!((try? await lab.linkExists(lab.bridge)) ?? true), "bridge \(lab.bridge) survived")
        let login = plan.sites.first?.ssh?.user ?? "fodlab"
        #expect(!FileManager.default.fileExists(atPath: lab.sudoersPath(login: login)), "the lab's sudo rule survived lab down")
        try? FileManager.default.removeItem(atPath: root)
        // The suite's lab comes back on every path.
        try await fixture.lab.up(buildTopology: false)
        print("TIMING shipped lab plan \(name), suite lab down to suite lab up: \(ContinuousClock.now - started)")
        if let failure { throw failure }
    }

    /// The issue's scenario: with the lab up, `failoverd drill` of the same plan refuses at once (exit 3) naming
    /// the lab, its state directory and `lab down`, builds nothing and stops nothing; the lab's sshd, namespaces
    /// and servers still answer. `lab up` with another state directory refuses the same way. Then a row, `drill
    /// --reuse`, which leaves the lab up, and the final roles from outside.
    static func refuseThenDrillRunningLab(plan: Plan, planPath: String, state: String, root: String) async throws {
        let up = try await CLI.run(["lab", "up", planPath, "--state", state])
        try #require(up.status == 0, "lab up: \(up.stderr)")
        let lab = Lab(plan: plan, stateDirectory: state)
        let manifest = try #require(try LabManifest.load(for: plan, in: state))
        let postmasters = plan.allInstances.map { Postmaster.livePID(in: $0.instance.dataDirectory) }
        let outside = OutsideView(plan: plan)
        let primary = try #require(plan.declaredPrimary?.leader)
        try await outside.writeMarker(1, on: primary)

        let refused = try await ShippedPlans.expectDrillRefused(
            .lab, plan: plan, planPath: planPath, state: state, report: root + "/refused")
        // It names the lab's sshd processes, read from their own command lines, which name the state directory.
        for process in manifest.processes where process.what.hasPrefix("sshd ") {
            let named = "sshd \(process.pid) of \(process.what.dropFirst(5))"
            #expect(refused.stderr.contains(named), "\(refused.stderr) does not name \(named)")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/other-state/lab-\(plan.name).json"))
        let again = try await CLI.run(["lab", "up", planPath, "--state", state])
        #expect(
            again.status == 3 && again.stderr.contains("--state \(RunningTopology.word(state)) --reuse` completes it"), "\(again.stderr)")

        // The lab still works: the same sshd processes, namespaces and postmasters, and every server answers.
        for process in manifest.processes {
            #expect(ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01), "\(process.what) was stopped")
        }
        let namespaces = try await lab.existingNamespaces()
        for ns in manifest.namespaces { #expect(namespaces.contains(ns), "namespace \(ns) was deleted") }
        #expect(plan.allInstances.map { Postmaster.livePID(in: $0.instance.dataDirectory) } == postmasters)
        for (site, instance) in plan.allInstances where site.role != .none {
            #expect(try await outside.inRecovery(instance) == (site.role == .primary ? "f" : "t"), "\(instance.name)")
        }
        let status = try await CLI.run(["lab", "status", planPath, "--state", state])
        #expect(status.status == 0 && !status.stdout.contains("not running") && !status.stdout.contains("missing"), "\(status.stdout)")

        let report = root + "/report"
        let drilled = try await CLI.run([
            "drill", planPath, "--reuse", "--report", report, "--writers", "2", "--dwell", "1.5", "--warmup", "1",
        ])
        try #require(drilled.status == 0, "\(drilled.stdout.suffix(1500))\n\(drilled.stderr)")
        #expect(drilled.stdout.contains("using the running lab"))
        try expectDrillChecksPassed(report)
        // The drill did not build the lab, so it is still up.
        for process in manifest.processes {
            #expect(
                ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01),
                "drill --reuse stopped \(process.what)")
        }
        try await outside.expectFinalRoles(markerWrittenBefore: 1)
    }

    /// A drill with network faults, building its own lab and keeping it (--keep) for the checks from outside:
    /// with the primary's data center cut off as the failover begins and healed two steps later, the plan's
    /// hook fenced it before anything was promoted, it is not writable after heal, no acknowledged commit was
    /// lost, and every acknowledged row is on the new primary.
    static func drillBuildingItsOwnLab(plan: Plan, planPath: String, faults: String, root: String) async throws {
        let report = root + "/drill/report"
        let result = try await CLI.run([
            "drill", planPath, "--faults", faults, "--state", root + "/drill/state", "--report", report, "--warmup", "1", "--keep",
        ])
        try #require(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let checks = try expectDrillChecksPassed(report)
        let cut = try #require(checks.keys.first { $0.hasPrefix("no second primary while ") && $0.hasSuffix(" is cut off") })
        #expect(checks[cut]?.1.contains("fenced by the run") == true, "\(checks[cut]?.1 ?? "")")
        #expect(checks.keys.contains { $0.hasPrefix("after heal the old primary of ") }, "\(checks.keys)")
        let rpo = try #require(checks.first { $0.key.hasPrefix("RPO") }?.value)
        #expect(rpo.1.contains("0 acknowledged commits lost"), "\(rpo.1)")
        // Every acknowledged commit of the drill's workload, counted on the final primary by PostgreSQL itself.
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report + "/report.json"))) as? [String: Any])
        let acknowledged = try #require((json["workload"] as? [String: Any])?["acknowledged"] as? Int)
        let outside = OutsideView(plan: plan)
        let roles = try Planner(plan: plan).finalRoles().get()
        let primary = try #require(plan.sites.first { roles[$0.name] == .primary }?.leader)
        let rows = try await outside.psql(primary, "SELECT count(*) FROM failoverd_drill_ledger").flatMap { Int($0) }
        #expect((rows ?? 0) >= acknowledged && acknowledged > 0, "\(rows ?? -1) rows on \(primary.name), \(acknowledged) acknowledged")
        try await outside.writeMarker(1, on: primary)
        try await outside.expectFinalRoles(markerWrittenBefore: 1)
    }

    /// Every check of the drill's report passed; returns them by name (passed, detail).
    @discardableResult
    static func expectDrillChecksPassed(_ report: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: (
        Bool, String
    )] {
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report + "/report.json"))) as? [String: Any],
            sourceLocation: sourceLocation)
        let checks = (json["checks"] as? [[String: Any]] ?? []).reduce(into: [String: (Bool, String)]()) {
            $0[$1["name"] as? String ?? ""] = ($1["passed"] as? Bool ?? false, $1["detail"] as? String ?? "")
        }
        #expect(!checks.isEmpty, sourceLocation: sourceLocation)
        for (name, (passed, detail)) in checks { #expect(passed, "\(name): \(detail)", sourceLocation: sourceLocation) }
        return checks
    }
}
