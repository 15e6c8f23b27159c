@_spi(Benchmarks) import FailoverEngine
import Foundation
import Logging

/// The evacuation of N two-instance clusters (prod primary, dr streaming standby, each under one writer) by
/// fleet runs at several concurrencies, against the single-cluster switchover measured in the same run on
/// the same machine: total time, each member's write unavailability, and where the machine saturates.
struct FleetBenchmark: Sendable {
    /// One fleet run's figures.
    struct Phase: Sendable {
        /// Its concurrency.
        var concurrency: Int
        /// The single-cluster switchovers (plain runs of cluster 0, no fleet) measured just before it, in seconds.
        var singleSeconds: [Double]
        /// Their write unavailability.
        var singleUnavailability: [Double]
        /// The machine during them.
        var singleMachine: MachineLoad
        /// From the fleet's start to its end.
        var totalSeconds: Double
        /// Each member's write unavailability: the longest gap between acknowledged writes from its run's
        /// first step to the first write its new primary acknowledged.
        var unavailability: [String: Double]
        /// Each member's run, in seconds.
        var memberSeconds: [String: Double]
        /// The mean seconds of each step kind over the members.
        var stepSeconds: [String: Double]
        /// The machine during the fleet run.
        var machine: MachineLoad
        /// Members that did not succeed.
        var failures: [String]
    }

    /// What the machine did over an interval, from /proc: CPU busy, the share of time some task waited for
    /// CPU or for I/O (pressure stall information), and the disk's write and flush requests per second.
    struct MachineLoad: Sendable {
        /// CPU busy, 0 to 1, over every core.
        var cpuBusy: Double
        /// Share of the interval some runnable task waited for a CPU (/proc/pressure/cpu "some").
        var cpuPressure: Double?
        /// Share of the interval some task waited for I/O (/proc/pressure/io "some").
        var ioPressure: Double?
        /// Write requests completed per second, every disk.
        var writesPerSecond: Double
        /// Flush requests (fsync reaching the device) completed per second, every disk.
        var flushesPerSecond: Double
        /// CPU seconds of the PostgreSQL OS user's processes seen by sampling /proc every 100 ms, by command
        /// (`postgres`, `pgbackrest`, other): a lower bound (a process that lives less than 100 ms is missed).
        var clusterCPUSeconds: [String: Double] = [:]
    }

    /// The benchmark's results: one phase per concurrency, in the order run.
    struct Result: Sendable {
        /// The fleet runs, each with the single-cluster switchovers measured just before it.
        var phases: [Phase]
    }

    /// How many clusters.
    let clusters: Int
    /// The concurrencies, one fleet run each; the first one's member figures are each member's single-run figures
    /// when it is 1.
    let concurrencies: [Int]
    /// Single-cluster switchovers measured before each fleet run (an even number leaves cluster 0 where it was).
    let singleRounds: Int
    /// Where the clusters' files go (ROOT/bNN/…).
    let root: String
    /// failoverd's state directory for the sandboxes' manifests and the fleets.
    let stateDirectory: String
    /// Progress lines.
    let say: @Sendable (String) -> Void

    /// The benchmark.
    init(
        clusters: Int = 16, concurrencies: [Int] = [1, 4, 8], singleRounds: Int = 2, root: String, stateDirectory: String,
        say: @escaping @Sendable (String) -> Void
    ) {
        self.clusters = clusters
        self.concurrencies = concurrencies
        self.singleRounds = singleRounds
        self.root = root
        self.stateDirectory = stateDirectory
        self.say = say
    }

    /// The clusters' plans on free loopback ports, declared with prod primary.
    func plans() throws -> [Plan] {
        let ports = try FreePorts.take(2 * clusters)
        return try (0..<clusters).map { i in
            let name = String(format: "b%02d", i)
            let dir = root + "/" + name
            func site(_ site: String, _ role: Role, _ port: Int) -> BenchPlan.SiteSpec {
                BenchPlan.SiteSpec(
                    name: site, role: role, driver: .local, host: "127.0.0.1", port: port, dataDirectory: dir + "/" + site + "-0")
            }
            return try BenchPlan.make(
                name: "fleet-bench-" + name, repository: dir + "/repo", stanza: name, passfile: dir + "/pgpass", stepTimeoutSeconds: 120,
                sites: [site("prod", .primary, ports[2 * i]), site("dr", .streamingStandby, ports[2 * i + 1])])
        }
    }

    /// `plan` declared with `primary` as its primary, switching over to the other site.
    static func switching(_ plan: Plan, from primary: String) -> Plan {
        BenchPlan.switching(plan, from: primary, to: primary == "prod" ? "dr" : "prod")
    }

    /// Builds the clusters, measures, and tears them down on every path.
    func run() async throws -> Result {
        try StateDirectory.prepare(stateDirectory)
        let plans = try plans()
        var quiet = Logger(label: "failoverd.bench.sandbox")
        quiet.logLevel = .warning
        let sandboxes = plans.map { Sandbox(plan: $0, stateDirectory: stateDirectory, logger: quiet) }
        do {
            for (i, s) in sandboxes.enumerated() {
                let started = ContinuousClock.now
                if s.exists { try await s.down() }
                try await s.up()
                say(String(format: "cluster %d/%d up in %.1f s", i + 1, clusters, CommandRunner.seconds(since: started)))
            }
            let result = try await measure(plans)
            for s in sandboxes { try await s.down() }
            return result
        } catch {
            for s in sandboxes where s.exists { _ = try? await s.down() }
            throw error
        }
    }

    func measure(_ plans: [Plan]) async throws -> Result {
        let clock = DrillClock()
        var workloads: [Workload] = []
        for plan in plans {
            let driver = try LocalPostgresDriver(plan: plan)
            let w = Workload(
                instances: plan.allInstances.map { ($0.site.name, $0.instance) }, writers: 1, clock: clock, samplers: false,
                writePace: 0.05,
                connInfo: { driver.adminConnInfo($0) })
            try await w.prepare(primary: plan.sites[0].leader)
            w.start()
            workloads.append(w)
        }
        defer { for w in workloads { Task { await w.stop() } } }
        var primary = Array(repeating: "prod", count: plans.count)
        var logger = Logger(label: "failoverd.bench")
        logger.logLevel = .warning

        let osUser = try OSUser.postgresUser(for: plans[0])
        var rounds = 0
        // The baseline, before each fleet run: single-cluster switchovers of cluster 0 by plain runs (there and
        // back), the others idle under their writers, so each fleet run is compared with the machine as it is then.
        func singles() async throws -> (seconds: [Double], gaps: [Double], machine: MachineLoad) {
            var single: [Double] = []
            var gaps: [Double] = []
            var cpu = ProcessCPUSampler(uid: osUser.uid)
            cpu.start()
            let before = MachineSample.now()
            for _ in 0..<singleRounds {
                rounds += 1
                let plan = Self.switching(plans[0], from: primary[0])
                let t0 = clock.now()
                let outcome = try await Executor(options: RunOptions(stateDirectory: stateDirectory + "/single-\(rounds)", logger: logger))
                    .run(plan)
                single.append(outcome.seconds)
                primary[0] = primary[0] == "prod" ? "dr" : "prod"
                gaps.append(try await SwitchoverBenchmark.unavailability(workloads[0], since: t0, on: plan.site(named: primary[0])!.leader))
                say(String(format: "single switchover %d: %.3f s, write unavailability %.3f s", rounds, single.last!, gaps.last!))
            }
            var machine = MachineSample.now().load(since: before)
            machine.clusterCPUSeconds = cpu.stop()
            return (single, gaps, machine)
        }

        var phases: [Phase] = []
        for c in concurrencies {
            let baseline = try await singles()
            let name = "bench-c\(c)-\(phases.count)"
            let dir = root + "/fleets/" + name
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var members: [[String: String]] = []
            var targets: [String: Instance] = [:]
            for (i, plan) in plans.enumerated() {
                let p = Self.switching(plan, from: primary[i])
                let file = dir + "/\(plan.name).json"
                try p.canonicalJSON().write(to: URL(fileURLWithPath: file))
                let member = String(format: "b%02d", i)
                members.append(["name": member, "plan": file])
                targets[member] = p.site(named: p.transitions[0].subject)!.leader
            }
            let fleetFile = dir + "/fleet.json"
            let json: [String: Any] = ["version": 1, "name": name, "concurrency": c, "brake": Fleet.maximumMembers, "members": members]
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: fleetFile))
            let fleet = try FleetLoader.load(fleetFile)
            let starts = Locked([String: Double]())
            var options = FleetOptions(stateDirectory: stateDirectory, logger: logger)
            options.onMemberProgress = { member, p in
                if p.phase == .begin && p.step.number == 1 { starts.withLock { $0[member] = $0[member] ?? clock.now() } }
            }
            var cpu = ProcessCPUSampler(uid: osUser.uid)
            cpu.start()
            let sample = MachineSample.now()
            let outcome = try await FleetRunner.run(fleet, fleetFile: fleetFile, options: options)
            var machine = MachineSample.now().load(since: sample)
            machine.clusterCPUSeconds = cpu.stop()
            var gaps: [String: Double] = [:]
            var seconds: [String: Double] = [:]
            var stepTotals: [String: [Double]] = [:]
            for (i, m) in outcome.members.enumerated() {
                guard m.status == .succeeded, let t0 = starts.current[m.member] else { continue }
                gaps[m.member] = try await SwitchoverBenchmark.unavailability(workloads[i], since: t0, on: targets[m.member]!)
                primary[i] = primary[i] == "prod" ? "dr" : "prod"
                let journal = try Journal(stateDirectory: m.stateDirectory)
                if let run = try journal.lastRun(), let a = Journal.date(run.startedAt), let b = run.endedAt.flatMap(Journal.date) {
                    seconds[m.member] = b.timeIntervalSince(a)
                    for s in try journal.steps(of: run.id) {
                        if let x = s.startedAt.flatMap(Journal.date), let y = s.endedAt.flatMap(Journal.date) {
                            stepTotals[s.step.kind.rawValue, default: []].append(y.timeIntervalSince(x))
                        }
                    }
                }
            }
            let phase = Phase(
                concurrency: c, singleSeconds: baseline.seconds, singleUnavailability: baseline.gaps, singleMachine: baseline.machine,
                totalSeconds: outcome.seconds, unavailability: gaps, memberSeconds: seconds,
                stepSeconds: stepTotals.mapValues { $0.reduce(0, +) / Double($0.count) }, machine: machine,
                failures: outcome.members.filter { $0.status != .succeeded }.map { "\($0.member) \($0.status): \($0.error ?? "")" })
            phases.append(phase)
            say(
                String(
                    format: "fleet of %d, concurrency %d: %.3f s; write unavailability median %.3f s, max %.3f s; CPU busy %.0f%%",
                    plans.count, c, phase.totalSeconds, DrillMath.summary(Array(gaps.values))?.median ?? .nan,
                    gaps.values.max() ?? .nan, machine.cpuBusy * 100))
            for f in phase.failures { say("  member \(f)") }
        }
        return Result(phases: phases)
    }
}

/// Counters of /proc at one moment, to compare with a later one.
struct MachineSample {
    var at: ContinuousClock.Instant
    var cpuBusy: Double
    var cpuTotal: Double
    var cpuPressure: Double?
    var ioPressure: Double?
    var writes: Double
    var flushes: Double

    static func now() -> MachineSample {
        var busy = 0.0
        var total = 0.0
        if let stat = Files.read("/proc/stat"), let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) {
            let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            total = v.reduce(0, +)
            busy = total - (v.count > 4 ? v[3] + v[4] : 0)  // idle and iowait
        }
        func pressure(_ name: String) -> Double? {
            guard let text = Files.read("/proc/pressure/" + name), let some = text.split(separator: "\n").first,
                let field = some.split(separator: " ").first(where: { $0.hasPrefix("total=") })
            else { return nil }
            return Double(field.dropFirst(6))
        }
        var writes = 0.0
        var flushes = 0.0
        // Whole disks only (as /sys/block lists them), not partitions, loop or RAM devices.
        let disks = Set(
            ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []).filter {
                !$0.hasPrefix("loop") && !$0.hasPrefix("ram")
            })
        for line in (Files.read("/proc/diskstats") ?? "").split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 14, disks.contains(String(f[2])) else { continue }
            writes += Double(f[7]) ?? 0
            if f.count >= 20 { flushes += Double(f[18]) ?? 0 }
        }
        return MachineSample(
            at: .now, cpuBusy: busy, cpuTotal: total, cpuPressure: pressure("cpu"), ioPressure: pressure("io"), writes: writes,
            flushes: flushes)
    }

    func load(since earlier: MachineSample) -> FleetBenchmark.MachineLoad {
        let seconds = max(1e-6, Double((at - earlier.at).components.attoseconds) / 1e18 + Double((at - earlier.at).components.seconds))
        func share(_ a: Double?, _ b: Double?) -> Double? { a.flatMap { x in b.map { (x - $0) / 1e6 / seconds } } }
        return FleetBenchmark.MachineLoad(
            cpuBusy: cpuTotal > earlier.cpuTotal ? (cpuBusy - earlier.cpuBusy) / (cpuTotal - earlier.cpuTotal) : 0,
            cpuPressure: share(cpuPressure, earlier.cpuPressure), ioPressure: share(ioPressure, earlier.ioPressure),
            writesPerSecond: (writes - earlier.writes) / seconds, flushesPerSecond: (flushes - earlier.flushes) / seconds)
    }
}

/// CPU time of one user's processes over an interval, by sampling /proc every 100 ms: for each process
/// (pid and start time), the utime + stime it gained while seen. Children's time (cutime) is left out, so
/// that a short pgBackRest seen alive is not counted again in its parent's.
struct ProcessCPUSampler {
    let uid: uid_t
    private let seen = Locked([String: (comm: String, first: Double, last: Double, new: Bool)]())
    private let stopped = Locked(false)
    private let finished = Locked(false)
    private var started = false

    init(uid: uid_t) { self.uid = uid }

    mutating func start() {
        started = true
        let (uid, seen, stopped, finished) = (uid, seen, stopped, finished)
        Thread.detachNewThread {
            var first = true
            while !stopped.current {
                Self.sample(uid: uid, into: seen, first: first)
                first = false
                Thread.sleep(forTimeInterval: 0.1)  // the sampling period, not a wait for a condition
            }
            Self.sample(uid: uid, into: seen, first: false)
            finished.withLock { $0 = true }
        }
    }

    /// Stops sampling; the CPU seconds gained per command: postgres, pgbackrest, other.
    func stop() -> [String: Double] {
        guard started else { return [:] }
        stopped.withLock { $0 = true }
        // The sampler ends within one period; bounded, should /proc be slow.
        for _ in 0..<500 where !finished.current { Thread.sleep(forTimeInterval: 0.01) }
        var out: [String: Double] = [:]
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        for p in seen.current.values {
            let kind = p.comm == "postgres" || p.comm == "pgbackrest" ? p.comm : "other"
            out[kind, default: 0] += (p.new ? p.last : p.last - p.first) / hz
        }
        return out
    }

    private static func sample(uid: uid_t, into seen: Locked<[String: (comm: String, first: Double, last: Double, new: Bool)]>, first: Bool)
    {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), ProcessIdentity.realUID(pid) == uid,
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")"),
                let open = stat.firstIndex(of: "(")
            else { continue }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            // After the command: state(0) … utime(11) stime(12) … starttime(19).
            guard f.count > 19, let utime = Double(f[11]), let stime = Double(f[12]) else { continue }
            let key = "\(pid):\(f[19])"
            let comm = String(stat[stat.index(after: open)..<close])
            seen.withLock { s in
                if let old = s[key] {
                    s[key] = (old.comm, old.first, utime + stime, old.new)
                } else {
                    s[key] = (comm, utime + stime, utime + stime, !first)
                }
            }
        }
    }
}
