import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The two host transports and what the PostgreSQL driver builds over them, without a PostgreSQL server:
/// this host's file work and existence checks, and the SSH transport's scripts, run here with /bin/sh as the
/// OS user exactly as a host runs them (they are argv, not text, wherever they run).
@Suite(.enabled(if: OSUser.isRoot && OSUser.lookup("failoverd") != nil, "needs root and the OS user failoverd"))
struct HostTransportTests {
    let user = OSUser.lookup("failoverd")!
    let instance = Instance(name: "a-0", host: "127.0.0.1", port: 5999, dataDirectory: "/nonexistent/a-0")

    /// A directory of the OS user's, removed by the caller.
    func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "failoverd-host-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chown(dir, user.uid, user.gid)
        return dir
    }

    /// Runs one of the SSH transport's scripts with /bin/sh as the OS user, as a host would.
    func hostScript(_ script: String, _ arguments: [String]) async throws -> HostResult {
        let r = try await CommandRunner(user: user).run("/bin/sh", ["-c", script, "failoverd"] + arguments)
        return HostResult(result: r, host: "198.18.1.10")
    }

    // MARK: This host

    /// `exists` is lstat: a dangling link counts (a planted link in place of the fence marker keeps the
    /// instance fenced); only ENOENT and ENOTDIR prove absence; anything else is "cannot tell", not "no".
    @Test func thisHostsExistsIsProvenOrAnError() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = LocalHost(osUser: user, defaultTimeout: 10)
        #expect(symlink(dir + "/nowhere", dir + "/dangling") == 0)
        #expect(try await host.exists(dir + "/dangling", on: instance))
        #expect(try await !host.exists(dir + "/missing", on: instance))
        #expect(try await !host.exists("/etc/passwd/below-a-file", on: instance), "ENOTDIR proves absence")
        await expectFailure(.stepFailed, "cannot tell whether") {
            _ = try await host.exists(dir + "/" + String(repeating: "n", count: 300), on: instance)
        }
    }

    /// An append keeps the file (its inode, owner and mode: Debian's 0644 postgresql.conf stays 0644), refuses
    /// a link planted in its place, and never creates a file.
    @Test func thisHostsAppendKeepsTheFileAndRefusesALink() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = LocalHost(osUser: user, defaultTimeout: 10)
        let conf = dir + "/postgresql.conf"
        try "port = 5432".write(toFile: conf, atomically: false, encoding: .utf8)
        chmod(conf, 0o644)
        chown(conf, user.uid, user.gid)
        var before = stat()
        stat(conf, &before)
        try await host.append(PostgresConf.includeBlock(after: "port = 5432"), to: conf, on: instance)
        var after = stat()
        stat(conf, &after)
        let text = try String(contentsOfFile: conf, encoding: .utf8)
        #expect(
            text
                == "port = 5432\n\n# failoverd: standby settings (restore_command, primary_conninfo) live in this file.\n\(InstancePaths.includeLine)\n"
        )
        #expect(PostgresConf.includesRecoveryFile(text))
        #expect(after.st_ino == before.st_ino && after.st_mode & 0o777 == 0o644 && after.st_uid == user.uid)

        try "root only\n".write(toFile: dir + "/target", atomically: false, encoding: .utf8)
        #expect(symlink(dir + "/target", dir + "/link.conf") == 0)
        await expectFailure(.refused, "symbolic link") { try await host.append("x", to: dir + "/link.conf", on: instance) }
        #expect(try String(contentsOfFile: dir + "/target", encoding: .utf8) == "root only\n")
        await expectFailure(.stepFailed, "could not append") { try await host.append("x", to: dir + "/missing.conf", on: instance) }
        #expect(!FileManager.default.fileExists(atPath: dir + "/missing.conf"))
    }

    /// The driver over this host, on a data directory with no server: standby settings written once and read
    /// back, postgresql.auto.conf's owned keys removed (ALTER SYSTEM seen as an override before), standby.signal
    /// created, and the include appended once.
    @Test func standbySettingsOverThisHostRoundTrip() async throws {
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let instance = plan.sites[0].leader
        let paths = ServerPaths(instance)
        try Files.makeDirectory(paths.dataDirectory, owner: user)
        try Files.write("15\n", to: paths.pgVersion, owner: user)
        try Files.write("shared_buffers = 16MB\n", to: paths.postgresqlConf, owner: user)
        try Files.write("restore_command = 'from a restore'\nwork_mem = '8MB'\n", to: paths.autoConf, owner: user)
        try Files.write("", to: paths.standbySignal, owner: user)
        try Files.write("# hand-made, no upstream line\n", to: paths.recoveryFile, owner: user)
        let driver = try LocalPostgresDriver(plan: plan)
        await expectFailure(.stepFailed, "has no \"# failoverd-upstream:\" line; it was edited by hand") {
            _ = try await driver.recoverySettings(of: instance)
        }
        try FileManager.default.removeItem(atPath: paths.standbySignal)
        #expect(try await driver.recoverySettings(of: instance) == nil, "no standby.signal: not a standby")

        let upstream = Instance(name: "dr-0", host: "127.0.0.1", port: 5433, dataDirectory: root + "/data/dr-0")
        try await driver.configureRecovery(of: instance, RecoverySettings(upstream: upstream))
        #expect(try await driver.recoverySettings(of: instance) == RecoverySettings(upstream: upstream))
        #expect(try String(contentsOfFile: paths.autoConf, encoding: .utf8) == "work_mem = '8MB'\n")
        #expect(FileManager.default.fileExists(atPath: paths.standbySignal))
        try await driver.configureRecovery(of: instance, .archiveOnly)
        let conf = try String(contentsOfFile: paths.postgresqlConf, encoding: .utf8)
        #expect(conf.components(separatedBy: InstancePaths.includeLine).count == 2, "included once:\n\(conf)")
        try Files.write("primary_conninfo = 'host=elsewhere'\n", to: paths.autoConf, owner: user)
        #expect(try await driver.recoverySettings(of: instance) == RecoverySettings(upstream: nil, overridden: true))
    }

    /// A local site's instance started by a service manager is refused: only the ssh driver starts servers
    /// with pg_ctlcluster or systemd (the validator says so too; a plan built in code meets the driver).
    @Test func theLocalDriverRefusesAServiceManager() throws {
        let (root, base) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var plan = base
        plan.sites[0].instances[0].service = ServiceSettings(manager: "systemd", unit: "postgresql-15.service")
        expectFailure(.invalidInput, "service manager systemd applies to driver ssh only") { _ = try LocalPostgresDriver(plan: plan) }
    }

    // MARK: The SSH transport's scripts

    /// Files read in one round trip come back exactly, whatever they hold (no final newline, CRLF, the framing
    /// token's look-alikes, empty files); a missing one is nil; one behind a directory the OS user cannot
    /// search is an error, never "absent".
    @Test func theSSHReadScriptFramesAnyTextAndFailsClosed() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "0123456789abcdef0123456789abcdef"
        let texts = ["no newline", "crlf\r\nline\r\n", "\n\(token.dropLast())0 -\n\n\(token.dropLast())0 .\n", "", "é 雪 🐘\n\n\n"]
        for (i, text) in texts.enumerated() {
            try text.write(toFile: dir + "/f\(i)", atomically: false, encoding: .utf8)
            chown(dir + "/f\(i)", user.uid, user.gid)
        }
        let paths = texts.indices.map { dir + "/f\($0)" } + [dir + "/missing", "/nonexistent/x/y"]
        let r = try await hostScript(SSHHost.provenAbsent + SSHHost.readFiles, [token] + paths)
        #expect(r.exitCode == 0, "\(r.outputTail)")
        let read = try #require(SSHHost.parseFiles(r.stdout, token: token))
        #expect(read == texts.map { Optional($0) } + [nil, nil])

        let locked = dir + "/locked"
        try FileManager.default.createDirectory(atPath: locked + "/inside", withIntermediateDirectories: true)
        chmod(locked, 0o700)  // root's: the OS user cannot search it
        let hidden = try await hostScript(SSHHost.provenAbsent + SSHHost.readFiles, [token, locked + "/inside/postgresql.conf"])
        #expect(hidden.exitCode == 5 && hidden.stderr.contains("cannot reach"), "\(hidden.exitCode) \(hidden.outputTail)")
        #expect(SSHHost.parseFiles("garbage", token: token) == nil)
    }

    /// Files written in one round trip get their text and mode exactly, whatever the text holds.
    @Test func theSSHWriteScriptWritesEveryFileWithItsMode() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = [
            HostFile(dir + "/recovery.conf", "primary_conninfo = 'a''b'\n$(id) `id` \\ \"\n"),
            HostFile(dir + "/fenced", "x\n", mode: 0o644),
            HostFile(dir + "/standby.signal", ""),
        ]
        let r = try await hostScript(SSHHost.writeFiles, files.flatMap { [$0.path, $0.text, String($0.mode, radix: 8)] })
        #expect(r.exitCode == 0, "\(r.outputTail)")
        for file in files {
            var s = stat()
            #expect(stat(file.path, &s) == 0 && Int(s.st_mode & 0o777) == file.mode && s.st_uid == user.uid)
            #expect(try String(contentsOfFile: file.path, encoding: .utf8) == file.text)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["fenced", "recovery.conf", "standby.signal"])
    }

    /// The start script decides on the host, fail closed: no cluster, already running, fenced without
    /// standby.signal, and a fence marker whose absence cannot be proven (its directory unsearchable) is a
    /// fence. A fake pg_ctl answers `status` from a file (running when it exists) and records a start.
    @Test func theStartScriptRefusesAFencedOrUnknownInstance() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pgctl = dir + "/pg_ctl"
        try #"if [ "$1" = status ]; then [ -e "$3/running" ] && exit 0; exit 3; fi; echo "$@" > "$(dirname "$0")/started""#
            .write(toFile: pgctl, atomically: false, encoding: .utf8)
        chmod(pgctl, 0o755)
        let (data, state) = (dir + "/data", dir + "/data.failoverd")
        for d in [data, state] {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            chown(d, user.uid, user.gid)
        }
        func start() async throws -> Int32 {
            try await hostScript(
                PostgresInstanceDriver<LocalHost>.startScript, [pgctl, data, state, "60", "-p 5999", "pg_ctl", "", "", "", ""]
            ).exitCode
        }
        #expect(try await start() == 10, "no PG_VERSION")
        _ = FileManager.default.createFile(atPath: data + "/PG_VERSION", contents: Data("15\n".utf8))
        _ = FileManager.default.createFile(atPath: state + "/fenced", contents: Data())
        #expect(try await start() == 11, "fenced, no standby.signal")
        _ = FileManager.default.createFile(atPath: data + "/running", contents: Data())
        #expect(try await start() == 9, "already running: nothing started")
        try FileManager.default.removeItem(atPath: data + "/running")
        try FileManager.default.removeItem(atPath: state + "/fenced")
        chown(state, 0, 0)
        chmod(state, 0o700)  // the OS user cannot look for the marker: not proven unfenced
        #expect(try await start() == 11, "a marker that cannot be proven absent fences")
        #expect(!FileManager.default.fileExists(atPath: dir + "/started"))
        _ = FileManager.default.createFile(atPath: data + "/standby.signal", contents: Data())
        #expect(try await start() == 0, "a standby may start")
        #expect(
            try String(contentsOfFile: dir + "/started", encoding: .utf8).hasPrefix("start -D \(data) -l \(state)/postgresql.log -w -t 60"))
    }

    /// The stop script: nothing asked when nothing runs; the request's exit status and what `pm` saw after
    /// it; an unknown data directory stops nothing and says so.
    @Test func theSSHStopScriptSaysWhatItSaw() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pgctl = dir + "/pg_ctl"
        try #"[ "$1" = status ] || exit 1; [ -e "$3/running" ] && exit 0; [ -d "$3" ] && exit 3; exit 4"#
            .write(toFile: pgctl, atomically: false, encoding: .utf8)
        chmod(pgctl, 0o755)
        let data = dir + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        chown(data, user.uid, user.gid)
        let script = SSHHost.provenAbsent + SSHHost.postmasterStatus + SSHHost.stopAndWait
        func stop(_ request: [String]) async throws -> PostmasterStop {
            SSHHost.stopOutcome(try await hostScript(script, [pgctl, data, "2"] + request), instance)
        }
        guard case .notRunning = try await stop(["false"]) else { Issue.record("nothing ran, yet a stop was asked"); return }
        _ = FileManager.default.createFile(atPath: data + "/running", contents: Data())
        chown(data + "/running", user.uid, user.gid)
        guard case .stopped(let gone) = try await stop(["rm", "-f", data + "/running"]) else { Issue.record("not seen gone"); return }
        #expect(gone.exitCode == 0 && gone.stdout.isEmpty)
        _ = FileManager.default.createFile(atPath: data + "/running", contents: Data())
        guard case .notStopped(let refused, let seen) = try await stop(["sh", "-c", "echo no such mode >&2; exit 1"]) else {
            Issue.record("a failed request was taken for a stop")
            return
        }
        #expect(refused.exitCode == 1 && refused.outputTail == "no such mode" && seen == .running)
        let locked = dir + "/locked"
        try FileManager.default.createDirectory(atPath: locked + "/data", withIntermediateDirectories: true)
        chmod(locked, 0o700)
        guard case .unknown(let why) = SSHHost.stopOutcome(try await hostScript(script, [pgctl, locked + "/data", "2", "true"]), instance)
        else {
            Issue.record("an unsearchable data directory was taken for a stopped one")
            return
        }
        #expect(why.contains("failed with exit 5"), "\(why)")
    }

    // MARK: What is the same on both

    /// A result's refusal reads as it did before the transports: this host's names the command and its
    /// seconds, another host's names the host, and an SSH failure (255) is "cannot reach", never a "no".
    @Test func resultsSayWhereTheyRan() {
        let failed = CommandResult(commandLine: "pg_ctl promote", exitCode: 1, stdout: "", stderr: "not in standby mode", seconds: 0.2)
        expectFailure(.stepFailed, "`pg_ctl promote` failed with exit code 1 after 0.2 s: not in standby mode. Hint.") {
            try HostResult(result: failed).checked("Hint.")
        }
        #expect(!HostResult(result: failed).unreachable)
        expectFailure(.stepFailed, "`pg_ctl promote` failed on 198.18.1.10 with exit code 1: not in standby mode. Hint.") {
            try HostResult(result: failed, host: "198.18.1.10").checked("Hint.")
        }
        var cut = failed
        cut.exitCode = 255
        #expect(HostResult(result: cut, host: "198.18.1.10").unreachable && !HostResult(result: cut).unreachable)
        expectFailure(.stepFailed, "cannot reach 198.18.1.10 over SSH") { try HostResult(result: cut, host: "198.18.1.10").checked() }
    }

    /// A server that does not answer SQL is stopped only when its host proves it; running or unknown, it is
    /// running and unreachable, with the reason.
    @Test func aServerThatDoesNotAnswerIsStoppedOnlyWhenProven() {
        typealias Driver = PostgresInstanceDriver<SSHHost>
        #expect(Driver.unanswered(.stopped, sql: "refused") == .stopped)
        let running = Driver.unanswered(.running, sql: "timeout expired")
        #expect(running.running && !running.reachable && running.unreachableReason == "timeout expired" && !running.isProvenNotWritable)
        let unknown = Driver.unanswered(.unknown("host 198.18.1.10 cannot be reached over SSH (exit 255)"), sql: "timeout expired")
        #expect(
            unknown.unreachableReason == "host 198.18.1.10 cannot be reached over SSH (exit 255) and SQL does not answer (timeout expired)")
        #expect(!unknown.isProvenNotWritable)
    }
}
