// failoverd-bench: measures the engine's own costs and prints each beside a baseline measured in the
// same run, as a ratio. Usage: failoverd-bench [journal|plan|audit|coordination|all] [--events N] [--lease S];
// failoverd-bench lost [--rounds N] [--wal-mb 32,128,512]; failoverd-bench lost-switchover [--rounds N];
// failoverd-bench coord-switchover [--rounds N] (brings a lab up: run it under flock /work/.lab.lock)
import Crypto
@_spi(Benchmarks) import FailoverEngine
import FailoverdTestSupport
import Foundation
import GRDB

#if canImport(GRDBSQLite)
    import GRDBSQLite
#elseif canImport(SQLite3)
    import SQLite3
#endif

let args = CommandLine.arguments.dropFirst()
let which = args.first { !$0.hasPrefix("--") } ?? "all"
let events: Int = args.firstIndex(of: "--events").flatMap { Int(args[args.index(after: $0)]) } ?? 1_000_000

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let c = ContinuousClock()
    let d = try c.measure(body)
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// `seconds` for work that awaits.
func awaitedSeconds(_ body: () async throws -> Void) async rethrows -> Double {
    let c = ContinuousClock()
    let d = try await c.measure(body)
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func tempDir() -> String {
    let p = NSTemporaryDirectory() + "failoverd-bench-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

func report(_ name: String, _ value: Double, unit: String, baselineName: String, _ baseline: Double) {
    print(
        String(
            format: "%-44@ %10.3f %@   baseline %-34@ %10.3f %@   ratio %.2fx", name as NSString, value, unit as NSString,
            baselineName as NSString, baseline, unit as NSString, value / baseline))
}

/// Journal cost per step: started + done, each its own committed transaction with an audit event.
func benchJournal() throws {
    let plan = try PlanLoader.load("plans/failback-with-rewind.json")
    let steps = try Planner(plan: plan).steps().get()
    let n = 300
    func measure(synchronous: String) throws -> Double {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal(stateDirectory: dir)
        try journal.setSynchronous(synchronous)
        var many: [Step] = []
        for i in 0..<n { var s = steps[i % steps.count]; s.number = i + 1; many.append(s) }
        let run = RunRecord(
            id: "r-bench", planName: plan.name, planJSON: "{}", planSHA256: "", driver: "simulated", isDrill: false, allowDataLoss: false,
            actor: "bench", stepCount: n, outcome: .running, error: nil, startedAt: Journal.now(), endedAt: nil)
        try journal.createRun(run, steps: many, epoch: 0)
        return try seconds {
            for s in many {
                try journal.recordStep(run: "r-bench", step: s, status: .started, epoch: 0)
                try journal.recordStep(run: "r-bench", step: s, status: .done, epoch: 0, evidence: ["lsn": "0/3000060"])
            }
        } / Double(n) * 1000
    }
    let full = try measure(synchronous: "FULL")
    let off = try measure(synchronous: "OFF")
    report("journal: one step (started+done), sync=FULL", full, unit: "ms", baselineName: "same with synchronous=OFF", off)
}

/// Journal cost per step of a coordinated run: every record written to a 3-member etcd cluster (loopback) in a
/// transaction fenced by the run lock's token before SQLite commits, against the same steps in SQLite alone
/// (synchronous=FULL); and the takeover time after the holder stops keeping its lease alive (what a SIGKILL
/// leaves), against the lease.
func benchCoordination(lease: Int) async throws {
    let cluster = try await LocalEtcdCluster.start(members: 3)
    do {
        let plan = try PlanLoader.load("plans/failback-with-rewind.json")
        let steps = try Planner(plan: plan).steps().get()
        let n = 100
        func measure(coordinated: Bool, prefix: String) async throws -> Double {
            let dir = tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let journal = try Journal(stateDirectory: dir)
            var many: [Step] = []
            for i in 0..<n {
                var s = steps[i % steps.count]
                s.number = i + 1
                many.append(s)
            }
            var epoch: Int64 = 0
            var coordinator: Coordinator?
            if coordinated {
                let c = Coordinator(
                    settings: EtcdCoordination(endpoints: cluster.endpoints, prefix: prefix, leaseSeconds: lease),
                    systemIdentifier: "7300000000000000001")
                try await c.acquire(.thisProcess(run: "r-bench", plan: plan, stateDirectory: dir), wait: false)
                try await journal.coordinate(through: c, run: "r-bench")
                epoch = c.token
                coordinator = c
            }
            let run = RunRecord(
                id: "r-bench", planName: plan.name, planJSON: "{}", planSHA256: "", driver: "simulated", isDrill: false,
                allowDataLoss: false, actor: "bench", stepCount: n, outcome: .running, error: nil, startedAt: Journal.now(), endedAt: nil)
            try journal.createRun(run, steps: many, epoch: epoch)
            let t = try seconds {
                for s in many {
                    try journal.recordStep(run: "r-bench", step: s, status: .started, epoch: epoch)
                    try journal.recordStep(run: "r-bench", step: s, status: .done, epoch: epoch, evidence: ["lsn": "0/3000060"])
                }
            }
            await coordinator?.release()
            return t / Double(n) * 1000
        }
        let local = try await measure(coordinated: false, prefix: "/bench-local")
        let etcd = try await measure(coordinated: true, prefix: "/bench-journal")
        report("journal: one step, coordinated (etcd, 3 members)", etcd, unit: "ms", baselineName: "same in SQLite alone (FULL)", local)
        // The etcd part alone: one fenced transaction per record, a step row's size, two per step.
        let bare = Coordinator(
            settings: EtcdCoordination(endpoints: cluster.endpoints, prefix: "/bench-bare", leaseSeconds: lease),
            systemIdentifier: "7300000000000000001")
        try await bare.acquire(.thisProcess(run: "r-bare", plan: plan, stateDirectory: "/bare"), wait: false)
        let row = String(repeating: "x", count: 600)
        let txn = try seconds { for i in 0..<(2 * n) { try bare.fencedWrite(puts: [("j/steps/r-bare/\(i)", row)], deletes: []) } }
        await bare.release()
        report(
            "  of which etcd: two fenced txns (one per record)", txn / Double(n) * 1000, unit: "ms", baselineName: "the coordinated step",
            etcd)

        var takeovers: [Double] = []
        for round in 0..<3 {
            let settings = EtcdCoordination(endpoints: cluster.endpoints, prefix: "/bench-takeover-\(round)", leaseSeconds: lease)
            let a = Coordinator(settings: settings, systemIdentifier: "7300000000000000001")
            let b = Coordinator(settings: settings, systemIdentifier: "7300000000000000001")
            try await a.acquire(.thisProcess(run: "r-a", plan: plan, stateDirectory: "/a"), wait: false)
            a.abandonLease()
            takeovers.append(
                try await awaitedSeconds { try await b.acquire(.thisProcess(run: "r-b", plan: plan, stateDirectory: "/b"), wait: true) })
            await b.release()
        }
        let median = takeovers.sorted()[takeovers.count / 2]
        report(
            "takeover after keepalives stop (median of 3)", median, unit: "s ", baselineName: "the lease (target ≤ lease + 2 s)",
            Double(lease))
    } catch {
        await cluster.stopAll()
        throw error
    }
    await cluster.stopAll()
}

/// `failoverd plan` on a 1,000-transition plan: validation plus expansion, against parsing the JSON alone.
func benchPlan() throws {
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "plans/switchover.json"))) as! [String: Any]
    json["transitions"] = (0..<1000).map { ["action": "switchover", "to": $0 % 2 == 0 ? "dr" : "prod"] }
    let data = try JSONSerialization.data(withJSONObject: json)
    var steps = 0
    let engine =
        try seconds {
            for _ in 0..<5 {
                let v = PlanValidator.validate(data)
                guard let plan = v.plan else { fatalError("bench plan invalid: \(v.problems)") }
                steps = try Planner(plan: plan).steps().get().count
            }
        } / 5
    let parse = try seconds { for _ in 0..<5 { _ = try JSONSerialization.jsonObject(with: data) } } / 5
    report(
        "plan: validate + expand 1,000 transitions (\(steps) steps)", engine * 1000, unit: "ms",
        baselineName: "JSONSerialization parse only", parse * 1000)
}

/// What reading the rows alone costs: SQLite steps through the query verify runs and touches every column it reads.
func secondsReadingRows(_ raw: DatabaseQueue) throws -> Double {
    var touched = 0
    let read = try raw.read { db in
        let statement = try db.makeStatement(
            sql: "SELECT seq, at, run_id, site, actor, kind, details, prev_hash, hash, os_user, os_uid, host FROM audit_events ORDER BY seq"
        )
        let h = statement.sqliteStatement
        defer { sqlite3_reset(h) }
        return seconds {
            while sqlite3_step(h) == SQLITE_ROW {
                for c in Int32(0)..<12 { touched &+= Int(sqlite3_column_bytes(h, c)) &+ (sqlite3_column_text(h, c) == nil ? 0 : 1) }
            }
        }
    }
    if touched == 42 { print("") }
    return read
}

/// `failoverd audit` with filters over N events, against a full scan counting them; `audit verify` over the
/// same events (signed every 100 events), against a bare SHA-256 over the same bytes in the same run.
func benchAudit(events: Int, keep: String?) async throws {
    let dir = keep ?? tempDir()
    defer { if keep == nil { try? FileManager.default.removeItem(atPath: dir) } }
    let reuse = FileManager.default.fileExists(atPath: dir + "/state/journal.sqlite")
    if !reuse { _ = try AuditKeys.generate(into: dir + "/keys") }
    let publicKeyPath = dir + "/keys/" + AuditKeys.publicKeyFile
    let signer = try AuditSigner(keyPath: dir + "/keys/" + AuditKeys.privateKeyFile)
    let journal = try Journal(stateDirectory: dir + "/state", auditSigner: signer)
    // The benchmark's own connection to the journal's file, for bulk rows and raw reads.
    let raw = try DatabaseQueue(path: journal.path)
    // Runs as failoverd journals them: run-start, started and done for each of 24 steps, run-end (50 events),
    // with their runs and steps rows, so that verify's cross-check has every run to check.
    let insert = try seconds {
        if reuse { return }
        let batch = 10_000
        for b in 0..<(events / batch) {
            try raw.write { db in
                for i in 0..<batch {
                    let k = b * batch + i
                    let run = "r-bench-\(k / 50)"
                    let j = k % 50
                    if j == 0 {
                        try db.execute(
                            sql:
                                "INSERT INTO runs (id, plan_name, plan_json, plan_sha256, driver, actor, step_count, outcome, started_at) VALUES (?, 'bench', '{}', '', 'simulated', 'bench', 24, 'succeeded', ?)",
                            arguments: [run, Journal.now()])
                        for n in 1...24 {
                            try db.execute(
                                sql:
                                    "INSERT INTO steps (run_id, number, transition, action, kind, site, destructive, summary, step_json, status) VALUES (?, ?, 1, 'switchover', 'stop', 'prod', 0, 'stop prod', '{}', 'done')",
                                arguments: [run, n])
                        }
                        try AuditLog.append(
                            db, kind: .runStart, run: run, details: ["plan": "bench", "steps": "24", "epoch": "1"], signer: signer)
                    } else if j == 49 {
                        try AuditLog.append(db, kind: .runEnd, run: run, details: ["outcome": "succeeded", "epoch": "1"], signer: signer)
                    } else {
                        let step = (j + 1) / 2
                        try AuditLog.append(
                            db, kind: j % 2 == 1 ? .stepStart : .stepEnd, run: run, site: k % 3 == 0 ? "prod" : "dr",
                            details: [
                                "step": String(step), "kind": "stop", "summary": "stop prod-db (fast)", "epoch": "1", "instance": "prod-db",
                                "evidence.lsn": j % 2 == 1 ? "" : "0/3000060",
                            ], signer: signer)
                    }
                }
            }
        }
    }
    if !reuse {
        print(
            String(
                format: "audit: appended %d events in %.1f s (%.1f µs each, hash chain and a signed checkpoint every 100 included)", events,
                insert, insert / Double(events) * 1e6))
    }
    let log = AuditLog(journal: journal)
    var found = 0
    let filtered = try seconds { found = try log.query(.init(run: "r-bench-\(events / 100)", site: "prod", kind: .stepEnd)).count }
    let kindOnly = try seconds { found = try log.query(.init(kind: .refusal)).count }
    let since = try seconds { found = try log.query(.init(since: Journal.now())).count }
    let scan = try seconds {
        _ = try raw.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM audit_events WHERE details LIKE '%\"step\":\"7\"%'") }
    }
    report(
        "audit: --run --site --kind over \(events)", filtered * 1000, unit: "ms", baselineName: "full scan (count, LIKE on details)",
        scan * 1000)
    report(
        "audit: --kind (no match) over \(events)", kindOnly * 1000, unit: "ms", baselineName: "full scan (count, LIKE on details)",
        scan * 1000)
    report("audit: --since now over \(events)", since * 1000, unit: "ms", baselineName: "full scan (count, LIKE on details)", scan * 1000)
    _ = found

    // The baseline: the exact bytes verify hashes (prev_hash ‖ canonical event), built beforehand, hashed bare.
    var bytes = [UInt8]()
    var ends = [Int]()
    ends.reserveCapacity(events)
    for e in try log.query() {
        bytes.append(contentsOf: (e.prevHash + e.canonical).utf8)
        ends.append(bytes.count)
    }
    let megabytes = Double(bytes.count) / 1e6
    var sink: UInt8 = 0
    let bare = seconds {
        bytes.withUnsafeBytes { all in
            var start = 0
            for end in ends {
                var h = SHA256()
                h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: all[start..<end]))
                sink &+= h.finalize().withUnsafeBytes { $0[0] }
                start = end
            }
        }
    }
    let stream = seconds {
        var h = SHA256()
        bytes.withUnsafeBytes { h.update(bufferPointer: $0) }
        sink &+= h.finalize().withUnsafeBytes { $0[0] }
    }
    bytes = []
    print(String(format: "audit: the hashed bytes: %.0f MB; one SHA-256 over all of them in one stream: %.3f s", megabytes, stream))
    // What reading the rows alone costs: SQLite steps through the same query and touches every column verify reads.
    let read = try secondsReadingRows(raw)
    report("audit: SQLite reading the rows verify reads", read, unit: "s", baselineName: "bare SHA-256 per event, same bytes", bare)
    var key = Curve25519.Signing.PrivateKey()
    var sigs: [(Data, Data)] = (0..<2000).map { i in
        let m = Data("checkpoint \(i)".utf8); return (m, try! key.signature(for: m))
    }
    let edVerify = seconds { for (m, sig) in sigs { precondition(key.publicKey.isValidSignature(sig, for: m)) } } / Double(sigs.count)
    sigs = []
    key = Curve25519.Signing.PrivateKey()
    print(String(format: "audit: one Ed25519 signature verification: %.1f µs (one core)", edVerify * 1e6))
    let chainOnly = try await awaitedSeconds {
        let v = try await log.verify(.init(crossCheck: false))
        precondition(v.intact, "\(v.problems.prefix(3))")
    }
    var runs = 0
    let plain = try await awaitedSeconds {
        let v = try await log.verify()
        precondition(v.intact, "\(v.problems.prefix(3))")
        runs = v.runsChecked
    }
    let publicKey = try AuditKeys.loadPublicKey(publicKeyPath)
    var checkpoints = 0
    let signed = try await awaitedSeconds {
        let v = try await log.verify(.init(publicKeys: [publicKey], checkpointFile: signer.checkpointPath))
        precondition(v.intact, "\(v.problems.prefix(3))")
        checkpoints = v.checkpointsVerified
    }
    report("audit verify, chain only, over \(events)", chainOnly, unit: "s", baselineName: "bare SHA-256 per event, same bytes", bare)
    report("audit verify + cross-check of \(runs) runs", plain, unit: "s", baselineName: "bare SHA-256 per event, same bytes", bare)
    report(
        "audit verify --public-key (\(checkpoints) checkpoints)", signed, unit: "s", baselineName: "bare SHA-256 per event, same bytes",
        bare)
    if sink == 42 { print("") }
}

/// Switchover write unavailability: failoverd against the raw stop/promote/first-write sequence.
func benchSwitchover(rounds: Int) async throws {
    let plan = try PlanLoader.load("plans/switchover.json")
    let (raw, engine) = try await SwitchoverBenchmark(plan: plan, rounds: rounds) { print("  " + $0) }.run()
    let r = DrillMath.summary(raw)!
    let e = DrillMath.summary(engine)!
    report("switchover: failoverd (median of \(rounds))", e.median, unit: "s", baselineName: "raw CHECKPOINT+stop+promote+write", r.median)
    print(
        String(
            format:
                "  failoverd adds %.0f%% to the raw sequence (target: at most 20%%); raw min %.3f max %.3f, failoverd min %.3f max %.3f",
            (e.median / r.median - 1) * 100, raw.min()!, r.max, engine.min()!, e.max))
}

/// Stop and promotion seen by pg_ctl's own waits (-w) against the driver's (-W, then watched every 5 ms).
func benchPromotionWait(rounds: Int) async throws {
    let r = try await PromotionWaitBenchmark(plan: try PlanLoader.load("plans/switchover.json"), rounds: rounds).run()
    for (name, driver, pgCtl) in [("stop -m fast", r.driverStop, r.pgCtlStop), ("promote", r.driverPromote, r.pgCtlPromote)] {
        report(
            "\(name): local driver (median of \(rounds))", DrillMath.summary(driver)!.median, unit: "s", baselineName: "pg_ctl -w",
            DrillMath.summary(pgCtl)!.median)
    }
}

/// Patroni switchover write unavailability: failoverd against the two PATCH calls by hand, and against
/// failoverd's local-driver switchover, in one run.
func benchPatroniSwitchover(rounds: Int) async throws {
    let (hand, engine) = try await PatroniSwitchoverBenchmark(plan: try PlanLoader.load("plans/patroni-switchover.json"), rounds: rounds) {
        print("  " + $0)
    }.run()
    let (_, local) = try await SwitchoverBenchmark(plan: try PlanLoader.load("plans/switchover.json"), rounds: rounds) { print("  " + $0) }
        .run()
    let h = DrillMath.summary(hand)!
    let e = DrillMath.summary(engine)!
    let l = DrillMath.summary(local)!
    report("patroni switchover: failoverd (median of \(rounds))", e.median, unit: "s", baselineName: "two PATCH /config by hand", h.median)
    report("patroni switchover: failoverd (median of \(rounds))", e.median, unit: "s", baselineName: "failoverd, local driver", l.median)
    print(String(format: "  target: at most 1.2x the hand-made sequence; measured %.2fx", e.median / h.median))
}

/// Median RTO over N drills of switchover and failback-with-rewind.
func benchDrills(count: Int) async throws {
    for name in ["switchover", "failback-with-rewind"] {
        let plan = try PlanLoader.load("plans/\(name).json")
        var rto: [String: [Double]] = [:]
        for i in 1...count {
            let dir = NSTemporaryDirectory() + "failoverd-bench-drill-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let options = DrillOptions(
                reportDirectory: dir, writers: 4, dwellSeconds: 1, executable: "failoverd", planPath: "plans/\(name).json")
            let report = try await Drill(plan: plan, options: options).run()
            guard report.passed else {
                throw FailoverError.failed("drill \(i) of \(name) failed: \(report.checks.filter { !$0.passed }.map(\.name))")
            }
            for t in report.transitions { rto[t.summary, default: []].append(t.rtoSeconds) }
        }
        for (summary, values) in rto.sorted(by: { $0.key < $1.key }) {
            let s = DrillMath.summary(values)!
            print(
                String(
                    format: "drill RTO %-40@ median %.3f s (min %.3f, max %.3f) over %d drills", summary as NSString, s.median,
                    values.min()!, s.max, values.count))
        }
    }
}

/// Switchover write unavailability over SSH in the lab against the local driver on loopback, same run.
/// Plans of its own (paths under /tmp/failoverd-lab-bench*, free ports), so it never meets a shipped sandbox.
func benchSSHSwitchover(rounds: Int) async throws {
    let root = "/tmp/failoverd-lab-bench"
    let (local, ssh) = try SSHSwitchoverBenchmark.plans(root: root)
    let state = root + "-state"
    let (l, s) = try await SSHSwitchoverBenchmark(local: local, ssh: ssh, rounds: rounds, stateDirectory: state) { print("  " + $0) }.run()
    try? FileManager.default.removeItem(atPath: state)
    let lm = DrillMath.summary(l)!
    let sm = DrillMath.summary(s)!
    report(
        "switchover over SSH in the lab (median of \(rounds))", sm.median, unit: "s", baselineName: "local driver on loopback", lm.median)
    print(
        String(
            format: "  ratio %.2fx (target: at most 1.2x); local min %.3f max %.3f, ssh min %.3f max %.3f", sm.median / lm.median, l.min()!,
            lm.max, s.min()!, sm.max))
}

/// Capture and listing of lost transactions per 100 MB of diverged WAL against cp + pg_waldump, and the
/// failback with and without the capture; and a planned switchover, which captures nothing, against its raw sequence.
func benchLost(rounds: Int) async throws {
    // `--wal-mb 32,128,512`: the diverged WAL's size, one series of rounds per size (default 100 MB).
    let sizes = args.firstIndex(of: "--wal-mb").map { args[args.index(after: $0)].split(separator: ",").compactMap { Int($0) } } ?? [100]
    for megabytes in sizes {
        let base = try PlanLoader.load("plans/failover.json")
        let plan = try LostCaptureBenchmark.plan(from: base, name: "bench-lost")
        let state = NSTemporaryDirectory() + "failoverd-bench-lost"
        defer { try? FileManager.default.removeItem(atPath: state) }
        let results = try await LostCaptureBenchmark(plan: plan, rounds: rounds, walMegabytes: megabytes, stateRoot: state) {
            print("  " + $0)
        }.run()
        func per100MB(_ seconds: Double, _ bytes: UInt64) -> Double { bytes == 0 ? 0 : seconds * Double(100 << 20) / Double(bytes) }
        let capture = DrillMath.summary(results.map { per100MB($0.capture, $0.walBytes) })!.median
        let floor = DrillMath.summary(results.map { per100MB($0.copyAndDump, $0.copiedBytes) })!.median
        let listing = DrillMath.summary(results.map { per100MB($0.listing, $0.walBytes) })!.median
        let dump = DrillMath.summary(results.map { per100MB($0.dump, $0.walBytes) })!.median
        let with = DrillMath.summary(results.map(\.failbackWithCapture))!.median
        let without = DrillMath.summary(results.map(\.failbackWithoutCapture))!.median
        let size = "\(megabytes) MB diverged"
        report(
            "lost, \(size): capture per 100 MB (median of \(rounds))", capture, unit: "s", baselineName: "cp + pg_waldump of the same",
            floor)
        report("lost, \(size): listing per 100 MB (median of \(rounds))", listing, unit: "s", baselineName: "pg_waldump alone", dump)
        report(
            "lost, \(size): failback with capture (median of \(rounds))", with, unit: "s", baselineName: "with --skip-lost-capture", without
        )
    }
    try await benchLostSwitchover(rounds: rounds)
}

/// What the lost-transaction machinery costs a planned switchover, in one run: the switchover of a plan with
/// `policy.captureLostRows` (wal_level=logical, a logical slot kept by the run) against the same plan
/// without it, each under the same writers and each against its own raw pg_ctl sequence, sandbox by sandbox.
func benchLostSwitchover(rounds: Int) async throws {
    let switchover = try PlanLoader.load("plans/switchover.json")
    var rows = try LostCaptureBenchmark.plan(from: switchover, name: "bench-lost-switchover-rows")
    rows.policy.captureLostRows = true
    let plain = try LostCaptureBenchmark.plan(from: switchover, name: "bench-lost-switchover")
    for p in [plain, rows] {
        var q = p
        q.transitions = [Transition(action: .switchover, to: "dr")]
        let captures = try Planner(plan: q).steps().get().filter { $0.kind == .captureDivergence }.count
        print(
            "lost: a planned switchover \(p.policy.captureLostRows == true ? "with" : "without") captureLostRows plans \(captures) capture steps"
        )
    }
    // Round by round, one fresh sandbox per variant, alternating, so a change in the machine's load falls
    // on both alike.
    var raw: [[Double]] = [[], []]
    var engine: [[Double]] = [[], []]
    for round in 1...rounds {
        for (k, p) in [plain, rows].enumerated() {
            let state = NSTemporaryDirectory() + "failoverd-bench-\(p.name)"
            defer { try? FileManager.default.removeItem(atPath: state) }
            let (r, e) = try await SwitchoverBenchmark(plan: p, rounds: 1, stateDirectory: state) { _ in }.run()
            raw[k] += r
            engine[k] += e
            print(
                "  round \(round), captureLostRows \(k == 1 ? "on" : "off"): " + String(format: "raw %.3f s, failoverd %.3f s", r[0], e[0]))
        }
    }
    let medians = (0..<2).map { k in (raw: DrillMath.summary(raw[k])!.median, engine: DrillMath.summary(engine[k])!.median) }
    for k in 0..<2 {
        report(
            "switchover, captureLostRows \(k == 1 ? "on" : "off") (median of \(rounds))", medians[k].engine, unit: "s",
            baselineName: "raw pg_ctl sequence", medians[k].raw)
    }
    report(
        "switchover with captureLostRows (median of \(rounds))", medians[1].engine, unit: "s", baselineName: "without captureLostRows",
        medians[0].engine)
    print(
        String(
            format: "  against their own raw sequences: %.2fx with, %.2fx without", medians[1].engine / medians[1].raw,
            medians[0].engine / medians[0].raw))
}

/// The listing's own work over a saved pg_waldump output (`lost-parse FILE`): the byte scan, then the analysis.
func benchLostParse(_ path: String) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    var entries: [WALEntry] = []
    let scan = seconds { entries = WALDumpScanner.entries(data) }
    var lost = 0
    let analysis = seconds { lost = DivergenceAnalysis(entries: entries, fork: entries.first?.lsn ?? .zero, start: .zero).lost.count }
    let read = seconds { _ = FileManager.default.contents(atPath: path) }
    print(
        String(
            format: "lost-parse: %d lines, %d MB: scan %.3f s, analysis %.3f s (%d transactions); reading the file %.3f s", entries.count,
            data.count >> 20, scan, analysis, lost, read))
}

/// Evacuation of N two-instance clusters by fleet runs at several concurrencies, against the single-cluster
/// switchover of the same run. Clusters of its own (paths under /tmp/failoverd-fleet-bench, free ports).
func benchFleet(clusters: Int, concurrencies: [Int]) async throws {
    let root = "/tmp/failoverd-fleet-bench"
    try? FileManager.default.removeItem(atPath: root + "/fleets")
    let state = root + "-state"
    try? FileManager.default.removeItem(atPath: state)
    let r = try await FleetBenchmark(clusters: clusters, concurrencies: concurrencies, root: root, stateDirectory: state) {
        print("  " + $0)
        fflush(nil)
    }.run()
    try? FileManager.default.removeItem(atPath: state)
    try? FileManager.default.removeItem(atPath: root)
    func load(_ m: FleetBenchmark.MachineLoad) -> String {
        String(
            format: "CPU busy %.0f%%, CPU pressure %@, I/O pressure %@, %.0f writes/s, %.0f flushes/s", m.cpuBusy * 100,
            m.cpuPressure.map { String(format: "%.0f%%", $0 * 100) } ?? "n/a",
            m.ioPressure.map { String(format: "%.0f%%", $0 * 100) } ?? "n/a",
            m.writesPerSecond, m.flushesPerSecond)
            + "; CPU seconds of the clusters' processes (sampled): "
            + m.clusterCPUSeconds.sorted { $0.key < $1.key }.map { String(format: "%@ %.1f", $0.key as NSString, $0.value) }.joined(
                separator: ", ")
    }
    let alone = r.phases.first { $0.concurrency == 1 }
    for p in r.phases {
        let single = DrillMath.summary(p.singleSeconds)!.median
        print(
            String(
                format: "single-cluster switchover before it (median of %d plain runs): %.3f s, write unavailability %.3f s",
                p.singleSeconds.count,
                single, DrillMath.summary(p.singleUnavailability)!.median))
        print("  machine during them: " + load(p.singleMachine))
        let bound = Double((clusters + p.concurrency - 1) / p.concurrency) * single
        report(
            "fleet of \(clusters), concurrency \(p.concurrency): total", p.totalSeconds, unit: "s",
            baselineName: "ceil(\(clusters)/\(p.concurrency)) x single switchover", bound)
        print(String(format: "  target: at most 1.3x: %@", p.totalSeconds <= 1.3 * bound ? "met" : "NOT met"))
        let gaps = p.unavailability.values.sorted()
        var line = String(
            format: "  write unavailability per member: median %.3f s, max %.3f s", DrillMath.summary(gaps)?.median ?? .nan,
            gaps.last ?? .nan)
        if let alone, p.concurrency != 1 {
            let ratios = p.unavailability.compactMap { m, g in alone.unavailability[m].map { (m, g / $0) } }
            if let worst = ratios.max(by: { $0.1 < $1.1 }) {
                line += String(
                    format: "; worst against its single run (concurrency 1): %@ %.2fx (target: at most 2x: %@)", worst.0 as NSString,
                    worst.1,
                    ratios.allSatisfy { $0.1 <= 2 } ? "met" : "NOT met")
            }
        }
        print(line)
        print("  machine: " + load(p.machine))
        for f in p.failures { print("  FAILED member \(f)") }
    }
    let kinds = Set(r.phases.flatMap(\.stepSeconds.keys)).sorted()
    print("mean seconds per step kind, by concurrency (" + r.phases.map { "c=\($0.concurrency)" }.joined(separator: ", ") + "):")
    for k in kinds {
        print(
            "  " + k.padding(toLength: 26, withPad: " ", startingAt: 0)
                + r.phases.map { String(format: "%8.3f", $0.stepSeconds[k] ?? .nan) }.joined())
    }
}

let rounds: Int = args.firstIndex(of: "--rounds").flatMap { Int(args[args.index(after: $0)]) } ?? 5
do {
    if which == "journal" || which == "all" { try benchJournal() }
    if which == "plan" || which == "all" { try benchPlan() }
    // --keep DIR keeps the journal (DIR/state) and key (DIR/keys) to measure again without appending anew.
    let keep = args.firstIndex(of: "--keep").map { args[args.index(after: $0)] }
    if which == "audit" || which == "all" { try await benchAudit(events: events, keep: keep) }
    if which == "verify", let keep {
        let log = AuditLog(journal: try Journal(stateDirectory: keep + "/state"))
        for _ in 0..<3 {
            let t = try await awaitedSeconds {
                let v = try await log.verify()
                precondition(v.intact)
            }
            print(String(format: "audit verify: %.3f s", t))
        }
    }
    if which == "coordination" {
        let lease = args.firstIndex(of: "--lease").flatMap { Int(args[args.index(after: $0)]) } ?? 5
        try await benchCoordination(lease: lease)
    }
    if which == "switchover" { try await benchSwitchover(rounds: rounds) }
    if which == "promote" { try await benchPromotionWait(rounds: rounds) }
    if which == "patroni" { try await benchPatroniSwitchover(rounds: rounds) }
    if which == "ssh-switchover" { try await benchSSHSwitchover(rounds: rounds) }
    if which == "coord-switchover" { try await benchCoordinatedSwitchover(rounds: rounds) }
    if which == "lost" { try await benchLost(rounds: rounds) }
    if which == "lost-switchover" { try await benchLostSwitchover(rounds: rounds) }
    if which == "lost-parse", let file = args.dropFirst().first { try benchLostParse(file) }
    if which == "fleet" {
        let clusters = args.firstIndex(of: "--clusters").flatMap { Int(args[args.index(after: $0)]) } ?? 16
        let concurrencies =
            args.firstIndex(of: "--concurrency").map { args[args.index(after: $0)].split(separator: ",").compactMap { Int($0) } } ?? [
                1, 4, 8,
            ]
        try await benchFleet(clusters: clusters, concurrencies: concurrencies)
    }
    if which == "drills" {
        try await benchSwitchover(rounds: 3)
        try await benchDrills(count: rounds)
    }
} catch {
    FileHandle.standardError.write(Data("failoverd-bench: \(error)\n".utf8))
    exit(1)
}
