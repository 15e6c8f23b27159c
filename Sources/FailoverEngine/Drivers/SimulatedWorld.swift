import Foundation

/// The simulated driver's model of a topology: instances with data, timelines and WAL positions that
/// advance as the simulated clock ticks, plus the shared repository's archive.
struct SimulatedWorld: Codable {
    struct Node: Codable {
        var hasData = false
        var running = false
        var cleanShutdown = true
        /// The server was a standby when it last stopped (pg_control: `shut down in recovery`); nil in
        /// worlds saved before this was recorded, where standby.signal stands in.
        var shutDownInRecovery: Bool?
        var standbySignal = false
        var upstream: String?
        var systemIdentifier = ""
        var timeline = 1
        var lsn: UInt64 = 0
        /// For each ancestor timeline, the LSN at which this node's history left it.
        var switchpoints: [Int: UInt64] = [:]
        var checkpoint: UInt64 = 0
        var checkpointTimeline = 1
        var fenceMarker = false
        /// A standby with no WAL source at all, neither streamed nor archived: a managed site fenced as Patroni
        /// fences one (`standby_cluster` with restore_command /bin/false), until new standby settings, a
        /// rewind, a restore or a promotion; nil in worlds saved before this was recorded.
        var noWALSource: Bool?
    }

    static let systemIdentifier = "7300000000000000001"
    var nodes: [String: Node] = [:]
    /// Archived WAL end per timeline, and each timeline's history as archived.
    var archived: [Int: UInt64] = [:]
    var archivedSwitchpoints: [Int: [Int: UInt64]] = [:]
    var backupLSN: UInt64 = 0x0300_0028
    var ticks = 0

    /// A world matching the plan's declared starting topology.
    static func initial(for plan: Plan) -> SimulatedWorld {
        var w = SimulatedWorld()
        let primary = plan.declaredPrimary
        let start: UInt64 = 0x0400_0000
        w.archived[1] = start
        w.archivedSwitchpoints[1] = [:]
        for site in plan.sites {
            for (n, i) in site.instances.enumerated() {
                var node = Node()
                guard site.role != .none else { w.nodes[i.name] = node; continue }
                node.hasData = true
                node.systemIdentifier = systemIdentifier
                node.lsn = start
                node.checkpoint = start - 0x1000
                switch site.role {
                case .primary where n == 0:
                    node.running = true
                case .primary, .streamingStandby:
                    node.running = true
                    node.standbySignal = true
                    node.upstream = n == 0 ? primary?.leader.name : site.leader.name
                case .archiveStandby:
                    // Every instance of an archive site replays from the repository: no upstream.
                    node.running = true
                    node.standbySignal = true
                case .fenced:
                    node.cleanShutdown = false
                    node.lsn = start + 0x2000
                case .none:
                    break
                }
                w.nodes[i.name] = node
            }
        }
        return w
    }

    func isPrimary(_ n: Node) -> Bool { n.running && !n.standbySignal }

    /// Can a node on `timeline` at `lsn` continue along `history` (a source's timeline and switchpoints)?
    static func canFollow(lsn: UInt64, timeline: Int, sourceTimeline: Int, sourceSwitchpoints: [Int: UInt64]) -> Bool {
        if timeline == sourceTimeline { return true }
        if timeline > sourceTimeline { return false }
        guard let left = sourceSwitchpoints[timeline] else { return false }
        return lsn <= left
    }

    /// One tick of the clock: primaries write, the archive catches up one tick behind, standbys replay.
    mutating func tick() {
        ticks += 1
        let before = nodes
        for (name, n) in before where isPrimary(n) {
            nodes[name]!.lsn += 0x1000
            archived[n.timeline] = max(archived[n.timeline] ?? 0, n.lsn)
            archivedSwitchpoints[n.timeline] = n.switchpoints
        }
        for (name, n) in before where n.running && n.standbySignal && n.noWALSource != true {
            if let up = n.upstream, let u = before[up], u.running, u.systemIdentifier == n.systemIdentifier,
                Self.canFollow(lsn: n.lsn, timeline: n.timeline, sourceTimeline: u.timeline, sourceSwitchpoints: u.switchpoints)
            {
                // Streaming: one tick behind the upstream.
                if u.lsn > n.lsn || u.timeline != n.timeline {
                    nodes[name]!.lsn = max(n.lsn, u.lsn)
                    nodes[name]!.timeline = u.timeline
                    nodes[name]!.switchpoints = u.switchpoints
                }
            } else if n.upstream == nil || !(before[n.upstream!]?.running ?? false) {
                // Archive recovery: follow the latest archived timeline this node can reach.
                if let (tli, end) = archived.filter({
                    Self.canFollow(
                        lsn: n.lsn, timeline: n.timeline, sourceTimeline: $0.key, sourceSwitchpoints: archivedSwitchpoints[$0.key] ?? [:])
                }).max(by: { $0.key < $1.key }), end > n.lsn || tli != n.timeline {
                    nodes[name]!.lsn = max(n.lsn, end)
                    nodes[name]!.timeline = tli
                    nodes[name]!.switchpoints = archivedSwitchpoints[tli] ?? [:]
                }
            }
        }
    }

    /// The WAL receiver a node would show now.
    func receiver(of name: String, instances: [String: Instance]) -> WalReceiver? {
        guard let n = nodes[name], n.running, n.standbySignal, n.noWALSource != true, let up = n.upstream, let u = nodes[up], u.running,
            u.systemIdentifier == n.systemIdentifier, let ui = instances[up]
        else { return nil }
        let ok = Self.canFollow(lsn: n.lsn, timeline: n.timeline, sourceTimeline: u.timeline, sourceSwitchpoints: u.switchpoints)
        return WalReceiver(
            status: ok ? "streaming" : "waiting", upstreamHost: ui.host, upstreamPort: ui.port,
            receivedTimeline: ok ? u.timeline : n.timeline)
    }

    static func segmentName(timeline: Int, lsn: UInt64) -> String {
        let seg = lsn / 0x100_0000
        return String(format: "%08X%08X%08X", timeline, Int(seg / 0x100), Int(seg % 0x100))
    }
}
