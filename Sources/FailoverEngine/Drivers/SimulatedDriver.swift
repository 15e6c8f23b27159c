import Foundation

/// Runs any plan against a model of its sites kept in the state directory (`simulation.json`), so a plan
/// can be rehearsed in milliseconds. It never stands in for PostgreSQL in a test of PostgreSQL behaviour.
public struct SimulatedDriver: InstanceDriver {
    let file: String
    let instances: [String: Instance]

    /// A simulated driver for `plan` whose world lives in `stateDirectory`; created from the plan's declared
    /// topology the first time.
    public init(plan: Plan, stateDirectory: String) throws {
        file = (stateDirectory as NSString).appendingPathComponent("simulation.json")
        instances = Dictionary(uniqueKeysWithValues: plan.allInstances.map { ($0.instance.name, $0.instance) })
        if !FileManager.default.fileExists(atPath: file) {
            try Self.save(SimulatedWorld.initial(for: plan), to: file)
        } else {
            // A plan may name instances the world has not seen yet: they start empty.
            var w = try Self.load(file)
            for name in instances.keys where w.nodes[name] == nil { w.nodes[name] = .init() }
            try Self.save(w, to: file)
        }
    }

    static func load(_ file: String) throws -> SimulatedWorld {
        try JSONDecoder().decode(SimulatedWorld.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
    }

    /// Writes atomically (temporary file, fsync, rename), so a SIGKILL leaves the old or the new world.
    static func save(_ w: SimulatedWorld, to file: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data = try encoder.encode(w)
        let tmp = file + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw FailoverError.failed("simulated driver: cannot write \(tmp)")
        }
        let fd = open(tmp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(tmp, file) == 0 else { throw FailoverError.failed("simulated driver: cannot replace \(file)") }
    }

    /// Loads the world, ticks the clock, applies `body`, saves.
    func mutate<T>(_ body: (inout SimulatedWorld) throws -> T) throws -> T {
        var w = try Self.load(file)
        w.tick()
        let result = try body(&w)
        try Self.save(w, to: file)
        return result
    }

    func node(_ w: SimulatedWorld, _ i: Instance) throws -> SimulatedWorld.Node {
        guard let n = w.nodes[i.name] else { throw FailoverError.failed("simulated driver: no instance \(i.name)") }
        return n
    }

    public func status(of instance: Instance) async throws -> InstanceStatus {
        try mutate { w in
            let n = try node(w, instance)
            guard n.running else { return .stopped }
            let standby = n.standbySignal
            return InstanceStatus(
                running: true, reachable: true, inRecovery: standby, systemIdentifier: n.systemIdentifier, timeline: n.timeline,
                currentLSN: standby ? nil : LSN(n.lsn), receiveLSN: standby ? LSN(n.lsn) : nil, replayLSN: standby ? LSN(n.lsn) : nil,
                walReceiver: w.receiver(of: instance.name, instances: instances), archiverFailedCount: 0,
                lastArchivedWAL: w.archived[n.timeline].map { SimulatedWorld.segmentName(timeline: n.timeline, lsn: $0) })
        }
    }

    public func controlData(of instance: Instance) async throws -> ControlData? {
        try mutate { w in
            let n = try node(w, instance)
            guard n.hasData else { return nil }
            let state: String
            switch (n.running, n.standbySignal, n.cleanShutdown) {
            case (true, true, _): state = "in archive recovery"
            case (true, false, _): state = "in production"
            case (false, _, true): state = (n.shutDownInRecovery ?? n.standbySignal) ? "shut down in recovery" : "shut down"
            case (false, _, false): state = "in production"
            }
            return ControlData(
                state: state, systemIdentifier: n.systemIdentifier, timeline: n.checkpointTimeline, checkpointLSN: LSN(n.checkpoint),
                redoLSN: LSN(n.checkpoint))
        }
    }

    public func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        try mutate { w in
            let n = try node(w, instance)
            guard n.hasData, n.standbySignal else { return nil }
            return RecoverySettings(upstream: n.upstream.flatMap { instances[$0] })
        }
    }

    public func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws {
        try mutate { w in
            guard try node(w, instance).hasData else { throw FailoverError.failed("simulated: \(instance.name) has no data directory") }
            w.nodes[instance.name]!.standbySignal = true
            w.nodes[instance.name]!.upstream = settings.upstream?.name
            w.nodes[instance.name]!.noWALSource = nil
        }
    }

    /// Standby settings with no WAL source at all, as a managed site's fence writes them (``SimulatedSite``).
    func configureWithoutWALSource(_ instance: Instance) throws {
        try mutate { w in
            guard try node(w, instance).hasData else { throw FailoverError.failed("simulated: \(instance.name) has no data directory") }
            w.nodes[instance.name]!.standbySignal = true
            w.nodes[instance.name]!.upstream = nil
            w.nodes[instance.name]!.noWALSource = true
        }
    }

    /// The running standby's latest checkpoint, when it is the shutdown checkpoint of its last stop as a
    /// primary: the demotion token, read again as ``PatroniSite`` reads it (pg_control_checkpoint() and the
    /// record's type). Refused when it ran as a primary, was stopped again, checkpointed or rewound since.
    func shutdownCheckpointToken(of instance: Instance) throws -> DemotionToken {
        try mutate { w in
            let n = try node(w, instance)
            guard n.running, n.standbySignal, n.cleanShutdown, n.shutDownInRecovery == false else {
                throw FailoverError.refused(
                    "\(instance.name)'s latest checkpoint is not the shutdown checkpoint of a clean demotion (simulated: running \(n.running), standby \(n.standbySignal)); the target may lack commits; do not promote it without checking."
                )
            }
            return DemotionToken(systemIdentifier: n.systemIdentifier, timeline: n.checkpointTimeline, checkpointLSN: LSN(n.checkpoint))
        }
    }

    public func start(_ instance: Instance) async throws {
        try mutate { w in
            let n = try node(w, instance)
            guard n.hasData else { throw FailoverError.failed("simulated: \(instance.name) has no data directory to start") }
            if n.fenceMarker && !n.standbySignal {
                throw FailoverError.refused(
                    "simulated: \(instance.name) is fenced and has no standby settings; refusing to start it as a primary")
            }
            w.nodes[instance.name]!.running = true
        }
    }

    public func stop(_ instance: Instance, mode: StopMode) async throws {
        try mutate { w in
            var n = try node(w, instance)
            guard n.running else { return }
            if mode == .fast {
                n.checkpoint = n.lsn
                n.checkpointTimeline = n.timeline
                if !n.standbySignal {
                    n.lsn += 0x78  // the shutdown checkpoint record
                    // A clean shutdown sends all WAL to connected standbys before it exits.
                    for (name, s) in w.nodes where s.running && s.standbySignal && s.upstream == instance.name && s.timeline == n.timeline {
                        w.nodes[name]!.lsn = max(s.lsn, n.lsn)
                    }
                }
            }
            n.running = false
            n.cleanShutdown = mode == .fast
            n.shutDownInRecovery = n.standbySignal
            w.nodes[instance.name] = n
        }
    }

    public func promote(_ instance: Instance) async throws {
        try mutate { w in
            var n = try node(w, instance)
            guard n.running, n.standbySignal else { throw FailoverError.failed("simulated: \(instance.name) is not a running standby") }
            let newTimeline = (w.nodes.values.map(\.timeline) + Array(w.archived.keys)).max()! + 1
            n.switchpoints[n.timeline] = n.lsn
            n.timeline = newTimeline
            n.lsn += 0x28
            n.standbySignal = false
            n.upstream = nil
            n.fenceMarker = false
            n.noWALSource = nil
            w.archived[newTimeline] = n.lsn
            w.archivedSwitchpoints[newTimeline] = n.switchpoints
            w.nodes[instance.name] = n
        }
    }

    public func checkpoint(_ instance: Instance) async throws {
        try mutate { w in
            guard try node(w, instance).running else { throw FailoverError.failed("simulated: \(instance.name) is not running") }
            w.nodes[instance.name]!.checkpoint = w.nodes[instance.name]!.lsn
        }
    }

    public func switchWAL(_ instance: Instance) async throws -> String {
        try mutate { w in
            let n = try node(w, instance)
            guard w.isPrimary(n) else { throw FailoverError.failed("simulated: \(instance.name) is not a primary") }
            w.archived[n.timeline] = n.lsn
            w.archivedSwitchpoints[n.timeline] = n.switchpoints
            return SimulatedWorld.segmentName(timeline: n.timeline, lsn: n.lsn)
        }
    }

    public func isArchived(_ instance: Instance, segment: String) async throws -> Bool {
        try mutate { w in
            let n = try node(w, instance)
            return (w.archived[n.timeline] ?? 0) >= n.lsn - 0x1000 - 0x28
        }
    }

    public func restore(_ instance: Instance, delta: Bool) async throws {
        try mutate { w in
            var n = try node(w, instance)
            guard !n.running else { throw FailoverError.failed("simulated: stop \(instance.name) before restoring it") }
            n.hasData = true
            n.systemIdentifier = SimulatedWorld.systemIdentifier
            n.timeline = 1
            n.switchpoints = [:]
            n.lsn = w.backupLSN
            n.checkpoint = w.backupLSN
            n.checkpointTimeline = 1
            n.standbySignal = true
            n.upstream = nil
            n.cleanShutdown = true
            n.shutDownInRecovery = nil
            n.fenceMarker = false
            n.noWALSource = nil
            w.nodes[instance.name] = n
        }
    }

    public func rewind(_ instance: Instance, source: Instance) async throws -> String {
        try mutate { w in
            var n = try node(w, instance)
            let s = try node(w, source)
            guard !n.running else { throw FailoverError.failed("simulated: pg_rewind needs \(instance.name) stopped") }
            guard s.running else { throw FailoverError.failed("simulated: pg_rewind source \(source.name) is not running") }
            let summary: String
            if SimulatedWorld.canFollow(lsn: n.lsn, timeline: n.timeline, sourceTimeline: s.timeline, sourceSwitchpoints: s.switchpoints) {
                summary = "no rewind required"
            } else {
                let branch = s.switchpoints[n.timeline] ?? 0
                summary = "servers diverged at WAL location \(LSN(branch)) on timeline \(n.timeline); rewound \(n.lsn - branch) bytes"
                n.lsn = branch
            }
            n.timeline = s.timeline
            n.switchpoints = s.switchpoints
            n.checkpointTimeline = s.timeline
            n.cleanShutdown = true
            n.shutDownInRecovery = nil
            n.fenceMarker = false
            n.standbySignal = false
            n.upstream = nil
            n.noWALSource = nil
            w.nodes[instance.name] = n
            return summary
        }
    }

    public func writeProbe(_ instance: Instance) async throws -> LSN {
        try mutate { w in
            let n = try node(w, instance)
            guard w.isPrimary(n) else { throw FailoverError.failed("simulated: \(instance.name) does not accept writes") }
            w.nodes[instance.name]!.lsn += 0x100
            return LSN(w.nodes[instance.name]!.lsn)
        }
    }

    public func hasData(_ instance: Instance) async throws -> Bool {
        try mutate { w in try node(w, instance).hasData }
    }

    /// Where a stopped node's WAL ends, or a standby's (a fenced Patroni member runs as one, with no WAL
    /// source: what a capture reads); nil for a running primary, whose WAL still grows.
    public func endOfWAL(_ instance: Instance) async throws -> LSN? {
        try mutate { w in
            let n = try node(w, instance)
            return n.hasData && (!n.running || n.standbySignal) ? LSN(n.lsn) : nil
        }
    }

    public func repositorySystemIdentifier() async throws -> String? { SimulatedWorld.systemIdentifier }

    public func setFenceMarker(_ instance: Instance, reason: String) async throws {
        try mutate { w in w.nodes[instance.name]?.fenceMarker = true }
    }
}
