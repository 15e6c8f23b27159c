import Foundation

/// Injects a drill's faults into the sandbox and undoes the reversible ones.
final class FaultInjector: @unchecked Sendable {
    let plan: Plan
    let driver: LocalPostgresDriver
    let workload: Workload
    let clock: DrillClock
    private let stallTask = Locked<Task<Void, Never>?>(nil)
    private let stalled = Locked<[Instance]>([])
    /// The lab, for network faults (plans of ssh sites).
    var lab: Lab?
    /// The drill's faults.
    var faults: [Fault] = []
    /// Sites cut off now, with when they were cut (drill seconds); and whether the control host is cut off.
    let cut = Locked<[String: Double]>([:])
    /// Sites cut off at some point of the run, with the drill second of the cut.
    let everCut = Locked<[String: Double]>([:])
    let controlIsolated = Locked(false)
    /// When the control host was cut off every site (drill seconds), if it was.
    let isolatedAt = Locked<Double?>(nil)
    /// With isolate-coordinator: when the first coordinator's host was cut off etcd and every site (drill
    /// seconds), and where each lab host's sshd log ended then (its path and size).
    let coordinatorIsolatedAt = Locked<Double?>(nil)
    let sshdLogsAtCut = Locked<[(path: String, offset: UInt64)]>([])

    init(plan: Plan, driver: LocalPostgresDriver, workload: Workload, clock: DrillClock) {
        self.plan = plan
        self.driver = driver
        self.workload = workload
        self.clock = clock
    }

    /// Faults that strike before the run: cut a receiver, stall the archive.
    func beforeRun(_ fault: Fault) async throws -> DrillReport.FaultEvent? {
        switch fault {
        case .cutReceiver(let siteName):
            let site = plan.site(named: siteName)!
            for i in site.instances {
                // Outside failoverd, as an operator or an outage would: primary_conninfo emptied in
                // postgresql.auto.conf, which wins over failoverd's own file until failoverd rewrites it.
                try await driver.withConnection(i) { c in
                    try c.query("ALTER SYSTEM SET primary_conninfo = ''")
                    try c.query("SELECT pg_reload_conf()")
                }
            }
            let cut = try await Wait.until(timeout: 20, interval: 0.05) {
                for i in site.instances where try await driver.status(of: i).walReceiver?.status == "streaming" { return nil as Bool? }
                return true
            }
            guard cut == true else { throw FailoverError.failed("drill: the WAL receivers of site \(siteName) did not stop") }
            return .init(
                fault: fault.description, at: clock.now(),
                detail: "primary_conninfo emptied outside failoverd on \(site.instances.map(\.name).joined(separator: ", "))")
        case .archiveStall(let seconds):
            let primary = plan.declaredPrimary!.leader
            try await setArchiveCommand(primary, failing: true)
            stalled.withLock { $0.append(primary) }
            let task = Task { [weak self] in
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))  // the fault's duration, by definition
                await self?.restore()
            }
            stallTask.withLock { $0 = task }
            return .init(fault: fault.description, at: clock.now(), detail: "archive_command fails on \(primary.name) for \(seconds) s")
        case .killPrimary, .crashEngine, .partition, .heal, .isolateControl, .crashCoordinator, .isolateCoordinator:
            return nil
        }
    }

    /// SIGKILLs the postmaster of the instance that accepts writes now (per the split-brain probe).
    func killPrimary(step: Int) -> DrillReport.FaultEvent? {
        let samples = workload.probeSamples.current
        let writable = samples.compactMap { name, list in list.last.flatMap { $0.writable ? (name, $0.at) : nil } }.max { $0.1 < $1.1 }
        guard let name = writable?.0, let instance = plan.allInstances.first(where: { $0.instance.name == name })?.instance,
            let pid = Postmaster.livePID(in: InstancePaths(instance).dataDirectory)
        else { return .init(fault: "kill-primary@\(step)", at: clock.now(), detail: "no primary was running to kill") }
        kill(pid, SIGKILL)
        return .init(
            fault: "kill-primary@\(step)", at: clock.now(), detail: "SIGKILL to postmaster \(pid) of \(name) as step \(step) began")
    }

    /// The network faults due when step `step` begins, applied before the step's check runs (the executor
    /// awaits its progress callback).
    func networkFaults(step: Int) async -> [DrillReport.FaultEvent] {
        guard let lab else { return [] }
        var events: [DrillReport.FaultEvent] = []
        for fault in faults where fault.step == step {
            switch fault {
            case .partition(_, let site):
                let ok = (try? await lab.partition(site: site)) != nil
                cut.withLock { $0[site] = clock.now() }
                everCut.withLock { $0[site] = $0[site] ?? clock.now() }
                events.append(.init(fault: fault.description, at: clock.now(), detail: "links of \(site) cut\(ok ? "" : " (ip failed)")"))
            case .heal(_, let site):
                // The links only (``Lab/heal(site:)`` also flushes neighbour caches; the drill's restore does that).
                let indexes = try? lab.hostIndexes(of: site)
                var ok = indexes != nil
                for index in indexes ?? [] where (try? await lab.root("/usr/sbin/ip", ["link", "set", lab.link(index), "up"])) == nil {
                    ok = false
                }
                cut.withLock { $0[site] = nil }
                events.append(
                    .init(fault: fault.description, at: clock.now(), detail: "links of \(site) restored\(ok ? "" : " (ip failed)")"))
            case .isolateControl:
                let ok = (try? await lab.isolateControl()) != nil
                controlIsolated.withLock { $0 = true }
                isolatedAt.withLock { $0 = $0 ?? clock.now() }
                events.append(
                    .init(fault: fault.description, at: clock.now(), detail: "control host cut off every site\(ok ? "" : " (ip failed)")"))
            case .isolateCoordinator:
                // Where the sshd logs end now: what the servers log from here on is read back after the run.
                // The lab's files are where `lab up` built it (a reused lab's state directory is not the drill's).
                let built = (try? await lab.running())?.stateDirectory ?? lab.stateDirectory
                let logs = Lab(plan: plan, stateDirectory: built).sshdLogs()
                sshdLogsAtCut.withLock { $0 = logs.map { ($0, Lab.fileSize($0)) } }
                let ok = (try? await lab.isolateControl()) != nil
                controlIsolated.withLock { $0 = true }
                coordinatorIsolatedAt.withLock { $0 = $0 ?? clock.now() }
                events.append(
                    .init(
                        fault: fault.description, at: clock.now(),
                        detail:
                            "the first coordinator's host (the control host, \(Lab.controlAddress)) cut off etcd and every site\(ok ? "" : " (ip failed)")"
                    ))
            default:
                continue
            }
        }
        return events
    }

    /// Gives the control host its address again (after an isolate-coordinator takeover, and in ``restore()``);
    /// nil when it was not cut.
    func reconnectControl() async -> DrillReport.FaultEvent? {
        guard let lab,
            controlIsolated.withLock({ v -> Bool in
                defer { v = false }; return v
            })
        else { return nil }
        let ok = (try? await lab.reconnectControl()) != nil
        return .init(fault: "heal", at: clock.now(), detail: "control host reconnected to etcd and every site\(ok ? "" : " (ip failed)")")
    }

    /// Heals what the drill cut and undoes the archive stall (idempotent).
    func restore() async {
        if let lab {
            for site in cut.withLock({ c -> [String] in
                defer { c = [:] }; return Array(c.keys)
            }) { try? await lab.heal(site: site) }
        }
        _ = await reconnectControl()
        stallTask.withLock { $0?.cancel() }
        let list = stalled.withLock { l -> [Instance] in
            defer { l = [] }
            return l
        }
        for i in list { try? await setArchiveCommand(i, failing: false) }
    }

    func setArchiveCommand(_ i: Instance, failing: Bool) async throws {
        try await driver.withConnection(i) { c in
            try c.query(failing ? "ALTER SYSTEM SET archive_command = 'false'" : "ALTER SYSTEM RESET archive_command")
            try c.query("SELECT pg_reload_conf()")
        }
    }
}
