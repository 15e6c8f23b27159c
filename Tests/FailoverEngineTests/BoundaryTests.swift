import Crypto
import Foundation
import Logging
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// failoverd at the host boundary: the fencing hook is root's own and runs exactly as checked, with a
/// clean environment; the operator's --assume-fenced stands whatever the hook does; nothing failoverd keeps
/// or deletes lies at a path in /tmp that another user could have made first.
@Suite struct BoundaryTests {
    typealias Fixture = InProcessExecutorTests.Fixture

    /// plans/failover.json with its old primary (prod-0) cut off, and a fencing hook at STATE/hooks/fence
    /// running `script` (the hook's arguments are appended to STATE/hook-ran).
    func fixture(hook script: String) throws -> (Fixture, Plan) {
        let fx = try InProcessExecutorTests().fixture("failover")
        var plan = fx.plan
        try write(script, hookAt: fx.state + "/hooks/fence", log: fx.state + "/hook-ran")
        plan.fencing = FencingHook(command: [fx.state + "/hooks/fence", "--dc"])
        fx.driver.cutOff("prod-0")
        return (fx, plan)
    }

    /// An executor over `fx`'s journal and driver, with `assumeFenced`.
    func executor(_ fx: Fixture, assumeFenced: [String] = []) -> Executor {
        var options = RunOptions(stateDirectory: fx.state)
        options.assumeFenced = assumeFenced
        return Executor(journal: fx.journal, drivers: ScriptedDrivers(driver: fx.driver), logger: Logger(label: "test"), options: options)
    }

    /// The details of `fx`'s audit events of `kind`.
    func audit(_ fx: Fixture, _ kind: String) throws -> [[String: String]] {
        try AuditLog(journal: fx.journal).query(.init(kind: kind)).map {
            try JSONDecoder().decode([String: String].self, from: Data($0.details.utf8))
        }
    }

    /// Writes an executable hook (root's own, 0755, in a 0755 directory) that logs its arguments, then runs `script`.
    func write(_ script: String, hookAt path: String, log: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let text = "#!/bin/sh\necho \"$*\" >> \(ShellQuote.quote(log))\n\(script)\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
    }

    // MARK: --assume-fenced with a hook

    /// A lost data center takes its fencing device with it: the hook fails, and the operator's
    /// --assume-fenced still fails over; both the hook's failure and the override are audited.
    @Test func assumeFencedStandsWhenTheHookFails() async throws {
        let (fx, plan) = try fixture(hook: "echo 'fence device unreachable' >&2; exit 1")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        let outcome = try await executor(fx, assumeFenced: ["prod"]).run(plan)
        #expect(outcome.outcome == .succeeded)
        #expect(try fx.journal.recordedRoles() == ["prod": .fenced, "dr": .primary])
        #expect(try String(contentsOfFile: fx.state + "/hook-ran", encoding: .utf8) == "--dc prod prod-0\n", "the hook ran first")
        let hook = try #require(try audit(fx, "fencing-hook").first)
        #expect(hook["exitCode"] == "1" && hook["site"] == "prod" && hook["instance"] == "prod-0")
        let assumed = try #require(try audit(fx, "assumed-fenced").first)
        #expect(assumed["site"] == "prod")
        #expect(assumed["hook"]?.contains("failed with exit code 1: fence device unreachable") == true, "\(assumed)")
        let fence = try #require(try fx.journal.steps(of: outcome.runID).first { $0.step.kind == .fence })
        let evidence = try #require(try fence.evidence(as: FenceEvidence.self))
        #expect(evidence.fencedBy?.hasPrefix("assumed by the operator (--assume-fenced prod) after the fencing hook") == true)
    }

    /// A run refused because the hook failed (closed as refused) is continued by `resume --assume-fenced`,
    /// without naming it, from the step that refused.
    @Test func resumeWithAssumeFencedContinuesARefusedRun() async throws {
        let (fx, plan) = try fixture(hook: "exit 3")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        let error = await #expect(throws: FailoverError.self) { _ = try await executor(fx).run(plan) }
        #expect(error?.code == .refused)
        #expect(error?.message.contains("resume with --assume-fenced prod") == true, "\(error?.message ?? "")")
        let refused = try #require(try fx.journal.lastRun())
        #expect(refused.outcome == .refused)
        #expect(try fx.journal.recordedRoles() == ["prod": .primary, "dr": .streamingStandby], "nothing promoted")
        let resumed = try await executor(fx, assumeFenced: ["prod"]).resume(runID: nil)
        #expect(resumed.runID == refused.id && resumed.outcome == .succeeded)
        #expect(try fx.journal.recordedRoles() == ["prod": .fenced, "dr": .primary])
        #expect(try audit(fx, "assumed-fenced").count == 1)
        #expect(
            try audit(fx, "fencing-hook").map { $0["exitCode"] } == ["3", "3"], "the hook ran again at the resume, and both are audited")
    }

    /// A hook that does not finish within the step timeout is killed, audited, and refuses like a failing one.
    @Test func aHookThatTimesOutIsAudited() async throws {
        let (fx, planned) = try fixture(hook: "exec sleep 30")
        var plan = planned
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        plan.policy.stepTimeoutSeconds = 1
        let error = await #expect(throws: FailoverError.self) { _ = try await executor(fx).run(plan) }
        #expect(error?.code == .refused, "\(error?.message ?? "")")
        #expect(error?.message.contains("did not complete") == true, "\(error?.message ?? "")")
        let hook = try #require(try audit(fx, "fencing-hook").first)
        #expect(hook["exitCode"] == "none")
        #expect(hook["error"]?.contains("did not finish within 1 s") == true, "\(hook)")
    }

    // MARK: The hook is root's own

    /// A hook someone other than root could change is never run: not at validate (exit 2, naming the path
    /// at $.fencing.command[0]), not at the step (exit 2; audited, the hook's own log untouched).
    @Test func aHookThatIsNotRootsOwnIsRefusedAtValidateAndNeverRun() async throws {
        let (fx, plan) = try fixture(hook: "exit 0")
        defer { try? FileManager.default.removeItem(atPath: fx.state) }
        let hook = fx.state + "/hooks/fence"
        let planPath = fx.state + "/plan.json"
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: planPath))
        let good = try await CLI.run(["validate", planPath])
        #expect(good.status == 0, "\(good.stdout)")

        let nobody = try #require(OSUser.lookup("nobody"))
        let other = fx.state + "/other"
        let link = fx.state + "/hooks/link"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: hook)
        let cases: [(String, () throws -> Void, () throws -> Void, String)] = [
            ("writable by others", { chmod(hook, 0o757) }, { chmod(hook, 0o755) }, "is writable by everyone"),
            ("owned by another user", { chown(hook, nobody.uid, nobody.gid) }, { chown(hook, 0, 0) }, "is owned by uid \(nobody.uid)"),
            (
                "in a directory of another user", { chown(fx.state + "/hooks", nobody.uid, nobody.gid) },
                { chown(fx.state + "/hooks", 0, 0) },
                "\(fx.state)/hooks is owned by uid \(nobody.uid)"
            ),
            (
                "in a group-writable directory", { chmod(fx.state + "/hooks", 0o775) }, { chmod(fx.state + "/hooks", 0o755) },
                "is writable by its group"
            ),
            (
                "missing", { try FileManager.default.moveItem(atPath: hook, toPath: other + "/fence") },
                { try FileManager.default.moveItem(atPath: other + "/fence", toPath: hook) }, "does not exist"
            ),
        ]
        for (what, spoil, repair, says) in cases {
            try spoil()
            let v = try await CLI.run(["validate", planPath])
            #expect(v.status == 2, "\(what): \(v.stdout)")
            #expect(v.stdout.contains("$.fencing.command[0]") && v.stdout.contains(hook) && v.stdout.contains(says), "\(what): \(v.stdout)")
            try repair()
        }
        // Named through a symbolic link: what is checked must be what runs, so the real path is asked for.
        var linked = plan
        linked.fencing = FencingHook(command: [link])
        let linkedPath = fx.state + "/linked.json"
        try JSONEncoder().encode(linked).write(to: URL(fileURLWithPath: linkedPath))
        let v = try await CLI.run(["validate", linkedPath])
        #expect(v.status == 2 && v.stdout.contains("\(link) is a symbolic link"), "\(v.stdout)")

        // At the step: checked again on the descriptor that would run, and refused with exit 2.
        chmod(hook, 0o777)
        let error = await #expect(throws: FailoverError.self) { _ = try await executor(fx, assumeFenced: ["prod"]).run(plan) }
        #expect(error?.code == .invalidInput, "\(error?.message ?? "")")
        #expect(error?.message.contains("\(hook) is writable by everyone") == true, "\(error?.message ?? "")")
        #expect(!FileManager.default.fileExists(atPath: fx.state + "/hook-ran"), "the hook ran")
        #expect(try audit(fx, "fencing-hook").first?["refused"]?.contains(hook) == true)
        #expect(try audit(fx, "assumed-fenced").isEmpty, "--assume-fenced does not cover a hook failoverd refuses to run")
    }

    /// What runs is the file that was checked: its path replaced after the check changes nothing.
    @Test func theCheckedHookIsTheFileThatRuns() async throws {
        let root = CLI.tempDirectory("failoverd-boundary-fd")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let hook = root + "/fence"
        try write("echo checked \"$#\" \"$1\"", hookAt: hook, log: root + "/log")
        let fd = try TrustedPath.openExecutable(hook)
        defer { close(fd) }
        try write("echo swapped", hookAt: root + "/other", log: root + "/log")
        #expect(rename(root + "/other", hook) == 0)
        let r = try await CommandRunner().run(opened: fd, shownAs: hook, ["a b", "c"]).checked()
        #expect(r.stdout == "checked 2 a b\n")
        #expect(r.commandLine == "fence 'a b' c")
    }

    // MARK: Environment

    /// pgBackRest's settings (an S3 secret) reach pgBackRest and the servers that run it, and nothing else:
    /// not the fencing hook, ssh or curl, which run through runners that do not forward them.
    @Test func repositorySecretsReachOnlyTheRunnersThatAskForThem() async throws {
        let inherited = ["PGBACKREST_REPO1_S3_KEY_SECRET": "s3cret-7f3a", "PGPASSWORD": "pw-7f3a", "HOME": "/elsewhere"]
        let clean = try await CommandRunner(inheritedEnvironment: inherited).run("/usr/bin/env").checked()
        #expect(!clean.stdout.contains("7f3a") && !clean.stdout.contains("/elsewhere"), "\(clean.stdout)")
        let forwarding = try await CommandRunner(forwardsRepositoryEnvironment: true, inheritedEnvironment: inherited).run("/usr/bin/env")
            .checked()
        #expect(forwarding.stdout.contains("PGBACKREST_REPO1_S3_KEY_SECRET=s3cret-7f3a\n"))
        #expect(!forwarding.stdout.contains("pw-7f3a"))
        // Who forwards: the PostgreSQL tools; not the Patroni REST client (curl).
        let plan = try PlanLoader.load(CLI.plan("failover"))
        #expect(try LocalPostgresDriver(plan: plan).runner.forwardsRepositoryEnvironment)
        #expect(!PatroniSite(plan: plan).runner.forwardsRepositoryEnvironment)
    }

    /// curl reads no curlrc: `-q` comes first, so a `.curlrc` (root's own, or any CURL_HOME) adds nothing.
    @Test func curlReadsNoConfigurationFile() async throws {
        let home = CLI.tempDirectory("failoverd-curlrc")
        defer { try? FileManager.default.removeItem(atPath: home) }
        // An option that shows: curl writes a trace of the request to this file.
        try "trace-ascii = \(home)/trace\n".write(toFile: home + "/.curlrc", atomically: true, encoding: .utf8)
        let rest = PatroniREST(cluster: PatroniCluster(scope: "s", etcd: nil), runner: CommandRunner())
        let args = rest.arguments("GET", "http://127.0.0.1:1", "/patroni", body: nil)
        #expect(args.first == "-q")
        _ = try await CommandRunner().run("/usr/bin/curl", Array(args.dropFirst()), environment: ["CURL_HOME": home])
        #expect(FileManager.default.fileExists(atPath: home + "/trace"), "without -q the curlrc is read (the test's own check)")
        try FileManager.default.removeItem(atPath: home + "/trace")
        let r = try await CommandRunner().run("/usr/bin/curl", args, environment: ["CURL_HOME": home])
        #expect(r.exitCode == 7, "exit \(r.exitCode): \(r.outputTail)")
        #expect(!FileManager.default.fileExists(atPath: home + "/trace"), "curl read the curlrc")
    }

    // MARK: The lab's directories

    /// `lab up` writes a key, known_hosts and a fencing hook that root then trusts: into a directory another
    /// user made first it writes nothing, and refuses before it changes anything on the host (no login user).
    @Test(.enabled(if: LabFixture.available, "needs root")) func labUpRefusesADirectoryAnotherUserMadeFirst() async throws {
        // The lab's paths are predictable (/tmp/failoverd-lab-dcp/ssh/id_ed25519): another user creates them first.
        let id = UUID().uuidString.prefix(8).lowercased()
        let root = "/tmp/failoverd-lab-planted-" + id
        let state = CLI.tempDirectory("failoverd-lab-planted-state")
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: state)
        }
        var plan = LabFixture.makePlan(root: root)
        plan.name = "planted-" + id
        let nobody = try #require(OSUser.lookup("nobody"))
        try await CommandRunner(user: nobody).run("/bin/mkdir", ["-p", "-m", "755", root + "/ssh"]).checked()
        let lab = Lab(plan: plan, stateDirectory: state)
        let login = plan.sites[0].ssh!.user
        // Alone: with another suite's lab up, `lab up` refuses for that reason first.
        try await LabGate.exclusive {
            await expectFailure(.refused, "\(root) is owned by uid \(nobody.uid)") { try await lab.up(buildTopology: false) }
            #expect(!FileManager.default.fileExists(atPath: root + "/ssh/id_ed25519"), "a key was written into another user's directory")
            #expect(OSUser.lookup(login) == nil, "the login user was created before the refusal")
            _ = try await lab.down()
        }
        #expect(FileManager.default.fileExists(atPath: root + "/ssh"), "lab down removed a directory it did not create")
    }

    // MARK: The SSH control directory

    /// The control sockets live in the state directory; a directory another user made at the old
    /// predictable /tmp path is neither used nor deleted, even by a run that ends every connection.
    @Test func aPlantedSSHDirectoryInTmpIsNeitherUsedNorDeleted() async throws {
        let state = CLI.tempDirectory("failoverd-ssh-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        #expect(try RemoteShell.controlDirectoryPath(for: state) == state + "/ssh")
        // Where failoverd kept them before: a path any user can compute and create first.
        let digest = SHA256.hash(data: Data(state.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        let planted = "/tmp/failoverd-ssh-\(geteuid())-\(digest)"
        let nobody = try #require(OSUser.lookup("nobody"))
        defer { try? FileManager.default.removeItem(atPath: planted) }
        try await CommandRunner(user: nobody).run("/bin/mkdir", ["-m", "755", planted]).checked()
        try await CommandRunner(user: nobody).run("/bin/sh", ["-c", "echo mine > \(planted)/notes.txt"]).checked()
        let r = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", state])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: planted + "/notes.txt"), "another user's directory was deleted")

        // closeAll removes failoverd's own sockets only, and follows no link.
        let elsewhere = CLI.tempDirectory("failoverd-ssh-elsewhere")
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        try "keep\n".write(toFile: elsewhere + "/keep", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: state + "/ssh", withDestinationPath: elsewhere)
        await RemoteShell.closeAll(stateDirectory: state)
        #expect(FileManager.default.fileExists(atPath: elsewhere + "/keep"))
        try FileManager.default.removeItem(atPath: state + "/ssh")
        try FileManager.default.createDirectory(atPath: state + "/ssh", withIntermediateDirectories: false)
        try "keep\n".write(toFile: state + "/ssh/notes", atomically: true, encoding: .utf8)
        await RemoteShell.closeAll(stateDirectory: state)
        #expect(FileManager.default.fileExists(atPath: state + "/ssh/notes"), "a file failoverd did not make was removed")
    }

    /// A state directory too long for a unix socket path puts the sockets in a root-owned runtime directory.
    @Test func aLongStateDirectoryKeepsTheSocketPathWithinTheLimit() throws {
        let long = "/var/lib/" + String(repeating: "x", count: 80)
        let path = try RemoteShell.controlDirectoryPath(for: long)
        #expect(OSUser.isRoot ? path.hasPrefix("/run/failoverd/ssh-") : path.contains("failoverd-ssh-"))
        let shell = RemoteShell(host: "198.18.1.10", ssh: SSHSettings(user: "dba"), osUser: "failoverd", controlDirectory: path)
        #expect(shell.controlPath.utf8.count + 17 <= 107)
        let short = RemoteShell(
            host: "198.18.1.10", ssh: SSHSettings(user: "dba"), osUser: "failoverd",
            controlDirectory: try RemoteShell.controlDirectoryPath(for: "/var/lib/failoverd"))
        #expect(short.controlPath.hasPrefix("/var/lib/failoverd/ssh/") && short.controlPath.utf8.count + 17 <= 107)
    }
}
