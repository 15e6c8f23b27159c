import Foundation
import GRDB
import Testing

@_spi(Benchmarks) @_spi(JournalDatabase) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// When failoverd cannot see, it refuses: gates that treat the unknown as unsafe, evidence proved again
/// on resume, old primaries that can only come back as standbys, and overwrites of a data directory
/// only once it is proven to be the plan's cluster. On real PostgreSQL.
@Suite(.serialized) struct FailClosedTests {
    static let pair = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]
    static let three = pair + [SiteLayout(name: "east", role: .streamingStandby)]

    /// Runs `body` with `pid` stopped by SIGSTOP, and always continues it afterwards.
    func whileStopped(_ pid: pid_t, _ body: () async throws -> Void) async throws {
        kill(pid, SIGSTOP)
        do {
            try await body()
        } catch {
            kill(pid, SIGCONT)
            throw error
        }
        kill(pid, SIGCONT)
    }

    @Test("a running postmaster that does not answer is unknown, and promote refuses over it")
    func hungInstanceMakesPromoteRefuse() async throws {
        try await SandboxFixture.with(Self.three) { fx in
            let dr = fx.instance("dr-0")
            let east = fx.instance("east-0")
            let pid = try #require(Postmaster.livePID(in: east.dataDirectory))
            // The old primary is down cleanly, so the only instance in doubt is the hung one.
            try await fx.driver.stop(fx.instance("prod-0"), mode: .fast)
            try await whileStopped(pid) {
                let seen = try await fx.driver.status(of: east)
                #expect(seen.running && !seen.reachable)
                #expect(!seen.isProvenNotWritable && !seen.isWritablePrimary)

                // The promote step itself, in process: refused, naming east-0 and what could not be seen.
                let journal = try Journal(stateDirectory: fx.state)
                let step = Step(transition: 1, action: .failover, site: "dr", .promote(target: "dr-0"), summary: "promote dr-0")
                let ctx = StepContext(
                    plan: fx.plan, driver: fx.driver, journal: journal, runID: "r-test", epoch: 0, allowDataLoss: false,
                    logger: .init(label: "test"), evidence: [:], steps: [step], pollInterval: 0.05)
                let error = await #expect(throws: FailoverError.self) { _ = try await StepRunner(ctx: ctx, step: step).act() }
                #expect(error?.code == .refused)
                #expect(error?.message.contains("promote refused: cannot tell whether east-0 (site east) accepts writes") == true)
                #expect(error?.message.contains("running but not answering SQL") == true)
                #expect(try await fx.driver.status(of: dr).inRecovery, "nothing was promoted")

                // A whole run is refused before any step (preflight), naming the instance.
                let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
                let r = try await fx.failoverd(["run", plan, "--quiet"])
                #expect(r.status == 3, "\(r.stderr)")
                #expect(r.stderr.contains("east-0 is running but not answering SQL"))
                #expect(r.stderr.contains("site \"east\""))
            }
            #expect(try await fx.driver.status(of: dr).inRecovery)
        }
    }

    @Test("a resume refuses once the old primary ran after its shutdown checkpoint was journaled")
    func demotionTokenIsProvedAgainOnResume() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let steps = try Planner(plan: PlanLoader.load(plan)).plannedSteps()
            let awaitReplay = try #require(steps.first { $0.kind == .awaitReplay })
            // Killed right before await-replay: the demotion token is journaled, prod-0 is stopped.
            let crashed = try await fx.failoverd(["run", plan, "--quiet", "--crash-at", "\(awaitReplay.number):before"])
            #expect(crashed.killedBySignal)
            // The operator starts prod-0 again, commits, and stops it: its pg_control moves on.
            try await fx.driver.start(prod)
            try await fx.insertRows(6...6, on: prod)
            try await fx.driver.stop(prod, mode: .fast)

            let resumed = try await fx.failoverd(["resume", "--quiet"])
            #expect(resumed.status == 3, "\(resumed.stderr)")
            #expect(resumed.stderr.contains("prod-0 ran after its shutdown checkpoint was journaled"))
            #expect(resumed.stderr.contains("failoverd abandon"))
            #expect(!resumed.stderr.contains("Nothing was changed"), "a step already stopped prod-0")
            #expect(resumed.stderr.contains("Steps that changed servers"))
            #expect(try await fx.driver.status(of: dr).inRecovery, "dr-0 must not be promoted past row 6")
            // Resuming again changes nothing: the proof still fails.
            let again = try await fx.failoverd(["resume", "--quiet"])
            #expect(again.status == 3)
            #expect(try await fx.driver.status(of: dr).inRecovery)
        }
    }

    @Test("after the promotion the old primary starts as a standby even under a bare pg_ctl start")
    func oldPrimaryComesBackOnlyAsAStandby() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let steps = try Planner(plan: PlanLoader.load(plan)).plannedSteps()
            let promote = try #require(steps.first { $0.kind == .promote })
            let configure = try #require(steps.first { $0.kind == .configureRecovery && $0.instance == "prod-0" })
            #expect(configure.number < promote.number, "the old primary's standby settings come before the promotion")
            let crashed = try await fx.failoverd(["run", plan, "--quiet", "--crash-at", "\(promote.number):after"])
            #expect(crashed.killedBySignal)
            #expect(try await fx.primaryTimeline(dr) == 2)

            // `failoverd status` shows how prod-0 would start.
            let status = try await fx.failoverd(["status"])
            #expect(status.stdout.contains("starts as a standby of dr-0"), "\(status.stdout)")

            // A bare pg_ctl start, as an operator would type it: prod-0 comes up in recovery.
            let paths = InstancePaths(prod)
            let options = "-p \(prod.port) -k \(paths.socketDirectory) -h 127.0.0.1"
            _ = try await fx.driver.runner.run(
                fx.driver.bin("pg_ctl"), ["start", "-D", paths.dataDirectory, "-l", paths.logFile, "-w", "-o", options]
            ).checked()
            let seen = try await Poll.until("prod-0 to answer", timeout: 30, interval: 0.05) { () -> InstanceStatus? in
                let s = try await fx.driver.status(of: prod)
                return s.reachable ? s : nil
            }
            #expect(seen.inRecovery, "the old primary must not come back as a primary")
        }
    }

    @Test("rebuild refuses another cluster's data directory and changes nothing in it")
    func rebuildRefusesAnotherClustersDirectory() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let other = fx.root + "/other-cluster"
            try Files.makeDirectory(other, owner: fx.driver.osUser)
            _ = try await fx.driver.runner.run(fx.driver.bin("initdb"), ["-D", other, "--auth=trust", "--no-sync"], timeout: 120).checked()
            let before = try Self.snapshot(other)

            var plan = fx.plan
            plan.transitions = [Transition(action: .rebuild, site: "dr")]
            plan.sites[1].instances[0].dataDirectory = other
            let path = fx.root + "/typo.json"
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))
            let r = try await fx.failoverd(["run", path, "--quiet"])
            #expect(r.status == 3, "\(r.stderr)")
            #expect(r.stderr.contains("delta restore refused"))
            #expect(r.stderr.contains("not the plan's"))
            #expect(try Self.snapshot(other) == before, "the other cluster's files must be untouched")
        }
    }

    @Test("the failover gate compares every candidate by the WAL it received, not only leaders' replay")
    func failoverGateSeesReceivedWALOfEveryCandidate() async throws {
        try await SandboxFixture.with(Self.three) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            let east = fx.instance("east-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            try await fx.waitForRow(5, on: east)
            // dr-0 stops receiving; east-0 keeps receiving but replays nothing more.
            try await fx.cutReceiver(dr)
            try await fx.sql(east, "SELECT pg_wal_replay_pause()")
            try await fx.insertRows(6...20, on: prod)
            let drHeld = try #require(try await fx.driver.status(of: dr).heldLSN)
            _ = try await Poll.until("east-0 to receive past dr-0", timeout: 60, interval: 0.02) {
                let s = try await fx.driver.status(of: east)
                return (s.receiveLSN ?? .zero) > drHeld ? true : nil
            }
            try await fx.driver.stop(prod, mode: .immediate)

            let plan = try fx.planFile("failover", [Transition(action: .failover, to: "dr")])
            let r = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(r.status == 3, "\(r.stderr)")
            #expect(r.stderr.contains("failover refused: east-0 (site east) holds WAL to"))
            #expect(r.stderr.contains("fail over to east instead, or use --allow-data-loss"), "\(r.stderr)")
            #expect(try await fx.driver.status(of: dr).inRecovery)
            #expect(r.stderr.contains("Nothing was changed"))
            try await fx.sql(east, "SELECT pg_wal_replay_resume()")
        }
    }

    @Test("a postmaster.pid naming a live process that is not that postmaster is not trusted")
    func reusedPidIsNotThePostmaster() async throws {
        try await SandboxFixture.with([SiteLayout(name: "prod", role: .primary)]) { fx in
            let prod = fx.instance("prod-0")
            let real = try #require(Postmaster.recorded(in: prod.dataDirectory))
            // A copied data directory whose postmaster.pid names prod-0's live postmaster: the same pid,
            // the same start time, this directory. Before, a live postgres pid was enough.
            let fake = fx.root + "/data/copy"
            try Files.makeDirectory(fake, owner: nil)
            try "\(real.pid)\n\(fake)\n\(Int(real.startTime ?? 0))\n\(prod.port)\n".write(
                toFile: fake + "/postmaster.pid", atomically: true, encoding: .utf8)
            #expect(Postmaster.livePID(in: fake) == nil)
            #expect(Postmaster.livePID(in: prod.dataDirectory) == real.pid)

            // The driver sees the copy stopped and never signals prod-0's postmaster for it.
            var copy = prod
            copy.name = "copy"
            copy.dataDirectory = fake
            #expect(try await !fx.driver.status(of: copy).running)
            try await fx.driver.stop(copy, mode: .immediate)
            #expect(Postmaster.livePID(in: prod.dataDirectory) == real.pid)
            #expect(try await fx.driver.status(of: prod).isWritablePrimary)

            // Its own pid file rewritten (a pid reused after a reboot): the postmaster is still found by
            // its working directory, never taken for stopped.
            let own = prod.dataDirectory + "/postmaster.pid"
            let saved = try String(contentsOfFile: own, encoding: .utf8)
            try "1\n\(prod.dataDirectory)\n1\n".write(toFile: own, atomically: false, encoding: .utf8)
            #expect(Postmaster.livePID(in: prod.dataDirectory) == real.pid)
            try saved.write(toFile: own, atomically: false, encoding: .utf8)
        }
    }

    @Test("a run that another run followed cannot be resumed")
    func refusedRunIsNotResumedAfterALaterRun() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            try await fx.cutReceiver(dr)
            let switchover = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let refused = try await fx.failoverd(["run", switchover, "--quiet"])
            #expect(refused.status == 3)
            #expect(refused.stderr.contains("Nothing was changed"))
            let refusedRun = try #require(try Journal(stateDirectory: fx.state).lastRun())
            #expect(refusedRun.outcome == .refused)

            let archive = try fx.planFile("archive", [Transition(action: .disableStreaming, site: "dr")])
            let later = try await fx.failoverd(["run", archive, "--quiet"])
            #expect(later.status == 0, "\(later.stderr)")
            let laterRun = try #require(try Journal(stateDirectory: fx.state).lastRun())

            let resumed = try await fx.failoverd(["resume", refusedRun.id, "--quiet"])
            #expect(resumed.status == 3, "\(resumed.stderr)")
            #expect(resumed.stderr.contains("run \(laterRun.id)"))
            #expect(try await fx.driver.status(of: dr).inRecovery)
        }
    }

    /// Every file under `root`: path, size, mode, owner and modification time.
    static func snapshot(_ root: String) throws -> [String: String] {
        var result: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let relative = enumerator?.nextObject() as? String {
            var st = stat()
            guard lstat(root + "/" + relative, &st) == 0 else { continue }
            result[relative] = "\(st.st_size) \(st.st_mode) \(st.st_uid) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        }
        return result
    }
}

/// The run lock and the journal under a stale holder: pids are trusted with their start time, and a
/// process that lost the lock writes nothing more.
@Suite struct LockIdentityTests {
    @Test("a live pid with another start time does not hold the lock")
    func reusedPidDoesNotHoldTheLock() throws {
        let state = CLI.tempDirectory("failoverd-lock-identity")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let journal = try Journal(stateDirectory: state)
        let parent = getppid()
        let started = try #require(ProcessIdentity.of(parent)).startTime
        try journal.db.write { db in
            try db.execute(
                sql:
                    "UPDATE run_lock SET run_id = 'r-old', pid = ?, host = ?, acquired_at = ?, renewed_at = ?, lease_seconds = 30, pid_start_time = ?",
                arguments: [parent, ProcessInfo.processInfo.hostName, Journal.now(), Journal.now(), started - 3600])
        }
        let holder = try RunLock(journal: journal).acquire(runID: "r-new")
        #expect(holder.tookOver)
        #expect(holder.epoch == 1)

        // The same pid with its real start time is alive: the lock is held.
        try journal.db.write { db in
            try db.execute(sql: "UPDATE run_lock SET pid = ?, pid_start_time = ?", arguments: [parent, started])
        }
        let error = #expect(throws: FailoverError.self) { _ = try RunLock(journal: journal).acquire(runID: "r-third") }
        #expect(error?.code == .lockHeld)
    }

    @Test("the journal refuses steps, roles, fences and run ends from a stale fencing epoch")
    func staleEpochWritesNothing() throws {
        let state = CLI.tempDirectory("failoverd-epoch")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let plan = try PlanLoader.load(CLI.plan("switchover"))
        let journal = try Journal(stateDirectory: state)
        let holder = try RunLock(journal: journal).acquire(runID: "r-1")
        let steps = try Planner(plan: plan).plannedSteps()
        let record = RunRecord(
            id: "r-1", planName: plan.name, planJSON: "{}", planSHA256: "x", driver: "simulated", isDrill: false, allowDataLoss: false,
            actor: "test", stepCount: steps.count, outcome: .running, error: nil, startedAt: Journal.now(), endedAt: nil)
        try journal.createRun(record, steps: steps, epoch: holder.epoch)
        try journal.recordStep(run: "r-1", step: steps[0], status: .started, epoch: holder.epoch)
        // Another process takes the lock over: the epoch moves on.
        try journal.db.write { db in try db.execute(sql: "UPDATE run_lock SET epoch = epoch + 1") }

        #expect(throws: (any Error).self) { try journal.recordStep(run: "r-1", step: steps[0], status: .done, epoch: holder.epoch) }
        #expect(throws: (any Error).self) { try journal.recordRoles(["dr": .primary], run: "r-1", epoch: holder.epoch) }
        #expect(throws: (any Error).self) {
            try journal.recordFenced(instance: "prod-0", site: "prod", lastKnownLSN: nil, reachable: false, run: "r-1", epoch: holder.epoch)
        }
        let error = #expect(throws: FailoverError.self) { try journal.finishRun("r-1", outcome: .failed, epoch: holder.epoch) }
        #expect(error?.code == .refused)
        #expect(try journal.steps(of: "r-1")[0].status == .started)
        #expect(try journal.recordedRoles()["dr"] == nil)
        #expect(try !journal.isFenced(instance: "prod-0"))
        #expect(try journal.run("r-1")?.outcome == .running)
        expectFailure(.refused, "run r-1 lost the run lock (epoch 0)") { try RunLock(journal: journal).verify(holder) }
    }
}

extension Planner {
    /// The steps, for tests whose plans the state machine accepts.
    func plannedSteps() throws -> [Step] {
        switch steps() {
        case .success(let steps): return steps
        case .failure(let refusal): throw refusal
        }
    }
}
