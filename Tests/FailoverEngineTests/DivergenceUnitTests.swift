import Foundation
import Testing

@testable import FailoverEngine

/// The pieces of the lost-transaction report that need no server: pg_waldump's lines, what they mean, the
/// fork from two timeline histories, test_decoding's text, pg_xact and slot state files, and where the
/// planner puts the capture.
struct DivergenceUnitTests {
    /// pg_waldump output of PostgreSQL 15 (measured here): a checkpoint, then after the fork at 0/3006A70 an
    /// insert, an update, a delete, a savepoint transaction, a rollback and a CREATE TABLE, and a transaction
    /// that wrote before the fork and committed after it.
    static let dump = """
        rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/03000028, prev 0/02000100, desc: RUNNING_XACTS nextXid 725 latestCompletedXid 724 oldestRunningXid 725
        rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/03000060, prev 0/03000028, desc: CHECKPOINT_ONLINE redo 0/3000028; tli 1; prev tli 1; fpw true; xid 0:725; oid 24576; multi 1; offset 0; oldest xid 716 in DB 1; oldest multi 1 in DB 1; oldest/newest commit timestamp xid: 0/0; oldest running xid 725; online
        rmgr: Heap        len (rec/tot):     79/   515, tx:        725, lsn: 0/030066F8, prev 0/030047F0, desc: INSERT off 11 flags 0x08, blkref #0: rel 1663/5/16384 blk 0 FPW
        rmgr: Heap        len (rec/tot):     71/    71, tx:        726, lsn: 0/03006A70, prev 0/03006A40, desc: INSERT off 12 flags 0x08, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     46/    46, tx:        726, lsn: 0/03006AF8, prev 0/03006AB8, desc: COMMIT 2026-12-07 14:28:47.454740 UTC
        rmgr: Heap        len (rec/tot):     94/    94, tx:        727, lsn: 0/03006B28, prev 0/03006AF8, desc: HOT_UPDATE off 1 xmax 727 flags 0x14 ; new off 13 xmax 0, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     46/    46, tx:        727, lsn: 0/03006B88, prev 0/03006B28, desc: COMMIT 2026-12-07 14:28:47.524176 UTC
        rmgr: Heap        len (rec/tot):     66/    66, tx:        728, lsn: 0/03006BB8, prev 0/03006B88, desc: DELETE off 2 flags 0x02 KEYS_UPDATED , blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     46/    46, tx:        728, lsn: 0/03006C00, prev 0/03006BB8, desc: COMMIT 2026-12-07 14:28:47.615210 UTC
        rmgr: Heap        len (rec/tot):     61/    61, tx:        729, lsn: 0/03006C30, prev 0/03006C00, desc: INSERT off 14 flags 0x08, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Heap        len (rec/tot):     66/    66, tx:        730, lsn: 0/03006CB0, prev 0/03006C70, desc: INSERT off 15 flags 0x08, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     34/    34, tx:        730, lsn: 0/03006D38, prev 0/03006CF8, desc: ABORT 2026-12-07 14:28:47.682739 UTC
        rmgr: Heap        len (rec/tot):     66/    66, tx:        731, lsn: 0/03006D60, prev 0/03006D38, desc: INSERT off 16 flags 0x08, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     54/    54, tx:        729, lsn: 0/03006DE8, prev 0/03006DA8, desc: COMMIT 2026-12-07 14:28:47.682763 UTC; subxacts: 731
        rmgr: Heap        len (rec/tot):     70/    70, tx:        732, lsn: 0/03006E20, prev 0/03006DE8, desc: INSERT off 17 flags 0x08, blkref #0: rel 1663/5/16384 blk 0
        rmgr: Transaction len (rec/tot):     34/    34, tx:        732, lsn: 0/03006EA8, prev 0/03006E68, desc: ABORT 2026-12-07 14:28:47.751442 UTC
        rmgr: Storage     len (rec/tot):     42/    42, tx:        733, lsn: 0/03006F00, prev 0/03006ED0, desc: CREATE base/5/16391
        rmgr: Heap        len (rec/tot):     54/  5238, tx:        733, lsn: 0/030126F8, prev 0/030126B8, desc: INSERT off 1 flags 0x01, blkref #0: rel 1663/5/1259 blk 1 FPW
        rmgr: Heap        len (rec/tot):     63/    63, tx:        733, lsn: 0/0302F358, prev 0/0302F2D8, desc: INSERT+INIT off 1 flags 0x08, blkref #0: rel 1663/5/16391 blk 0
        rmgr: Transaction len (rec/tot):    417/   417, tx:        733, lsn: 0/0302F438, prev 0/0302F3F8, desc: COMMIT 2026-12-07 14:28:47.850642 UTC; inval msgs: catcache 80 catcache 79 snapshot 2608 relcache 16391
        rmgr: Heap        len (rec/tot):     59/    59, tx:        734, lsn: 0/0302F570, prev 0/0302F438, desc: INSERT off 2 flags 0x08, blkref #0: rel 1663/5/16391 blk 0
        rmgr: Transaction len (rec/tot):     46/    46, tx:        725, lsn: 0/0302F5B0, prev 0/0302F570, desc: COMMIT 2026-12-07 14:28:47.900001 UTC
        pg_waldump: error: error in WAL record at 0/302F5B0: invalid record length at 0/302F5E0: wanted 24, got 0
        """
    static let fork = LSN("0/3006A70")!

    @Test func pgWaldumpLinesAreParsed() throws {
        let records = WALDumpParser.records(Self.dump)
        #expect(records.count == 22)
        let insert = try #require(records.first { $0.lsn == LSN("0/030066F8") })
        #expect(insert.rmgr == "Heap" && insert.xid == 725 && insert.desc == "INSERT off 11 flags 0x08")
        #expect(insert.relations == [RelFileNode(tablespace: 1663, database: 5, relation: 16384)])
        #expect(WALEvent(insert) == .heap(operation: "insert", rows: 1))
        #expect(WALEvent(records[1]) == .checkpoint(redo: LSN("0/3000028")!, nextXid: 725, oldestRunning: 725))
        #expect(WALEvent(records[0]) == .runningXacts(nextXid: 725, oldestRunning: 725, xids: [], overflowed: false))
        let commit = try #require(records.first { $0.lsn == LSN("0/03006DE8") })
        #expect(
            WALEvent(commit)
                == .commit(
                    time: "2026-12-07 14:28:47.682763 UTC", subxacts: [731], droppedFiles: [], invalidatesCatalog: false, preparedXid: nil))
        #expect(
            WALEvent(records.first { $0.rmgr == "Storage" }!) == .storageCreate(RelFileNode(tablespace: 1663, database: 5, relation: 16391))
        )
    }

    @Test func theByteScannerReadsWhatTheParserReads() {
        let scanned = WALDumpScanner.entries(Data(Self.dump.utf8))
        #expect(scanned.count == 22)
        #expect(scanned == WALDumpParser.records(Self.dump).map(WALEntry.init))
        let multi =
            "rmgr: Heap2       len (rec/tot):    750/   750, tx:        733, lsn: 0/03024D68, prev 0/03024D40, desc: MULTI_INSERT 50 tuples flags 0x0A, blkref #0: rel 1663/5/24576 blk 0\n"
        #expect(WALDumpScanner.entries(Data(multi.utf8)).first?.event == .heap(operation: "insert", rows: 50))
        #expect(WALDumpScanner.entries(Data("pg_waldump: error: x\nrmgr: broken\n".utf8)).isEmpty)
    }

    @Test func descriptionsOfTheOtherRecordsTheReportReads() {
        func event(_ rmgr: String, _ desc: String, xid: UInt32 = 9) -> WALEvent {
            WALEvent(WALRecord(rmgr: rmgr, xid: xid, lsn: .zero, desc: desc, relations: []))
        }
        #expect(
            event("Transaction", "COMMIT_PREPARED 728: 2026-12-07 14:32:07.988199 UTC", xid: 0)
                == .commit(
                    time: "2026-12-07 14:32:07.988199 UTC", subxacts: [], droppedFiles: [], invalidatesCatalog: false, preparedXid: 728))
        #expect(
            event("Transaction", "ABORT_PREPARED 729: 2026-12-07 14:32:08.175535 UTC", xid: 0)
                == .abort(
                    time: "2026-12-07 14:32:08.175535 UTC", subxacts: [], preparedXid: 729))
        #expect(
            event("Transaction", "PREPARE gid p1: 2026-12-07 14:28:07.247455 UTC")
                == .prepare(
                    gid: "p1", time: "2026-12-07 14:28:07.247455 UTC", subxacts: []))
        #expect(event("Transaction", "ASSIGNMENT xtop 730: subxacts: 731 732") == .assignment(top: 730, subxacts: [731, 732]))
        #expect(event("Heap2", "MULTI_INSERT 50 tuples flags 0x0A") == .heap(operation: "insert", rows: 50))
        #expect(event("Heap", "TRUNCATE nrelids 1 relids 16391") == .truncate(relationOIDs: [16391]))
        #expect(event("Heap", "LOCK off 3: xid 7: flags 0x00 LOCK_ONLY EXCL_LOCK ") == .heap(operation: "lock", rows: 0))
        #expect(
            event("Standby", "RUNNING_XACTS nextXid 741 latestCompletedXid 739 oldestRunningXid 740; 1 xacts: 740; 1 subxacts: 742", xid: 0)
                == .runningXacts(nextXid: 741, oldestRunning: 740, xids: [740, 742], overflowed: false))
        let ddl = event(
            "Transaction", "COMMIT 2026-12-07 14:28:07.430240 UTC; rels: base/5/16395 base/5/16396; inval msgs: catcache 55 relcache 16391")
        #expect(
            ddl
                == .commit(
                    time: "2026-12-07 14:28:07.430240 UTC", subxacts: [],
                    droppedFiles: [
                        RelFileNode(tablespace: 1663, database: 5, relation: 16395),
                        RelFileNode(tablespace: 1663, database: 5, relation: 16396),
                    ],
                    invalidatesCatalog: true, preparedXid: nil))
    }

    @Test func theAnalysisListsTheCommitsAfterTheForkAndNotTheRollbacks() throws {
        let a = DivergenceAnalysis(records: WALDumpParser.records(Self.dump), fork: Self.fork, start: LSN("0/3000000")!)
        #expect(a.lost.map(\.xid) == [726, 727, 728, 729, 733, 725])
        #expect(a.rolledBack == [730, 732])
        #expect(a.openAtEnd == [734])
        let savepoint = try #require(a.lost.first { $0.xid == 729 })
        #expect(savepoint.subtransactions == [731])
        #expect(savepoint.relations.first?.operations == ["insert": 2])
        let created = try #require(a.lost.first { $0.xid == 733 })
        #expect(created.ddl)
        #expect(created.relations.contains { $0.node?.relation == 16391 && $0.createdAfterFork })
        #expect(created.relations.contains { $0.node?.relation == 1259 && !$0.createdAfterFork })
        let early = try #require(a.lost.first { $0.xid == 725 })
        #expect(early.wroteBeforeFork && early.commitTime == "2026-12-07 14:28:47.900001 UTC")
        #expect(a.lost.filter(\.wroteBeforeFork).map(\.xid) == [725])
        // Covered: the checkpoint's snapshot (next xid 725) precedes every transaction open at the fork.
        let head = WALDumpParser.records(Self.dump).filter { $0.lsn < Self.fork }
        #expect(DivergenceAnalysis.coversOpenTransactions(head, fork: Self.fork, start: LSN("0/3000000")!) == (true, [725]))
        // Without the checkpoint, transaction 725 may have begun before: read further back.
        let late = head.filter { $0.lsn > LSN("0/03000060")! }
        #expect(DivergenceAnalysis.coversOpenTransactions(late, fork: Self.fork, start: LSN("0/3006000")!).covered == false)
    }

    @Test func theForkIsWhereTwoHistoriesPart() throws {
        let old = TimelineHistory(timeline: 1)
        let new = try #require(TimelineHistory(timeline: 2, text: "1\t0/3006A70\tno recovery target specified\n"))
        #expect(new.fork(from: old) == TimelineHistory.Fork(lsn: Self.fork, timeline: 2, otherTimeline: 1))
        #expect(old.fork(from: new)?.lsn == Self.fork)
        #expect(old.fork(from: old) == nil)
        // Two failovers that left timeline 2 at different points.
        let three = try #require(TimelineHistory(timeline: 3, text: "1\t0/3006A70\tx\n2\t0/5000000\ty\n"))
        let four = try #require(TimelineHistory(timeline: 4, text: "1\t0/3006A70\tx\n2\t0/4800000\tz\n"))
        #expect(three.fork(from: four) == TimelineHistory.Fork(lsn: LSN("0/4800000")!, timeline: 2, otherTimeline: 4))
        #expect(three.timeline(ofSegment: 0x48, segmentSize: 1 << 20) == 2 && three.timeline(ofSegment: 0x50, segmentSize: 1 << 20) == 3)
        #expect(WALSegments.name(timeline: 3, segment: 0x103, segmentSize: 16 << 20) == "000000030000000100000003")
        #expect(TimelineHistory(timeline: 2, text: "x y z") == nil)
    }

    @Test func testDecodingChangesAreParsed() throws {
        func change(_ data: String) -> RowChange? {
            RowChange.parse(DecodedChange(database: "postgres", lsn: .zero, xid: 7, data: data), keys: ["public.t": ["id"]])
        }
        let insert = try #require(change("table public.t: INSERT: id[integer]:500 v[text]:'it''s' n[numeric]:null"))
        #expect(insert.operation == "INSERT" && insert.table == "public.t")
        #expect(insert.key.map(\.value) == ["500"] && insert.newValues.map(\.value) == ["500", "it's", nil])
        let update = try #require(
            change("table public.t: UPDATE: old-key: id[integer]:1 v[text]:'x' new-tuple: id[integer]:1 v[text]:'y y' a[integer[]]:'{1,2}'")
        )
        #expect(update.oldValues.map(\.value) == ["1", "x"] && update.newValues.map(\.name) == ["id", "v", "a"])
        #expect(update.newValues.last?.type == "integer[]")
        let delete = try #require(change("table public.t: DELETE: id[integer]:2"))
        #expect(delete.oldValues.map(\.value) == ["2"] && delete.newValues.isEmpty && delete.key.map(\.value) == ["2"])
        let quoted = try #require(change(#"table public."odd: name": INSERT: "a b"[character varying]:'q' t[text]:unchanged-toast-datum"#))
        #expect(
            quoted.table == #"public."odd: name""# && quoted.newValues.first?.name == "a b" && quoted.newValues.last?.unchangedToast == true
        )
        #expect(change("BEGIN 7") == nil && change("COMMIT 7") == nil)
        #expect(delete.line == "public.t  DELETE  key id='2'")
    }

    @Test func pgXactAndSlotStateFilesAreRead() throws {
        let dir = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/pg_xact", withIntermediateDirectories: true)
        var page = [UInt8](repeating: 0, count: 8192)
        page[725 / 4] |= 1 << ((725 % 4) * 2)  // committed
        page[730 / 4] |= 2 << ((730 % 4) * 2)  // aborted
        try Data(page).write(to: URL(fileURLWithPath: dir + "/pg_xact/0000"))
        #expect(CLOG.status(of: 725, in: dir) == "committed")
        #expect(CLOG.status(of: 730, in: dir) == "aborted")
        #expect(CLOG.status(of: 734, in: dir) == "in progress")
        #expect(CLOG.status(of: 2_000_000, in: dir) == nil)
        #expect(CLOG.segmentName(of: 2_000_000) == "0001")

        var state = [UInt8](repeating: 0, count: 184)
        func put(_ v: UInt64, at o: Int, bytes n: Int) { for i in 0..<n { state[o + i] = UInt8((v >> (8 * UInt64(i))) & 0xFF) } }
        put(0x0105_1CA1, at: 0, bytes: 4)
        put(2, at: 8, bytes: 4)
        for (i, c) in "failoverd_lost_5".utf8.enumerated() { state[16 + i] = c }
        put(5, at: 80, bytes: 4)
        put(0x0300_0028, at: 96, bytes: 8)
        put(0x0300_6000, at: 112, bytes: 8)
        try Data(state).write(to: URL(fileURLWithPath: dir + "/state"))
        let slot = try #require(SlotStateFile.read(dir + "/state"))
        #expect(slot.name == "failoverd_lost_5" && slot.database == 5)
        #expect(slot.restartLSN == LSN("0/3000028") && slot.confirmedFlush == LSN("0/3006000"))
    }

    @Test func thePlannerCapturesBeforeEveryRepairOfAFormerPrimaryAndNeverInASwitchover() throws {
        let failback = try Planner(plan: PlanLoader.load(CLI.plan("failback-with-rewind"))).steps().get()
        let capture = try #require(failback.firstIndex { $0.kind == .captureDivergence })
        #expect(failback[capture].operation == .captureDivergence(instance: "prod-0", source: "dr-0"))
        #expect(failback[capture - 1].operation == .stop(instance: "prod-0"))
        #expect(failback[capture + 1].operation == .rewind(instance: "prod-0", source: "dr-0"))
        #expect(failback[capture].unlessFollowing == "dr-0")
        #expect(failback.filter { $0.kind == .captureDivergence }.count == 1)

        let rebuild = try Planner(plan: PlanLoader.load(CLI.plan("failback-with-rebuild"))).steps().get()
        let c = try #require(rebuild.firstIndex { $0.kind == .captureDivergence })
        #expect(rebuild[c + 1].operation == .restore(instance: "prod-0", delta: true))
        #expect(rebuild[c - 1].operation == .stop(instance: "prod-0"))

        for name in ["switchover", "failover", "seed-walkthrough"] {
            #expect(
                try !Planner(plan: PlanLoader.load(CLI.plan(name))).steps().get().contains {
                    $0.kind == .captureDivergence || $0.kind == .lostSlot
                })
        }
        // A failback after a planned switchover repairs nothing diverged: no capture.
        var plan = try PlanLoader.load(CLI.plan("switchover"))
        plan.transitions.append(Transition(action: .failback, to: "prod", method: .rewind))
        #expect(try !Planner(plan: plan).steps().get().contains { $0.kind == .captureDivergence })
        // A managed (Patroni) site is captured before its driver rejoins it.
        let managed = try Planner(plan: PlanLoader.load(CLI.plan("patroni-failback-with-rewind"))).steps().get()
        let m = try #require(managed.firstIndex { $0.kind == .captureDivergence })
        #expect(managed[m + 1].kind == .rejoinSite)
        // With captureLostRows, the slots follow every new primary and leave a repaired one.
        var rows = try PlanLoader.load(CLI.plan("failback-with-rewind"))
        rows.policy.captureLostRows = true
        let slots = try Planner(plan: rows).steps().get().filter { $0.kind == .lostSlot }
        #expect(slots.map(\.operation) == [.lostSlot(primary: "dr-0"), .lostSlot(primary: "prod-0")])
        // The operations round-trip through the journal's JSON.
        for op in [
            StepOperation.captureDivergence(instance: "prod-0", source: "dr-0"), .captureDivergence(instance: "prod-0", source: nil),
            .lostSlot(primary: "dr-0"),
        ] {
            let step = Step(transition: 1, action: .rewind, site: "prod", op, summary: "s")
            #expect(try JSONDecoder().decode(Step.self, from: JSONEncoder().encode(step)) == step)
        }
    }

    @Test func thePolicyFieldsAreValidated() throws {
        let example = try PlanFixtures.documentedExample()
        let good = try PlanFixtures.edited(
            example,
            [(#""archiveTimeoutSeconds": 120"#, #""archiveTimeoutSeconds": 120, "lostCaptureMaxBytes": 1048576, "captureLostRows": true"#)])
        let plan = try #require(PlanValidator.validate(Data(good.utf8)).plan)
        #expect(plan.policy.effectiveLostCaptureMaxBytes == 1 << 20 && plan.policy.captureLostRows == true)
        #expect(try #require(PlanValidator.validate(Data(example.utf8)).plan).policy.effectiveLostCaptureMaxBytes == 1 << 30)
        let bad = try PlanFixtures.edited(
            example,
            [(#""archiveTimeoutSeconds": 120"#, #""archiveTimeoutSeconds": 120, "lostCaptureMaxBytes": -1, "captureLostRows": "yes""#)])
        let problems = PlanValidator.validate(Data(bad.utf8)).errors.map(\.path.description)
        #expect(problems.contains("$.policy.lostCaptureMaxBytes") && problems.contains("$.policy.captureLostRows"))
    }

    @Test("a simulated failback journals the fork and a capture, and `failoverd lost` lists it")
    func simulatedFailback() async throws {
        let state = CLI.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: state) }
        let r = try CLI.run(["run", CLI.plan("failback-with-rewind"), "--simulate", "--quiet", "--state", state])
        #expect(r.status == 0, "\(r.stderr)")
        let journal = try Journal(stateDirectory: state)
        let run = try #require(try journal.lastRun())
        let steps = try journal.steps(of: run.id)
        let promotion = try #require(
            try steps.first { $0.step.kind == .promote && $0.step.action == .failover }?.evidence(as: Promotion.self))
        #expect(promotion.switchLSN != nil && promotion.forkNote == nil)
        let capture = try #require(steps.first { $0.step.kind == .captureDivergence })
        // The simulated fence is a clean stop that hands every WAL record to the standby: nothing diverged.
        #expect(capture.status == .done && capture.evidence["fork"] == promotion.switchLSN?.description)
        #expect(capture.evidence["diverged"] == "false" && capture.evidence["transactions"] == "0")
        let lost = try CLI.run(["lost", "--state", state])
        #expect(lost.status == 0 && lost.stdout.contains("prod-0 (site prod), captured by run \(run.id)"), "\(lost.stdout)")
        #expect(lost.stdout.contains("nothing diverged"))
        #expect(try await AuditLog(journal: journal).verify().capturesChecked == 1)
    }
}
