import Foundation

/// The drill's clock: seconds since the drill started.
@_spi(Benchmarks) public struct DrillClock: Sendable {
    let origin = ContinuousClock.now
    /// A clock starting now.
    @_spi(Benchmarks) public init() {}
    /// Seconds since the clock started.
    @_spi(Benchmarks) public func now() -> Double {
        let d = ContinuousClock.now - origin
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// N writers inserting into a ledger table through whichever instance accepts writes, reconnecting as a
/// real client would; a reader per standby measuring when fresh rows become visible; a split-brain probe
/// sampling every instance. Each runs on its own thread so blocking libpq calls never stall the engine.
@_spi(Benchmarks) public final class Workload: @unchecked Sendable {
    /// One sample of a standby: per writer, the highest ledger id visible, and the replication mode.
    struct ReaderSample: Sendable {
        var at: Double
        var maxIDs: [Int: Int64]
        var mode: String
        var inRecovery: Bool
    }

    /// One probe of an instance: did it accept writes (reachable and not in recovery)?
    struct ProbeSample: Sendable {
        var at: Double
        var writable: Bool
    }

    static let table = "failoverd_drill_ledger"

    let instances: [(site: String, instance: Instance)]
    let connInfo: @Sendable (Instance) -> ConnInfo
    let clock: DrillClock
    let writers: Int
    /// Every write the writers attempted, acknowledged or not, with when and where.
    @_spi(Benchmarks) public let ledger = Locked(Ledger())
    let readerSamples = Locked([String: [ReaderSample]]())
    let probeSamples = Locked([String: [ProbeSample]]())
    private let stopped = Locked(false)
    private var threads: [Thread] = []
    private let finished = Locked(0)

    /// Whether the readers and the split-brain probes run (drills); writers alone measure write availability
    /// at a fraction of the load (the fleet benchmark runs sixteen workloads at once).
    let samplers: Bool
    /// Seconds each writer waits between two inserts: 10 ms for drills; the fleet benchmark's sixteen
    /// workloads write every 50 ms, so that the machine measures the switchovers more than the writes.
    let writePace: Double

    /// A workload of `writers` writers over `instances`, timed by `clock`, connecting with `connInfo`.
    @_spi(Benchmarks) public init(
        instances: [(site: String, instance: Instance)], writers: Int, clock: DrillClock, samplers: Bool = true, writePace: Double = 0.01,
        connInfo: @escaping @Sendable (Instance) -> ConnInfo
    ) {
        self.instances = instances
        self.writers = writers
        self.clock = clock
        self.samplers = samplers
        self.writePace = writePace
        self.connInfo = connInfo
    }

    /// Creates the ledger table on the primary.
    @_spi(Benchmarks) public func prepare(primary: Instance) async throws {
        try await PGConnection.with(connInfo(primary)) { c in
            try c.query(
                "CREATE TABLE IF NOT EXISTS \(Self.table) (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
            try c.query("CREATE INDEX IF NOT EXISTS \(Self.table)_writer ON \(Self.table) (writer, id)")
            try c.query("TRUNCATE \(Self.table)")
        }
    }

    /// Starts the writers, one reader per instance and one probe per instance.
    @_spi(Benchmarks) public func start() {
        for w in 0..<writers { spawn("writer-\(w)") { self.writerLoop(w) } }
        for (_, i) in instances where samplers {
            spawn("reader-\(i.name)") { self.readerLoop(i) }
            spawn("probe-\(i.name)") { self.probeLoop(i) }
        }
    }

    /// Stops every thread and waits for them (bounded).
    @_spi(Benchmarks) public func stop() async {
        stopped.withLock { $0 = true }
        let total = threads.count
        _ = try? await Wait.until(timeout: 15, interval: 0.02) { self.finished.current >= total ? true : nil }
    }

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let t = Thread { [finished] in
            body()
            finished.withLock { $0 += 1 }
        }
        t.name = name
        threads.append(t)
        t.start()
    }

    var isStopped: Bool { stopped.current }

    /// Paces a loop: returns when `interval` has passed since `last`, or at once when the workload stops.
    private func pace(_ interval: Double) {
        if !isStopped { Thread.sleep(forTimeInterval: interval) }
    }

    /// The instance that accepts writes now, as libpq's target_session_attrs=read-write would find it.
    private func connectWritable() -> (PGConnection, Int)? {
        for (_, i) in instances {
            var info = connInfo(i)
            info.connectTimeout = 1
            guard let c = try? PGConnection.connect(info) else { continue }
            if (try? c.scalar("SELECT pg_is_in_recovery()")) == "f" { return (c, i.port) }
            c.close()
        }
        return nil
    }

    private func writerLoop(_ w: Int) {
        var connection: (PGConnection, Int)?
        var seq: Int64 = 0
        while !isStopped {
            if connection == nil {
                connection = connectWritable()
                if connection == nil {
                    pace(0.02)
                    continue
                }
            }
            seq += 1
            let id = Int64(w) * 1_000_000_000 + seq
            let sent = clock.now()
            do {
                // txid_current() in the same transaction: the lost-transaction list names commits by xid.
                let rows = try connection!.0.query(
                    "INSERT INTO \(Self.table) (id, writer) VALUES ($1, $2) RETURNING txid_current()", [String(id), String(w)],
                    name: "ledger insert")
                let at = clock.now()
                let xid = (rows.first?.first ?? nil).flatMap { UInt64($0) }.map { UInt32($0 & 0xFFFF_FFFF) }
                ledger.withLock {
                    $0.entries.append(.init(id: id, writer: w, sentAt: sent, at: at, acknowledged: true, port: connection!.1, xid: xid))
                }
            } catch {
                let at = clock.now()
                ledger.withLock {
                    $0.entries.append(.init(id: id, writer: w, sentAt: sent, at: at, acknowledged: false, port: connection?.1))
                }
                connection?.0.close()
                connection = nil
            }
            pace(writePace)
        }
        connection?.0.close()
    }

    private func readerLoop(_ i: Instance) {
        var connection: PGConnection?
        let sql = """
            SELECT pg_is_in_recovery(), coalesce((SELECT status FROM pg_stat_wal_receiver), 'none'),
                   w, (SELECT max(id) FROM \(Self.table) WHERE writer = w)
            FROM generate_series(0, \(writers - 1)) AS w
            """
        while !isStopped {
            if connection == nil {
                var info = connInfo(i)
                info.connectTimeout = 1
                connection = try? PGConnection.connect(info)
                if connection == nil {
                    pace(0.05)
                    continue
                }
            }
            do {
                let rows = try connection!.query(sql, name: "visibility sample")
                let at = clock.now()
                var ids: [Int: Int64] = [:]
                for r in rows { if let w = r[2].flatMap({ Int($0) }), let m = r[3].flatMap({ Int64($0) }) { ids[w] = m } }
                let sample = ReaderSample(
                    at: at, maxIDs: ids, mode: rows.first?[1] == "streaming" ? "streaming" : "archive", inRecovery: rows.first?[0] == "t")
                readerSamples.withLock { $0[i.name, default: []].append(sample) }
            } catch {
                connection?.close()
                connection = nil
            }
            pace(0.01)
        }
        connection?.close()
    }

    private func probeLoop(_ i: Instance) {
        var connection: PGConnection?
        while !isStopped {
            if connection == nil {
                var info = connInfo(i)
                info.connectTimeout = 1
                connection = try? PGConnection.connect(info)
            }
            var writable = false
            if let c = connection {
                if let r = try? c.scalar("SELECT pg_is_in_recovery()") {
                    writable = r == "f"
                } else {
                    c.close()
                    connection = nil
                }
            }
            let at = clock.now()
            probeSamples.withLock { $0[i.name, default: []].append(ProbeSample(at: at, writable: writable)) }
            pace(0.02)
        }
        connection?.close()
    }

    /// Pairs of instances that accepted writes at the same time, with when.
    func splitBrains() -> [(String, String, Double)] {
        let samples = probeSamples.current
        // Writable intervals: runs of consecutive writable samples.
        var intervals: [String: [(Double, Double)]] = [:]
        for (name, list) in samples {
            var runStart: Double?
            var last = 0.0
            for s in list {
                if s.writable {
                    if runStart == nil { runStart = s.at }
                    last = s.at
                } else if let r = runStart {
                    intervals[name, default: []].append((r, last))
                    runStart = nil
                }
            }
            if let r = runStart { intervals[name, default: []].append((r, last)) }
        }
        var found: [(String, String, Double)] = []
        let names = intervals.keys.sorted()
        for (ai, a) in names.enumerated() {
            for b in names[(ai + 1)...] {
                for x in intervals[a]! {
                    for y in intervals[b]! where x.0 <= y.1 && y.0 <= x.1 {
                        found.append((a, b, max(x.0, y.0)))
                    }
                }
            }
        }
        return found
    }

    /// Visibility lag of acknowledged commits on each standby, by replication mode.
    func lags(siteOf: [String: String]) -> [DrillReport.Lag] {
        let acked = ledger.current.acknowledged
        var out: [DrillReport.Lag] = []
        let ports = Dictionary(uniqueKeysWithValues: instances.map { ($0.instance.name, $0.instance.port) })
        for (name, samples) in readerSamples.current.sorted(by: { $0.key < $1.key }) {
            let standby = samples.filter(\.inRecovery)
            guard let first = standby.first else { continue }
            // Only commits made elsewhere while this instance was a standby: the samples on both sides of
            // the commit show it in recovery.
            // The mode is the one the standby was in when the commit was made, so a backlog replayed
            // after streaming starts still counts against the archive mode that caused it.
            func modeWhileStandby(at t: Double) -> String? {
                var lo = 0
                var hi = samples.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if samples[mid].at <= t { lo = mid + 1 } else { hi = mid }
                }
                guard lo > 0 && lo < samples.count && samples[lo - 1].inRecovery && samples[lo].inRecovery else { return nil }
                return samples[lo - 1].mode
            }
            var byMode: [String: [Double]] = [:]
            // Per writer, ids and ack times rise together and a standby's visible maximum only rises:
            // one pass with a pointer into the samples finds, for each commit, the first sample showing it.
            for w in 0..<writers {
                var j = 0
                for e in acked where e.writer == w && e.at >= first.at && e.port != ports[name] {
                    guard let mode = modeWhileStandby(at: e.at) else { continue }
                    while j < standby.count && (standby[j].at < e.sentAt || (standby[j].maxIDs[w] ?? 0) < e.id) { j += 1 }
                    guard j < standby.count else { break }
                    byMode[mode, default: []].append(max(0, standby[j].at - e.at))
                }
            }
            for (mode, values) in byMode.sorted(by: { $0.key < $1.key }) {
                guard let s = DrillMath.summary(values) else { continue }
                out.append(
                    .init(
                        instance: name, site: siteOf[name] ?? "?", mode: mode, samples: values.count, medianSeconds: s.median,
                        p95Seconds: s.p95, maxSeconds: s.max))
            }
        }
        return out
    }
}
