@_spi(Benchmarks) import FailoverEngine
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Measures what capturing and listing lost transactions cost, against the raw operations they cannot avoid,
/// in the same run on the same sandbox: a primary writes about `walMegabytes` of WAL its cut-off standby never
/// gets, dies, the standby is promoted, and the old primary fails back by pg_rewind, with the capture (and
/// again without it, --skip-lost-capture).
struct LostCaptureBenchmark: Sendable {
    /// What one round measured.
    struct Round: Sendable {
        /// WAL bytes the capture copied.
        var walBytes: UInt64
        /// Transactions listed.
        var transactions: Int
        /// Seconds of the capture-divergence step.
        var capture: Double
        /// Seconds to copy the old primary's segments from its last checkpoint with cp and read them once with
        /// pg_waldump (the floor).
        var copyAndDump: Double
        /// Bytes that copy copied.
        var copiedBytes: UInt64
        /// Seconds of `failoverd lost` (re-reading the capture).
        var listing: Double
        /// Seconds of pg_waldump alone over the captured WAL.
        var dump: Double
        /// Seconds of the failback (rewind, catch-up, switchover) with the capture.
        var failbackWithCapture: Double
        /// Seconds of the same failback with --skip-lost-capture.
        var failbackWithoutCapture: Double
    }

    /// The sandbox's plan: a primary site `prod` and a streaming-standby site `dr`, one instance each.
    let plan: Plan
    /// Rounds.
    let rounds: Int
    /// About how much WAL the old primary writes after the fork.
    let walMegabytes: Int
    /// Where each round's state directory goes.
    let stateRoot: String
    /// Progress lines.
    let say: @Sendable (String) -> Void

    /// Creates the benchmark.
    init(plan: Plan, rounds: Int, walMegabytes: Int = 100, stateRoot: String, say: @escaping @Sendable (String) -> Void) {
        self.plan = plan
        self.rounds = rounds
        self.walMegabytes = walMegabytes
        self.stateRoot = stateRoot
        self.say = say
    }

    /// A plan of its own (paths under /tmp/failoverd-sandbox/NAME, free ports) from plans/failover.json's shape.
    static func plan(from base: Plan, name: String) throws -> Plan {
        var plan = base
        plan.name = name
        let root = "/tmp/failoverd-sandbox/" + name
        plan.repository.path = root + "/repo"
        plan.repository.stanza = name.replacingOccurrences(of: "-", with: "_")
        plan.replication.passfile = root + "/pgpass"
        plan.policy.lostCaptureMaxBytes = 4 << 30
        // A rewound primary replays what the diverged WAL touched before it accepts connections: minutes under load.
        plan.policy.stepTimeoutSeconds = 600
        plan.transitions = []
        let ports = try FreePorts.take(plan.allInstances.count)
        var next = 0
        for s in plan.sites.indices {
            for i in plan.sites[s].instances.indices {
                plan.sites[s].instances[i].port = ports[next]
                plan.sites[s].instances[i].dataDirectory = root + "/" + plan.sites[s].instances[i].name
                next += 1
            }
        }
        return plan
    }

    /// Runs every round: one failback with the capture and one without, each on a fresh sandbox.
    func run() async throws -> [Round] {
        var out: [Round] = []
        for round in 1...rounds {
            var r = try await once(round: round, capture: true)
            let without = try await once(round: round, capture: false)
            r.failbackWithoutCapture = without.failbackWithoutCapture
            say(
                String(
                    format:
                        "round %d: %d MB, %d transactions; capture %.2f s (cp + pg_waldump %.2f s), listing %.2f s (pg_waldump %.2f s); failback %.2f s with, %.2f s without",
                    round, Int(r.walBytes >> 20), r.transactions, r.capture, r.copyAndDump, r.listing, r.dump, r.failbackWithCapture,
                    r.failbackWithoutCapture))
            out.append(r)
        }
        return out
    }

    func once(round: Int, capture: Bool) async throws -> Round {
        let state = stateRoot + "/round-\(round)-\(capture ? "capture" : "skip")"
        try? FileManager.default.removeItem(atPath: state)
        try StateDirectory.prepare(state)
        defer { try? FileManager.default.removeItem(atPath: state) }
        guard let prodSite = plan.declaredPrimary, let drSite = plan.sites.first(where: { $0.role == .streamingStandby }) else {
            throw FailoverError.invalid("the lost-capture benchmark needs a primary site and a streaming-standby site")
        }
        let prod = prodSite.leader
        let dr = drSite.leader
        let logger = Logger(label: "failoverd.bench") { _ in SwiftLogNoOpLogHandler() }
        return try await Sandbox(plan: plan, stateDirectory: state, logger: logger).withFresh {
            let driver = try LocalPostgresDriver(plan: plan, logger: logger)
            try await diverge(prod: prod, dr: dr, driver: driver)
            var failover = plan
            failover.transitions = [Transition(action: .failover, to: drSite.name)]
            _ = try await Executor(options: RunOptions(stateDirectory: state, logger: logger)).run(failover)
            // The floor: the segments from the fork's to the end, copied with cp and read once by pg_waldump.
            let floor: (seconds: Double, bytes: UInt64) = capture ? try await copyAndDump(prod, driver: driver) : (0, 0)
            var failback = plan
            failback.transitions = [Transition(action: .failback, to: prodSite.name, method: .rewind)]
            for i in failback.sites.indices {
                failback.sites[i].role = failback.sites[i].name == prodSite.name ? .fenced : .primary
            }
            var options = RunOptions(stateDirectory: state, logger: logger)
            options.skipLostCapture = !capture
            let start = ContinuousClock.now
            let outcome = try await Executor(options: options).run(failback)
            let total = CommandRunner.seconds(since: start)
            var r = Round(
                walBytes: 0, transactions: 0, capture: 0, copyAndDump: floor.seconds, copiedBytes: floor.bytes, listing: 0, dump: 0,
                failbackWithCapture: total,
                failbackWithoutCapture: total)
            guard capture else { return r }
            let journal = try Journal(stateDirectory: state)
            let step = try journal.steps(of: outcome.runID).first { $0.step.kind == .captureDivergence }
            if let a = step?.startedAt.flatMap(Journal.date), let b = step?.endedAt.flatMap(Journal.date) {
                r.capture = b.timeIntervalSince(a)
            }
            let listing = ContinuousClock.now
            let report = try await LostReport.load(stateDirectory: state, run: outcome.runID, rows: false)
            r.listing = CommandRunner.seconds(since: listing)
            guard let sealed = LostDirectory.sealed(state).first else { throw FailoverError.failed("bench: no capture was sealed") }
            r.walBytes = sealed.manifest.walBytes
            r.transactions = report.instances.first?.transactions.count ?? 0
            let dump = ContinuousClock.now
            try await pgWaldump(sealed.directory + "/pg_wal", from: sealed.manifest.start ?? .zero, driver: driver)
            r.dump = CommandRunner.seconds(since: dump)
            return r
        }
    }

    /// Cuts dr off (receiver and restore_command), writes about `walMegabytes` of WAL on prod in transactions
    /// of 2,000 rows, and kills prod.
    func diverge(prod: Instance, dr: Instance, driver: LocalPostgresDriver) async throws {
        try await driver.withConnection(prod) { c in
            try c.query("CREATE TABLE IF NOT EXISTS bench_lost (id bigint PRIMARY KEY, payload text)")
        }
        let top = try await driver.status(of: prod).currentLSN ?? .zero
        _ = try await Wait.until(timeout: 60, interval: 0.02) { () -> Bool? in
            (try await driver.status(of: dr).replayLSN ?? .zero) >= top ? true : nil
        }
        try await driver.withConnection(dr) { c in
            try c.query("ALTER SYSTEM SET primary_conninfo = ''")
            try c.query("ALTER SYSTEM SET restore_command = ''")
            try c.query("SELECT pg_reload_conf()")
        }
        _ = try await Wait.until(timeout: 60, interval: 0.02) { () -> Bool? in
            try await driver.status(of: dr).walReceiver == nil ? true : nil
        }
        let target = UInt64(walMegabytes) << 20
        try await driver.withConnection(prod) { c in
            let start = LSN(try c.scalar("SELECT pg_current_wal_lsn()::text") ?? "") ?? .zero
            var next = 0
            while true {
                try c.query(
                    "INSERT INTO bench_lost SELECT g, repeat('x', 200) FROM generate_series($1::bigint, $2::bigint) g",
                    [String(next), String(next + 1999)])
                next += 2000
                let now = LSN(try c.scalar("SELECT pg_current_wal_lsn()::text") ?? "") ?? .zero
                if now.bytes(after: start) >= target { break }
            }
        }
        if let pid = Postmaster.livePID(in: InstancePaths(prod).dataDirectory) { kill(pid, SIGKILL) }
        _ = try await Wait.until(timeout: 60, interval: 0.02) { () -> Bool? in
            Postmaster.livePID(in: InstancePaths(prod).dataDirectory) == nil ? true : nil
        }
    }

    /// Copies prod's segments from its last checkpoint to its end with cp, then reads them once.
    func copyAndDump(_ prod: Instance, driver: LocalPostgresDriver) async throws -> (seconds: Double, bytes: UInt64) {
        guard let control = try await driver.controlData(of: prod), let files = try await driver.dataFiles(of: prod, in: "pg_wal") else {
            return (0, 0)
        }
        let scratch = NSTemporaryDirectory() + "/failoverd-bench-copy-\(getpid())"
        try? FileManager.default.removeItem(atPath: scratch)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let first = WALSegments.name(timeline: control.timeline, segment: control.redoLSN.value / (16 << 20), segmentSize: 16 << 20)
        let end = try await driver.endOfWAL(prod) ?? control.checkpointLSN
        let last = WALSegments.name(timeline: control.timeline, segment: (end.value - 1) / (16 << 20), segmentSize: 16 << 20)
        let names = files.map(\.name).filter { $0.count == 24 && $0 >= first && $0 <= last }.sorted()
        let start = ContinuousClock.now
        try await CommandRunner().run("cp", ["--"] + names.map { InstancePaths(prod).dataDirectory + "/pg_wal/" + $0 } + [scratch])
            .checked()
        try await pgWaldump(scratch, from: control.redoLSN, driver: driver)
        return (CommandRunner.seconds(since: start), UInt64(names.count) << 24)
    }

    /// pg_waldump with the report's resource managers over `directory`, its output discarded.
    func pgWaldump(_ directory: String, from start: LSN, driver: LocalPostgresDriver) async throws {
        let null = open("/dev/null", O_WRONLY)
        defer { close(null) }
        var arguments = ["--path", directory, "--start", start.description]
        for r in WALDump.resourceManagers { arguments += ["--rmgr", r] }
        _ = try await CommandRunner().run(driver.bin("pg_waldump"), arguments, environment: ["TZ": "UTC"], standardOutput: null)
    }
}
