import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The local driver and the sandbox against real PostgreSQL 15 and pgBackRest on this host.
///
/// Each test builds its own sandbox (fresh directory, free ports) and always takes it down. Timings
/// are printed as `TIMING <what>: <seconds> s`.
@Suite(.serialized)
struct LocalDriverTests {
    @Test func sandboxUpBuildsEveryRoleAndDownRemovesEverything() async throws {
        let layout = [
            SiteLayout(name: "prod", role: .primary, instances: 2), SiteLayout(name: "dr", role: .archiveStandby),
            SiteLayout(name: "ha", role: .streamingStandby, instances: 2), SiteLayout(name: "cold", role: .none),
        ]
        var pids: [Int32] = []
        var fixtureRoot = ""
        try await SandboxFixture.with(layout) { fx in
            fixtureRoot = fx.root
            let (prod0, prod1, dr0, ha0, ha1, cold0) = (
                fx.instance("prod-0"), fx.instance("prod-1"), fx.instance("dr-0"), fx.instance("ha-0"), fx.instance("ha-1"),
                fx.instance("cold-0")
            )
            let primary = try await fx.driver.status(of: prod0)
            #expect(primary.isWritablePrimary)
            #expect(primary.timeline == 1)
            #expect(primary.lastArchivedWAL != nil, "the backup's WAL is archived")
            try await fx.waitForStreaming(prod1, from: prod0)
            try await fx.waitForStreaming(ha0, from: prod0)
            try await fx.waitForStreaming(ha1, from: ha0)
            let archiveStandby = try await fx.driver.status(of: dr0)
            #expect(archiveStandby.inRecovery && archiveStandby.walReceiver == nil)
            #expect(archiveStandby.systemIdentifier == primary.systemIdentifier)
            #expect(try await fx.driver.recoverySettings(of: dr0) == .archiveOnly)
            #expect(try await fx.driver.recoverySettings(of: ha1) == RecoverySettings(upstream: ha0))
            #expect(try await fx.driver.recoverySettings(of: prod0) == nil)
            #expect(try await !fx.driver.hasData(cold0))
            #expect(try await fx.driver.status(of: cold0) == .stopped)

            // Writes reach the archive standby through the repository after a WAL switch.
            try await fx.sql(prod0, "CREATE TABLE t (id int PRIMARY KEY, note text)")
            try await fx.sql(prod0, "INSERT INTO t VALUES (1, 'first')")
            let segment = try await fx.driver.switchWAL(prod0)
            try await fx.timed("archive standby: row visible after pg_switch_wal") { try await fx.waitForRow(1, on: dr0) }
            #expect(try await fx.driver.isArchived(prod0, segment: segment))
            try await fx.waitForRow(1, on: ha1)
            #expect(try await fx.driver.status(of: prod0).archiverFailedCount == 0)

            // Least privilege: the roles are not superusers; secrets live only in a 0600 passfile of the OS user.
            let roles = try await fx.sql(
                prod0,
                "SELECT rolname, rolsuper::text, rolreplication::text FROM pg_roles WHERE rolname IN ('replicator', 'rewinder') ORDER BY 1")
            #expect(roles == [["replicator", "false", "true"], ["rewinder", "false", "false"]])
            var info = stat()
            #expect(stat(fx.plan.replication.passfile, &info) == 0 && info.st_mode & 0o777 == 0o600)
            #expect(info.st_uid == fx.driver.osUser.uid)
            let conf = try String(contentsOfFile: InstancePaths(prod0).postgresqlConf, encoding: .utf8)
            #expect(!conf.contains("port =") || conf.contains("#port ="))
            for (_, instance) in fx.plan.allInstances {
                let text = (try? String(contentsOfFile: InstancePaths(instance).recoveryFile, encoding: .utf8)) ?? ""
                #expect(!text.lowercased().contains("password"))
            }

            // A second `up` changes nothing: same postmasters.
            let before = try await fx.sandbox.status()
            try await fx.timed("sandbox up again (all running)") { try await fx.sandbox.up() }
            let after = try await fx.sandbox.status()
            #expect(before.map(\.pid) == after.map(\.pid))
            #expect(after.map(\.role) == ["primary", "standby", "standby", "standby", "standby", "stopped"])
            pids = after.compactMap(\.pid)
            for line in after { print("STATUS \(line)") }

            // down stops every postmaster and removes what up created.
            let removed = try await fx.timed("sandbox down") { try await fx.sandbox.down() }
            #expect(pids.allSatisfy { !Postmaster.isAlive($0) })
            #expect(removed.contains(fx.plan.repository.path) && removed.contains(fx.plan.replication.passfile))
            for path in [fx.plan.repository.path, fx.plan.replication.passfile, fx.driver.backrest.configPath, prod0.dataDirectory] {
                #expect(!FileManager.default.fileExists(atPath: path), "\(path) is removed")
            }
            // A second down finds no sandbox and says so, touching nothing.
            await expectFailure(.refused, "sandbox down: no sandbox of plan") { try await fx.sandbox.down() }
        }
        #expect(pids.count == 5)
        #expect(pids.allSatisfy { !SandboxFixture.isRunning($0) })
        #expect(!FileManager.default.fileExists(atPath: fixtureRoot))
    }

    /// A repository that hangs (as an NFS mount can) leaves archive-push blocked; a postmaster killed by
    /// SIGKILL (the OOM killer, a drill) does not take that child with it. `sandbox down` must end it before
    /// it removes the directories the child writes.
    @Test func sandboxDownEndsAnArchivePushThatOutlivedItsPostmaster() async throws {
        try await SandboxFixture.with([SiteLayout(name: "prod", role: .primary)]) { fx in
            let prod = fx.instance("prod-0")
            let postmaster = try #require(Postmaster.livePID(in: prod.dataDirectory))
            // archive.info becomes a FIFO nobody writes: pgBackRest blocks opening it, as on a hung mount.
            let archive = fx.plan.repository.path + "/archive/" + fx.plan.repository.stanza
            for name in ["archive.info", "archive.info.copy"] {
                let path = archive + "/" + name
                try FileManager.default.removeItem(atPath: path)
                #expect(mkfifo(path, 0o600) == 0)
                #expect(chown(path, fx.driver.osUser.uid, fx.driver.osUser.gid) == 0)
            }
            let config = fx.driver.backrest.configPath
            func children() -> [pid_t] {
                ProcessTable.pids { argv in argv.first?.hasSuffix("pgbackrest") == true && argv.contains("--config=" + config) }
            }
            try await fx.insertRows(1...1, on: prod)
            try await fx.sql(prod, "SELECT pg_switch_wal()")
            let hung = try await Poll.until("archive-push blocked on the repository", timeout: 60, interval: 0.05) {
                children().isEmpty ? nil : children()
            }
            kill(postmaster, SIGKILL)
            _ = try await Poll.until("postmaster \(postmaster) to die", timeout: 10, interval: 0.02) {
                SandboxFixture.isRunning(postmaster) ? nil : true
            }

            try await fx.sandbox.down()
            #expect(children().isEmpty, "pgBackRest children of the sandbox still running: \(children())")
            #expect(hung.allSatisfy { ProcessIdentity.of($0) == nil })
            #expect(!FileManager.default.fileExists(atPath: fx.plan.repository.path))
        }
    }

    @Test(.enabled(if: OSUser.isRoot, "only root switches to the OS user"))
    func sandboxUpNamesAPathTheOSUserCannotReach() async throws {
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        let sandbox = Sandbox(plan: plan, stateDirectory: root + "/state")
        chmod(root, 0o700)  // as mkdtemp leaves it: the OS user cannot enter
        do {
            try await sandbox.up()
            Issue.record("sandbox up succeeded in a directory the OS user cannot reach")
        } catch let error as FailoverError {
            #expect(error.code == .invalidInput && error.message.contains("cannot write \(plan.repository.path)"))
        }
        #expect(Postmaster.livePID(in: plan.sites[0].leader.dataDirectory) == nil)
        await SandboxFixture.tearDown(root: root, plan: plan, sandbox: sandbox)
    }

    @Test func streamingThenPlannedSwitchoverAndTheOldPrimaryRejoins() async throws {
        try await SandboxFixture.with([SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .archiveStandby)]) { fx in
            let (prod0, dr0) = (fx.instance("prod-0"), fx.instance("dr-0"))
            let driver = fx.driver
            try await fx.sql(prod0, "CREATE TABLE t (id int PRIMARY KEY, note text)")

            // archive-standby → streaming-standby: rewrite failoverd's file and reload, no restart.
            try await fx.timed("enable streaming: configureRecovery + reload until walreceiver streaming") {
                try await driver.configureRecovery(of: dr0, RecoverySettings(upstream: prod0))
                try await fx.waitForStreaming(dr0, from: prod0)
            }
            #expect(try await driver.recoverySettings(of: dr0) == RecoverySettings(upstream: prod0))
            try await fx.sql(prod0, "INSERT INTO t VALUES (1, 'streamed')")
            try await fx.timed("streaming standby: row visible after commit") { try await fx.waitForRow(1, on: dr0) }

            let segment = try await driver.switchWAL(prod0)
            #expect(WALSegmentName(segment)?.timeline == 1)
            try await fx.timed("switchWAL until isArchived") { try await waitUntilArchived(driver, prod0, segment) }
            #expect(try await driver.repositoryHas(segment, from: prod0))
            #expect(try await !driver.isArchived(prod0, segment: "0000000100000000000000FF"))

            // Planned switchover: checkpoint, clean stop, prove the standby replayed the shutdown checkpoint, promote.
            try await fx.sql(prod0, "INSERT INTO t VALUES (2, 'last write before the switchover')")
            try await fx.timed("checkpoint on the old primary") { try await driver.checkpoint(prod0) }
            try await fx.timed("stop -m fast (old primary)") { try await driver.stop(prod0, mode: .fast) }
            try await driver.stop(prod0, mode: .fast)  // stopping a stopped server is a no-op
            #expect(try await driver.status(of: prod0) == .stopped)
            let shutdown = try #require(try await driver.controlData(of: prod0))
            #expect(shutdown.isCleanPrimaryShutdown && shutdown.timeline == 1)
            let replayed = try await Poll.until("dr-0 to replay the shutdown checkpoint", timeout: 60, interval: 0.01) {
                let status = try await driver.status(of: dr0)
                return status.replayLSN.flatMap { $0 > shutdown.checkpointLSN ? $0 : nil }
            }
            print(
                "EVIDENCE shutdown checkpoint \(shutdown.checkpointLSN), standby replayed \(replayed) (+\(replayed.bytes(after: shutdown.checkpointLSN)) bytes)"
            )
            #expect(try await driver.status(of: dr0).systemIdentifier == shutdown.systemIdentifier)
            try await fx.waitForRow(2, on: dr0)
            // Only a server's own answer counts as promoted: not a standby, not a stopped server.
            #expect(await !PromotionWait.finished(driver.adminConnInfo(dr0)))
            #expect(await !PromotionWait.finished(driver.adminConnInfo(prod0)))
            await expectFailure(.stepFailed, "timed out after 0.2 s waiting for dr-0 to leave recovery after promotion") {
                try await PromotionWait.wait(for: "dr-0", driver.adminConnInfo(dr0), timeout: 0.2)
            }

            try await fx.timed("promote -w until the first write on the new primary") {
                try await driver.promote(dr0)
                _ = try await driver.writeProbe(dr0)
            }
            let promoted = try await driver.status(of: dr0)
            #expect(promoted.isWritablePrimary && promoted.timeline == 2)
            #expect(await PromotionWait.finished(driver.adminConnInfo(dr0)))
            #expect(try await driver.recoverySettings(of: dr0) == nil)
            try await driver.promote(dr0)  // promoting a primary is a no-op
            try await fx.sql(dr0, "INSERT INTO t VALUES (3, 'on timeline 2')")
            // Pitfall 7: switch and archive a segment on the new primary before restarting others.
            let newSegment = try await driver.switchWAL(dr0)
            #expect(WALSegmentName(newSegment)?.timeline == 2)
            try await waitUntilArchived(driver, dr0, newSegment)

            // The old primary, cleanly shut down, rejoins as a streaming standby of the new one.
            try await fx.timed("old primary restarted as standby until streaming") {
                try await driver.configureRecovery(of: prod0, RecoverySettings(upstream: dr0))
                try await driver.start(prod0)
                try await fx.waitForStreaming(prod0, from: dr0)
            }
            try await fx.waitForRow(3, on: prod0)
            #expect(try await driver.status(of: prod0).timeline == 2)
            await #expect(throws: PGError.self) { try await driver.writeProbe(prod0) }
        }
    }

    @Test func rewindOfACrashedDivergedPrimaryAfterItsFencedStartIsRefused() async throws {
        try await SandboxFixture.with([SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]) { fx in
            let (prod0, dr0) = (fx.instance("prod-0"), fx.instance("dr-0"))
            let driver = fx.driver
            try await fx.sql(prod0, "CREATE TABLE t (id int PRIMARY KEY, note text)")
            try await fx.sql(prod0, "INSERT INTO t VALUES (1, 'common history')")
            try await fx.waitForRow(1, on: dr0)

            // Failover while the old primary still runs: the two diverge.
            try await driver.promote(dr0)
            try await fx.sql(dr0, "INSERT INTO t VALUES (2, 'after the failover')")
            try await waitUntilArchived(driver, dr0, try await driver.switchWAL(dr0))
            // On the old primary: diverging writes whose WAL is archived and then recycled (wal_keep_size 0 and
            // two checkpoints), so that pg_rewind must fetch it back from the repository (pitfall 6).
            try await fx.sql(prod0, "ALTER SYSTEM SET wal_keep_size = 0")
            try await fx.sql(prod0, "SELECT pg_reload_conf()")
            try await fx.sql(prod0, "INSERT INTO t VALUES (100, 'diverged, archived')")
            for _ in 0..<2 {
                try await waitUntilArchived(driver, prod0, try await driver.switchWAL(prod0))
                try await driver.checkpoint(prod0)
            }
            try await fx.sql(prod0, "INSERT INTO t VALUES (101, 'diverged, never archived')")
            try await driver.stop(prod0, mode: .immediate)

            // Fenced and without standby.signal: start is refused and nothing runs.
            try await driver.setFenceMarker(prod0)
            do {
                try await driver.start(prod0)
                Issue.record("a fenced former primary started")
            } catch let error as FailoverError {
                #expect(error.code == .refused)
                print("REFUSED \(error.message)")
            }
            #expect(try await driver.status(of: prod0) == .stopped)

            let summary = try await fx.timed("pg_rewind of the crash-stopped diverged primary") {
                try await driver.rewind(prod0, source: dr0)
            }
            print("REWIND \(summary)")
            #expect(summary.contains("servers diverged"))
            #expect(summary.contains("--restore-target-wal"), "the recycled WAL was fetched from the repository")
            #expect(try await driver.recoverySettings(of: prod0) == .archiveOnly)
            let auto = try String(contentsOfFile: InstancePaths(prod0).autoConf, encoding: .utf8)
            #expect(!auto.contains("primary_conninfo") && !auto.contains("restore_command"))

            try await fx.timed("rewound old primary: start until streaming from the new primary") {
                try await driver.configureRecovery(of: prod0, RecoverySettings(upstream: dr0))
                try await driver.start(prod0)
                try await fx.waitForStreaming(prod0, from: dr0)
            }
            try await fx.waitForRow(2, on: prod0)
            let diverged = try await [fx.hasRow(100, on: prod0), fx.hasRow(101, on: prod0)]
            #expect(diverged == [false, false], "the diverged rows are gone")
            #expect(try await driver.status(of: prod0).timeline == 2)
            #expect(try await driver.hasFenceMarker(prod0), "still fenced: it may run as a standby, never as a primary")
        }
    }

    @Test func deltaRestoreRebuildsADivergedOldPrimary() async throws {
        try await SandboxFixture.with([SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]) { fx in
            let (prod0, dr0) = (fx.instance("prod-0"), fx.instance("dr-0"))
            let driver = fx.driver
            try await fx.sql(prod0, "CREATE TABLE t (id int PRIMARY KEY, note text)")
            try await fx.sql(prod0, "INSERT INTO t VALUES (1, 'common history')")
            try await fx.waitForRow(1, on: dr0)
            try await driver.promote(dr0)
            try await fx.sql(dr0, "INSERT INTO t VALUES (2, 'after the failover')")
            try await waitUntilArchived(driver, dr0, try await driver.switchWAL(dr0))
            try await fx.sql(prod0, "INSERT INTO t VALUES (100, 'diverged')")
            try await driver.stop(prod0, mode: .immediate)
            try await driver.setFenceMarker(prod0)

            try await fx.timed("pgbackrest restore --delta into the old data directory") { try await driver.restore(prod0, delta: true) }
            #expect(try await driver.recoverySettings(of: prod0) == .archiveOnly)
            do {
                try await driver.restore(prod0, delta: false)
                Issue.record("a plain restore overwrote a non-empty data directory")
            } catch let error as FailoverError {
                #expect(error.code == .refused)
            }
            try await fx.timed("delta-restored standby: start until streaming") {
                try await driver.configureRecovery(of: prod0, RecoverySettings(upstream: dr0))
                try await driver.start(prod0)
                try await fx.waitForStreaming(prod0, from: dr0)
            }
            try await fx.waitForRow(2, on: prod0)
            #expect(try await !fx.hasRow(100, on: prod0), "the diverged row is gone")
            #expect(try await driver.status(of: prod0).timeline == 2)
        }
    }
}

/// Waits until `segment` is archived from `instance`.
private func waitUntilArchived(_ driver: LocalPostgresDriver, _ instance: Instance, _ segment: String) async throws {
    _ = try await Poll.until("\(segment) archived from \(instance.name)", timeout: 60, interval: 0.02) {
        try await driver.isArchived(instance, segment: segment) ? true : nil
    }
}
