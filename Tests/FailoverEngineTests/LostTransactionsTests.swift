import Foundation
import Logging
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// After an unplanned failover, `failoverd lost` lists what the old primary committed that the new one never
/// got, captured before the rewind erases it. Real PostgreSQL 15: prod-0 keeps committing after dr-0 was cut
/// off, dies (SIGKILL), dr-0 is promoted and prod-0 rewound.
@Suite(.serialized) struct LostTransactionsTests {
    static let pair = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]
    static let failoverThenRewind = [Transition(action: .failover, to: "dr"), Transition(action: .rewind, site: "prod", source: "dr")]

    /// The transactions the scenario made on prod-0 after dr-0 stopped receiving, by what they did.
    struct Diverged {
        /// Committed after the fork: must be listed.
        var committed: [String: UInt32] = [:]
        /// Rolled back after the fork: must not be listed.
        var rolledBack: UInt32 = 0
    }

    /// Diverges prod-0 from dr-0 with every kind of lost transaction (insert, update, delete, a savepoint, a
    /// rollback, a table created after the fork, one that wrote before the fork and committed after it), then
    /// kills prod-0 with SIGKILL.
    static func diverge(_ fx: SandboxFixture, beforeTheFork: (SandboxFixture) async throws -> Void = { _ in }) async throws -> Diverged {
        let prod = fx.instance("prod-0")
        let dr = fx.instance("dr-0")
        try await fx.sql(prod, "CREATE TABLE t (id int PRIMARY KEY, v text)")
        try await fx.sql(prod, "CREATE TABLE u (id int PRIMARY KEY, w text)")
        try await fx.sql(prod, "ALTER TABLE u REPLICA IDENTITY FULL")
        try await fx.sql(prod, "INSERT INTO t SELECT g, 'before' FROM generate_series(1, 10) g")
        try await fx.sql(prod, "INSERT INTO u SELECT g, 'before' FROM generate_series(1, 3) g")
        try await fx.waitForRowCount("u", 3, on: dr)
        try await fx.sql(prod, "CHECKPOINT")
        // Opened and written before the fork: dr-0 receives the insert, never the commit.
        let open = try PGConnection.connect(fx.driver.adminConnInfo(prod))
        defer { open.close() }
        try open.query("BEGIN")
        try open.query("INSERT INTO t VALUES (1000, 'written before the fork')")
        let openXid = try xid(open)
        // Its insert record, not only what prod-0 has written out so far (pg_current_wal_lsn()), must reach dr-0.
        let insertLSN = try open.scalar("SELECT pg_current_wal_insert_lsn()::text") ?? ""
        let written = try #require(LSN(insertLSN))
        _ = try await Poll.until("dr-0 to receive \(written)", timeout: 60, interval: 0.02) {
            (try await fx.driver.status(of: dr).receiveLSN ?? .zero) >= written ? true : nil
        }
        try await beforeTheFork(fx)
        // The fork: dr-0 stops receiving (and fetching from the repository).
        try await fx.sql(dr, "ALTER SYSTEM SET restore_command = ''")
        try await fx.cutReceiver(dr)

        var d = Diverged()
        let c = try PGConnection.connect(fx.driver.adminConnInfo(prod))
        defer { c.close() }
        func transaction(_ name: String, _ statements: [String]) throws {
            try c.query("BEGIN")
            for s in statements { try c.query(s) }
            d.committed[name] = try xid(c)
            try c.query("COMMIT")
        }
        try transaction("insert", ["INSERT INTO t VALUES (2001, 'inserted')"])
        try transaction("update", ["UPDATE t SET v = 'updated' WHERE id = 1", "UPDATE u SET w = 'updated' WHERE id = 1"])
        try transaction("delete", ["DELETE FROM t WHERE id = 2"])
        try c.query("BEGIN")
        try c.query("INSERT INTO t VALUES (2002, 'savepoint: kept')")
        try c.query("SAVEPOINT s")
        try c.query("INSERT INTO t VALUES (2003, 'savepoint: rolled back')")
        try c.query("ROLLBACK TO SAVEPOINT s")
        try c.query("INSERT INTO t VALUES (2004, 'savepoint: kept after')")
        d.committed["savepoint"] = try xid(c)
        try c.query("COMMIT")
        try c.query("BEGIN")
        try c.query("INSERT INTO t VALUES (2005, 'rolled back')")
        d.rolledBack = try xid(c)
        try c.query("ROLLBACK")
        try transaction("new table", ["CREATE TABLE n (id int PRIMARY KEY, x text)", "INSERT INTO n VALUES (1, 'new')"])
        try open.query("COMMIT")
        d.committed["began before the fork"] = openXid
        // prod-0 dies: a crash archives nothing more.
        let pid = try #require(Postmaster.livePID(in: InstancePaths(prod).dataDirectory))
        kill(pid, SIGKILL)
        _ = try await Poll.until("prod-0 to die", timeout: 60, interval: 0.02) {
            Postmaster.livePID(in: InstancePaths(prod).dataDirectory) == nil ? true : nil
        }
        return d
    }

    /// The connection's top-level xid (32 bits, as WAL records it).
    static func xid(_ c: PGConnection) throws -> UInt32 {
        let text = try c.scalar("SELECT txid_current()::text") ?? ""
        return UInt32(try #require(UInt64(text)) & 0xFFFF_FFFF)
    }

    /// `failoverd lost --json`, decoded.
    static func lost(_ fx: SandboxFixture, _ extra: [String] = []) async throws -> LostReport {
        let r = try await fx.failoverd(["lost", "--json"] + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return try JSONDecoder().decode(LostReport.self, from: Data(r.stdout.utf8))
    }

    @Test("a forced-loss failover: `failoverd lost` lists exactly the transactions committed after the fork, with their tables")
    func listsTheCommittedOnes() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let d = try await Self.diverge(fx)
            let plan = try fx.planFile("failover-rewind", Self.failoverThenRewind)
            let run = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            // The rewind erased the diverged rows from prod-0; the capture kept the list.
            try await fx.waitForStreaming(fx.instance("prod-0"), from: fx.instance("dr-0"))
            #expect(try await !fx.hasRow(2001, on: fx.instance("prod-0")))

            let report = try await Self.lost(fx)
            let prod = try #require(report.instances.first)
            #expect(report.instances.count == 1 && prod.instance == "prod-0" && prod.diverged)
            let listed = Dictionary(uniqueKeysWithValues: prod.transactions.map { ($0.xid, $0) })
            #expect(Set(listed.keys) == Set(d.committed.values), "listed \(listed.keys.sorted()), committed \(d.committed)")
            #expect(listed[d.rolledBack] == nil)
            func tables(_ name: String) -> [String] {
                (listed[d.committed[name]!]?.relations ?? []).filter { $0.kind == "table" || $0.kind == "unknown" }.map(\.name)
            }
            #expect(tables("insert") == ["public.t"])
            #expect(listed[d.committed["insert"]!]?.relations.first?.operations == ["insert": 1])
            #expect(Set(tables("update")) == ["public.t", "public.u"])
            #expect(listed[d.committed["delete"]!]?.relations.first { $0.name == "public.t" }?.operations == ["delete": 1])
            let savepoint = try #require(listed[d.committed["savepoint"]!])
            // One subtransaction committed with it (the one after ROLLBACK TO); the rolled-back one did not.
            #expect(savepoint.subtransactions.count == 1 && savepoint.subtransactions.allSatisfy { $0 > savepoint.xid })
            // The insert rolled back to the savepoint is not counted.
            #expect(savepoint.relations.first { $0.name == "public.t" }?.operations == ["insert": 2])
            let created = try #require(listed[d.committed["new table"]!])
            #expect(created.ddl)
            #expect(created.relations.contains { $0.createdAfterFork && $0.name.hasPrefix("created after the fork: relfilenode ") })
            let early = try #require(listed[d.committed["began before the fork"]!])
            #expect(early.wroteBeforeFork && tables("began before the fork") == ["public.t"])
            #expect(!listed.values.contains { $0.xid != early.xid && $0.wroteBeforeFork })
            #expect(prod.totals.transactions == d.committed.count)
            #expect(prod.totals.rows == 1 + 2 + 1 + 2 + 1 + 1)
            #expect(prod.rolledBackAfterFork >= 1)
            // Commit order and times: first and last are those of the listed transactions.
            #expect(prod.transactions.map(\.commitLSN) == prod.transactions.map(\.commitLSN).sorted())
            #expect(prod.totals.firstCommit == prod.transactions.first?.commitTime && prod.totals.lastCommit != nil)

            let text = try await fx.failoverd(["lost"])
            #expect(text.status == 0)
            #expect(text.stdout.contains("lost: 6 transactions committed after the fork"), "\(text.stdout)")
            #expect(text.stdout.contains("created after the fork: relfilenode"))
            // The journal and the audit log record the capture.
            let journal = try Journal(stateDirectory: fx.state)
            let last = try #require(try journal.lastRun())
            let capture = try #require(try journal.steps(of: last.id).first { $0.step.kind == .captureDivergence })
            #expect(capture.status == .done && capture.evidence["transactions"] == "6")
            // The failover journaled the fork: dr-0's new timeline and where its history file says it left
            // timeline 1 (what dr-0 had replayed, at most what it had received), the fork the capture used.
            let promotion = try #require(
                try journal.steps(of: last.id).first { $0.step.kind == .promote && $0.step.action == .failover }?
                    .evidence(as: Promotion.self))
            let switchLSN = try #require(promotion.switchLSN, "\(promotion.forkNote ?? "")")
            let replayed = try #require(promotion.replayLSNBeforePromotion)
            let received = try #require(promotion.receiveLSNBeforePromotion)
            #expect(promotion.timeline == 2 && promotion.previousTimeline == 1 && promotion.forkNote == nil)
            #expect(replayed <= switchLSN && switchLSN <= received, "replayed \(replayed), switch \(switchLSN), received \(received)")
            #expect(prod.fork == switchLSN && prod.newTimeline == 2 && capture.evidence["fork"] == switchLSN.description)
            let audited = try AuditLog(journal: journal).query(.init(kind: .lostCapture))
            #expect(audited.count == 1 && audited.first?.details.contains("\"transactions\":\"6\"") == true)
            let verified = try await AuditLog(journal: journal).verify()
            #expect(verified.intact && verified.capturesChecked == 1)
            // `audit verify` covers the capture: a captured file changed afterwards is named.
            let xact = try #require(LostDirectory.sealed(fx.state).first?.directory).appending("/pg_xact/0000")
            let handle = try #require(FileHandle(forWritingAtPath: xact))
            try handle.seek(toOffset: 0)
            try handle.write(contentsOf: Data([0xFF]))
            try handle.close()
            let tampered = try await AuditLog(journal: journal).verify()
            #expect(!tampered.intact && tampered.problems.contains { $0.reason.contains("pg_xact/0000 changed since it was captured") })
            #expect(try await fx.failoverd(["audit", "verify"]).status == 1)
        }
    }

    @Test("with captureLostRows: the row changes of the lost transactions, and none of the others")
    func rowImages() async throws {
        try await SandboxFixture.with(Self.pair, captureLostRows: true) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            // The sandbox created failoverd's slots; the keeper advances them to what dr-0 has flushed.
            let before = try await fx.driver.lostSlots(on: prod, .status)
            #expect(!before.slots.isEmpty && before.slots.allSatisfy { $0.plugin == "test_decoding" })
            let d = try await Self.diverge(fx) { fx in
                let keeper = LostSlotKeeper(plan: fx.plan, driver: fx.driver, logger: Logger(label: "test"))
                let target = try #require(await keeper.advanceOnce())
                let after = try await fx.driver.lostSlots(on: prod, .status)
                #expect(after.slots.allSatisfy { ($0.confirmedFlushLSN ?? .zero) >= target })
                #expect(target > (before.slots.compactMap(\.confirmedFlushLSN).min() ?? .zero))
                let flushed = try #require(try await fx.driver.status(of: dr).receiveLSN)
                #expect(target <= flushed, "the slot must never pass what the standby has")
            }
            let plan = try fx.planFile("failover-rewind", Self.failoverThenRewind)
            let run = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")

            let report = try await Self.lost(fx, ["--rows"])
            let lost = try #require(report.instances.first)
            #expect(lost.rows == "decoded", "\(lost.rows) \(lost.notes)")
            let byXid = Dictionary(uniqueKeysWithValues: lost.transactions.map { ($0.xid, $0.rowChanges ?? []) })
            #expect(Set(byXid.keys) == Set(d.committed.values))
            func changes(_ name: String) -> [String] {
                (byXid[d.committed[name]!] ?? []).map { "\($0.table) \($0.operation) \(RowChange.describe($0.key))" }
            }
            #expect(changes("insert") == ["public.t INSERT id='2001'"])
            #expect(changes("update") == ["public.t UPDATE id='1'", "public.u UPDATE id='1'"])
            #expect(changes("delete") == ["public.t DELETE id='2'"])
            #expect(changes("savepoint") == ["public.t INSERT id='2002'", "public.t INSERT id='2004'"])
            #expect(changes("new table") == ["public.n INSERT id='1'"])
            #expect(changes("began before the fork") == ["public.t INSERT id='1000'"])
            let update = byXid[d.committed["update"]!] ?? []
            #expect(update.first { $0.table == "public.t" }?.newValues.first { $0.name == "v" }?.value == "updated")
            // REPLICA IDENTITY FULL on u: its old values are there too; t's default identity holds only the key.
            #expect(update.first { $0.table == "public.u" }?.oldValues.first { $0.name == "w" }?.value == "before")
            #expect(update.first { $0.table == "public.t" }?.oldValues.isEmpty == true)
            // Nothing of the rollback, of the rolled-back savepoint, or of what committed before the fork.
            let all = byXid.values.flatMap { $0 }
            #expect(all.count == 8)
            for id in ["2003", "2005"] { #expect(!all.contains { $0.newValues.contains { $0.name == "id" && $0.value == id } }) }
            // The old catalog (an isolated copy) names the table created after the fork.
            let created = lost.transactions.first { $0.xid == d.committed["new table"]! }
            #expect(created?.relations.contains { $0.name.hasPrefix("public.n (created after the fork") } == true)
            let text = try await fx.failoverd(["lost", "--rows"])
            #expect(text.stdout.contains("public.u  UPDATE  key id='1'"), "\(text.stdout)")
            // The isolated copy is gone, and the slots followed the primary: recreated on dr-0, dropped from prod-0.
            #expect(!FileManager.default.fileExists(atPath: InstancePaths(prod).stateDirectory + "/lost-copy"))
            #expect(try await !fx.driver.lostSlots(on: dr, .status).slots.isEmpty)
            try await fx.waitForStreaming(prod, from: dr)
            #expect(try await fx.driver.lostSlots(on: prod, .status).slots.isEmpty)
        }
    }

    @Test("kill -9 during the capture, then resume: the capture completes once, and the rewind runs only after it")
    func crashDuringCapture() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let d = try await Self.diverge(fx)
            let path = try fx.planFile("failover-rewind", Self.failoverThenRewind)
            let steps = try Planner(plan: PlanLoader.load(path)).steps().get()
            let capture = try #require(steps.first { $0.kind == .captureDivergence })
            let rewind = try #require(steps.first { $0.kind == .rewind })
            #expect(capture.number < rewind.number && capture.instance == "prod-0")

            let crashed = try await fx.failoverd(["run", path, "--quiet", "--crash-at", "\(capture.number):mid"])
            #expect(crashed.killedBySignal && crashed.status == SIGKILL, "\(crashed.status) \(crashed.stderr)")
            let journal = try Journal(stateDirectory: fx.state)
            let run = try #require(try journal.unfinishedRun())
            let records = try journal.steps(of: run.id)
            #expect(records.first { $0.step.number == capture.number }?.status == .started)
            #expect(records.first { $0.step.number == rewind.number }?.status == .pending)
            // Killed with the WAL copied and nothing sealed; prod-0 is untouched.
            #expect(LostDirectory.sealed(fx.state).isEmpty)
            let partial = try FileManager.default.contentsOfDirectory(atPath: LostDirectory.root(fx.state) + "/" + run.id)
            #expect(partial.contains { $0.hasSuffix(".partial") })
            #expect(try await fx.driver.controlData(of: fx.instance("prod-0"))?.timeline == 1)

            let resumed = try await fx.failoverd(["resume", "--quiet"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(LostDirectory.sealed(fx.state).count == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: LostDirectory.root(fx.state) + "/" + run.id) == ["prod-0"])
            let log = try AuditLog(journal: journal).query(.init(run: run.id))
            #expect(log.filter { $0.kind == "lost-capture" }.count == 1)
            func seq(_ kind: String, step: Int) -> [Int64] {
                log.filter { $0.kind == kind && $0.details.contains("\"step\":\"\(step)\"") }.map(\.seq)
            }
            #expect(seq("step-start", step: capture.number).count == 2)
            #expect(seq("step-end", step: capture.number).count == 1)
            let captured = try #require(seq("step-end", step: capture.number).first)
            #expect(
                seq("step-start", step: rewind.number).allSatisfy { $0 > captured } && seq("step-start", step: rewind.number).count == 1)
            let report = try await Self.lost(fx)
            #expect(Set(report.instances.first?.transactions.map(\.xid) ?? []) == Set(d.committed.values))
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    @Test("a capture over policy.lostCaptureMaxBytes fails without rewinding; --skip-lost-capture rewinds, and the audit log says so")
    func overTheBound() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            _ = try await Self.diverge(fx)
            var plan = fx.plan
            plan.transitions = Self.failoverThenRewind
            plan.policy.lostCaptureMaxBytes = 1 << 20
            let path = fx.root + "/bounded.json"
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))

            let r = try await fx.failoverd(["run", path, "--quiet"])
            #expect(r.status == 3, "\(r.stderr)")
            #expect(r.stderr.contains("policy.lostCaptureMaxBytes (1048576)") && r.stderr.contains("--skip-lost-capture"))
            let journal = try Journal(stateDirectory: fx.state)
            let run = try #require(try journal.unfinishedRun())
            let rewind = try #require(try journal.steps(of: run.id).first { $0.step.kind == .rewind })
            #expect(rewind.status == .pending && rewind.attempts == 0)
            #expect(LostDirectory.sealed(fx.state).isEmpty)
            #expect(try await fx.driver.controlData(of: fx.instance("prod-0"))?.timeline == 1)

            let resumed = try await fx.failoverd(["resume", "--quiet", "--skip-lost-capture"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let capture = try #require(try journal.steps(of: run.id).first { $0.step.kind == .captureDivergence })
            #expect(capture.status == .done && capture.evidence["skipped"]?.contains("--skip-lost-capture") == true)
            #expect(try journal.steps(of: run.id).first { $0.step.kind == .rewind }?.status == .done)
            let overrides = try AuditLog(journal: journal).query(.init(kind: .override)).filter {
                $0.details.contains("skip-lost-capture")
            }
            #expect(overrides.contains { $0.details.contains("\"instance\":\"prod-0\"") })
            #expect(overrides.contains { $0.details.contains("\"scope\":\"this resume\"") })
            try await fx.waitForStreaming(fx.instance("prod-0"), from: fx.instance("dr-0"))
            #expect(try await AuditLog(journal: journal).verify().intact)
        }
    }

    @Test("a plan that asks for row images on wal_level=replica is refused before anything changes")
    func rowImagesNeedLogical() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            var plan = fx.plan
            plan.transitions = [Transition(action: .switchover, to: "dr")]
            plan.policy.captureLostRows = true
            let path = fx.root + "/rows.json"
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))
            let r = try await fx.failoverd(["run", path, "--quiet"])
            #expect(r.status == 3)
            #expect(r.stderr.contains("wal_level=replica") && r.stderr.contains("captureLostRows"), "\(r.stderr)")
            #expect(try await fx.driver.status(of: fx.instance("prod-0")).isWritablePrimary)
        }
    }
    @Test("a drill that loses commits lists them and checks the list against its ledger")
    func drillChecksTheLostList() async throws {
        let root = CLI.tempDirectory("failoverd-lostdrill")
        defer { try? FileManager.default.removeItem(atPath: root) }
        chmod(root, 0o755)
        // plans/failover.json with its own name, ports and paths (shipped plans use fixed ones).
        var plan = try PlanLoader.load(CLI.plan("failover"))
        let ports = try FreePorts.take(2)
        plan.name = "lostdrill-" + String((root as NSString).lastPathComponent.suffix(8))
        // Where the sandbox builds shipped plans, which it creates for the OS user.
        let sandbox = "/tmp/failoverd-sandbox/" + plan.name
        defer { try? FileManager.default.removeItem(atPath: sandbox) }
        plan.repository.path = sandbox + "/repo"
        plan.repository.stanza = "lostdrill"
        plan.replication.passfile = sandbox + "/pgpass"
        for s in plan.sites.indices {
            plan.sites[s].instances[0].port = ports[s]
            plan.sites[s].instances[0].dataDirectory = sandbox + "/" + plan.sites[s].instances[0].name
        }
        let path = root + "/plan.json"
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))
        let r = try await CLI.run([
            "drill", path, "--report", root + "/report", "--state", root + "/state", "--writers", "2", "--faults",
            "cut-receiver@dr,kill-primary@1",
            "--allow-data-loss", "--warmup", "1",
        ])
        #expect(
            FileManager.default.fileExists(atPath: root + "/report/report.json"),
            "\(r.status) \(r.stdout.suffix(1500)) \(r.stderr.suffix(1500))")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/report/report.json"))) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        let lostChecks = checks.filter { ($0["name"] as? String)?.hasPrefix("lost list:") == true }
        #expect(lostChecks.count == 3, "\(checks)")
        for c in lostChecks { #expect(c["passed"] as? Bool == true, "\(c["name"] ?? "?"): \(c["detail"] ?? "")") }
        let workload = try #require(json["workload"] as? [String: Any])
        let lost = try #require(workload["lost"] as? Int)
        #expect(lost > 0, "the drill should have lost commits: \(r.stdout.suffix(800))")
        let list = try #require(json["lost"] as? [String: Any])
        #expect((list["ledgerCommits"] as? Int ?? 0) >= lost)
        #expect((list["transactions"] as? [[String: Any]])?.count == list["count"] as? Int)
        let md = try String(contentsOfFile: root + "/report/report.md", encoding: .utf8)
        #expect(md.contains("## Lost transactions (`failoverd lost`)") && md.contains("committed after the fork"))
    }
    @Test("the old primary's disk is gone: the capture says so and lists what the repository archived of its timeline")
    func diskGoneCapturesFromTheRepository() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...10, on: prod)
            try await fx.waitForRow(10, on: dr)
            try await fx.sql(dr, "ALTER SYSTEM SET restore_command = ''")
            try await fx.cutReceiver(dr)
            var xids = Set<UInt32>()
            for id in 1001...1003 {
                let row = try await fx.sql(
                    prod, "INSERT INTO t VALUES ($1, 'archived, then the disk was lost') RETURNING txid_current()::text", [String(id)])
                xids.insert(UInt32((UInt64(row.first?.first.flatMap { $0 } ?? "") ?? 0) & 0xFFFF_FFFF))
            }
            // The segment holding them reaches the repository; then prod-0's disk is gone.
            let segment = try #require(try await fx.sql(prod, "SELECT pg_walfile_name(pg_switch_wal())").first?.first.flatMap { $0 })
            _ = try await Poll.until("\(segment) archived", timeout: 60, interval: 0.05) {
                try await fx.driver.isArchived(prod, segment: segment) ? true : nil
            }
            let pid = try #require(Postmaster.livePID(in: InstancePaths(prod).dataDirectory))
            kill(pid, SIGKILL)
            _ = try await Poll.until("prod-0 to die", timeout: 60, interval: 0.02) {
                Postmaster.livePID(in: InstancePaths(prod).dataDirectory) == nil ? true : nil
            }
            try FileManager.default.removeItem(atPath: prod.dataDirectory)

            let plan = try fx.planFile(
                "failover-rebuild", [Transition(action: .failover, to: "dr"), Transition(action: .rebuild, site: "prod")])
            let run = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(run.status == 0, "\(run.stderr)")
            let report = try await Self.lost(fx)
            let lost = try #require(report.instances.first)
            #expect(lost.walFrom == ["the repository"], "\(lost.walFrom)")
            #expect(lost.notes.contains { $0.contains("holds no cluster") }, "\(lost.notes)")
            #expect(lost.notes.contains { $0.contains("never archived is not known") })
            #expect(xids.isSubset(of: Set(lost.transactions.map(\.xid))), "listed \(lost.transactions.map(\.xid)), lost \(xids)")
        }
    }
}

extension SandboxFixture {
    /// Waits until table `table` on `instance` has `count` rows.
    func waitForRowCount(_ table: String, _ count: Int, on instance: Instance, timeout: Double = 60) async throws {
        _ = try await Poll.until("\(count) rows in \(table) on \(instance.name)", timeout: timeout, interval: 0.02) {
            (try? await sql(instance, "SELECT count(*) FROM \(table)").first?.first ?? nil) == String(count) ? true : nil
        }
    }
}
