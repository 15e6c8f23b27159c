import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The local driver's parsing, quoting and process handling, without a PostgreSQL server.
struct LocalDriverUnitTests {
    @Test func parsesPgControldataOutput() throws {
        let output = """
            pg_control version number:            1300
            Database system identifier:           7312081234567890123
            Database cluster state:               shut down
            Latest checkpoint location:           0/5000028
            Latest checkpoint's REDO location:    0/5000028
            Latest checkpoint's TimeLineID:       2
            Latest checkpoint's PrevTimeLineID:   1
            """
        let data = try #require(ControlData.parse(output))
        #expect(
            data
                == ControlData(
                    state: "shut down", systemIdentifier: "7312081234567890123", timeline: 2, checkpointLSN: LSN(0x500_0028),
                    redoLSN: LSN(0x500_0028)))
        #expect(data.isCleanPrimaryShutdown)
        #expect(ControlData.parse("Database cluster state: in production") == nil)
    }

    @Test func comparesWALSegmentNames() throws {
        let wanted = try #require(WALSegmentName("000000010000000000000003"))
        #expect(wanted.timeline == 1 && wanted.suffix.isEmpty)
        #expect(WALSegmentName("000000010000000000000003")!.covers(wanted))
        #expect(WALSegmentName("000000010000000100000000")!.covers(wanted))
        #expect(WALSegmentName("000000020000000000000003")!.covers(wanted), "a later timeline at the same position")
        #expect(!WALSegmentName("000000010000000000000002")!.covers(wanted))
        #expect(!WALSegmentName("000000010000000000000003.partial")!.covers(wanted))
        #expect(!WALSegmentName("000000020000000000000003")!.covers(WALSegmentName("000000030000000000000001")!))
        #expect(WALSegmentName("00000002.history") == nil)
    }

    @Test func quotesConninfoAndConfigurationValues() {
        let info = ConnInfo(
            host: "127.0.0.1", port: 5433, user: "replicator", dbname: nil, passfile: "/etc/fail over/pg'pass", applicationName: "dr-0")
        #expect(
            info.string
                == #"host=127.0.0.1 port=5433 user=replicator passfile='/etc/fail over/pg\'pass' connect_timeout=3 application_name=dr-0"#)
        #expect(!info.string.contains("password"))
        #expect(PostgresConf.quoted(#"a'b\c"#) == #"'a''b\\c'"#)
        #expect(ShellQuote.quote("it's") == #"'it'\''s'"#)
    }

    @Test func archiveAndRestoreCommandsWorkOnEveryInstance() {
        let plan = Plan(
            version: 1, name: "p", repository: Repository(type: "posix", path: "/srv/fo/repo", stanza: "main", config: nil),
            replication: Replication(user: "replicator", passfile: "/srv/fo/pgpass", rewindUser: nil, adminUser: nil, sslmode: nil),
            policy: Policy(maxLagBytes: 1, stepTimeoutSeconds: 10, archiveTimeoutSeconds: 10), sites: [], transitions: [], osUser: nil)
        let backrest = PgBackRest(plan: plan)
        #expect(backrest.configPath == "/srv/fo/pgbackrest-main.conf")
        #expect(
            backrest.archiveCommand
                == #"/usr/bin/pgbackrest --config=/srv/fo/pgbackrest-main.conf --stanza=main --repo1-type=posix --repo1-path=/srv/fo/repo --pg1-path="$(pwd)" archive-push "%p""#
        )
        #expect(backrest.restoreCommand.hasSuffix(#"--pg1-path="$(pwd)" archive-get %f "%p""#))
    }

    @Test func passfileKeepsExistingPasswordsAndAddsMissingOnes() throws {
        let dir = NSTemporaryDirectory() + "failoverd-passfile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let passfile = Passfile(path: dir + "/pgpass")
        let first = try passfile.ensure(roles: ["postgres", "replicator"], owner: nil)
        #expect(first.created && first.passwords.count == 2 && first.passwords.values.allSatisfy { $0.count == 32 })
        let second = try passfile.ensure(roles: ["postgres", "replicator", "rewinder"], owner: nil)
        #expect(!second.created && second.passwords["postgres"] == first.passwords["postgres"] && second.passwords["rewinder"] != nil)
        var info = stat()
        #expect(stat(passfile.path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(Passfile.split(#"*:*:*:we\:ird:p\\w"#) == ["*", "*", "*", "we:ird", #"p\w"#])
        #expect(Passfile.split("*:*:*:" + Passfile.escape("a:b\\c") + ":x")[3] == "a:b\\c")
    }

    @Test func commandRunnerCapturesOutputExitCodeAndACleanEnvironment() async throws {
        let runner = CommandRunner(user: OSUser.isRoot ? OSUser.lookup("failoverd") : nil)
        let env = try await runner.run("/usr/bin/env", [], environment: ["EXTRA": "1"], workingDirectory: "/tmp").checked()
        let keys = Set(env.stdout.split(separator: "\n").compactMap { $0.split(separator: "=").first.map(String.init) })
        #expect(keys.isSubset(of: ["HOME", "USER", "LOGNAME", "PATH", "LANG", "LC_ALL", "EXTRA"]))
        let pwd = try await runner.run("/bin/sh", ["-c", "pwd; id -u"], workingDirectory: "/tmp").checked()
        #expect(pwd.stdout.hasPrefix("/tmp\n"))
        if let user = runner.user {
            #expect(pwd.stdout.hasSuffix("\(user.uid)\n"), "runs as the unprivileged OS user")
        }
        let failing = try await runner.run("/bin/sh", ["-c", "echo boom >&2; exit 3"])
        #expect(failing.exitCode == 3)
        expectFailure(.stepFailed, "failed with exit code 3") { try failing.checked() }
        #expect(failing.outputTail == "boom")
    }

    @Test func commandRunnerIsNotHeldByADaemonChildAndKillsAtTheTimeout() async throws {
        let runner = CommandRunner()
        // Like pg_ctl start: the command leaves a background process behind; the runner returns while that
        // process still runs (had it waited for it, the child would be gone).
        // The child sleeps long enough that a loaded machine (this suite runs in parallel with real servers)
        // cannot make it finish before the check; a runner that waited for it would still take 300 s and fail.
        let result = try await runner.run("/bin/sh", ["-c", "sleep 300 & echo $!"]).checked()
        let pid = try #require(pid_t(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(kill(pid, 0) == 0, "the background child should still run when run() returns")
        kill(pid, SIGKILL)

        // Past its timeout a command is killed and the runner says so.
        await expectFailure(.stepFailed, "did not finish within 0 s and was killed") {
            try await runner.run("/bin/sleep", ["30"], timeout: 0.3)
        }
    }
}

/// Promises of the local driver and the sandbox that need no running server.
@Suite struct LocalDriverSafetyTests {
    @Test func refusesAnInstanceOnAnotherHost() throws {
        let (root, base) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var plan = base
        plan.sites[0].instances[0].host = "192.0.2.10"  // TEST-NET-1: never contacted, never this host
        do {
            _ = try LocalPostgresDriver(plan: plan)
            Issue.record("a remote instance was accepted")
        } catch let error as FailoverError {
            #expect(error.code == .invalidInput)
            #expect(error.message.contains("prod-0 is on 192.0.2.10, which is not this host"))
        }
        #expect(HostAddress.isLocal("127.0.0.1") && HostAddress.isLocal("localhost") && HostAddress.isLocal("::1"))
        #expect(HostAddress.isLocal(ProcessInfo.processInfo.hostName))
        #expect(!HostAddress.isLocal("192.0.2.10"))
    }

    @Test func sandboxUpRefusesADataDirectoryItDidNotBuild() async throws {
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = plan.sites[0].leader.dataDirectory
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try "15\n".write(toFile: data + "/PG_VERSION", atomically: true, encoding: .utf8)
        let sandbox = Sandbox(plan: plan, stateDirectory: root + "/state")
        #expect(!sandbox.exists)
        await expectFailure(.refused, "is not empty and was not built by `failoverd sandbox up`") { try await sandbox.up() }
        await expectFailure(.refused, "sandbox down: no sandbox of plan") { try await sandbox.down() }
        // Nothing was touched: the foreign directory is as it was, and no sandbox was recorded.
        #expect(try FileManager.default.contentsOfDirectory(atPath: data) == ["PG_VERSION"])
        #expect(!sandbox.exists)
    }
}

/// Ports for the servers the sandbox and the tests start: outside the kernel's ephemeral range (where an
/// outgoing connection could take one before the server binds it), free, and never handed out twice.
/// What a verb that would build a sandbox or lab says when the plan's already runs, and what `sandbox up`
/// says of a port another process holds.
struct RunningTopologyTests {
    @Test func aRefusalNamesWhatRunsWhereItWasBuiltAndTheCommandThatTakesItDown() {
        let lab = RunningTopology(
            kind: .lab, plan: "dc-switchover", stateDirectory: "/var/lib/failoverd", evidence: ["namespace fodlab-1-0"])
        let refusal = lab.refusal(
            "drill", planPath: "plans/dc-switchover.json", reuse: "drill it as it is with `failoverd drill X --reuse`.")
        #expect(refusal.code == .refused)
        #expect(
            refusal.message.hasPrefix("drill: the lab of plan \"dc-switchover\" is already running on this host (namespace fodlab-1-0)"))
        #expect(refusal.message.contains("built with --state /var/lib/failoverd. Nothing was changed."), "\(refusal.message)")
        #expect(refusal.message.contains("`failoverd lab down plans/dc-switchover.json --state /var/lib/failoverd`, or drill it as it is"))
        // Paths a shell would split are quoted in the command; an unknown state directory is said to be unknown.
        let odd = RunningTopology(kind: .sandbox, plan: "p", stateDirectory: "/tmp/my state", evidence: ["postmaster 1 of a"])
        #expect(odd.downCommand(planPath: "my plan.json") == "failoverd sandbox down 'my plan.json' --state '/tmp/my state'")
        let unknown = RunningTopology(kind: .sandbox, plan: "p", stateDirectory: nil, evidence: ["postmaster 1 of a"])
        #expect(unknown.downCommand(planPath: "p.json") == "failoverd sandbox down p.json --state STATE")
        #expect(unknown.refusal("sandbox up", planPath: "p.json", reuse: "").message.contains("a state directory failoverd cannot find"))
    }

    @Test func sandboxUpRefusesAPortAnotherProcessHoldsNamingItAndBuildsNothing() async throws {
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let port = plan.sites[0].leader.port
        let fd = try #require(FreePorts.bound(port), "port \(port) was taken")
        defer { close(fd) }
        try #require(listen(fd, 1) == 0)
        let sandbox = Sandbox(plan: plan, stateDirectory: root + "/state")
        await expectFailure(.refused, "127.0.0.1:\(port) (the port of instance prod-0) is already in use by pid \(getpid())") {
            try await sandbox.up()
        }
        #expect(!sandbox.exists)
        #expect(!FileManager.default.fileExists(atPath: plan.repository.path), "a refused sandbox up built something")
    }
}

struct FreePortsTests {
    @Test func portsAreFreeBelowTheEphemeralRangeAndNeverHandedOutTwice() throws {
        let range = try #require(FreePorts.quietRange(), "this machine's ephemeral range leaves room below it")
        let first = try FreePorts.take(20)
        let second = try FreePorts.take(20)
        #expect(Set(first + second).count == 40)
        #expect((first + second).allSatisfy { range.contains($0) })
        // Each is free: a listener binds it.
        for port in first.prefix(3) {
            let fd = FreePorts.bound(port)
            #expect(fd != nil, "port \(port) could not be bound")
            if let fd { close(fd) }
        }
    }
}
