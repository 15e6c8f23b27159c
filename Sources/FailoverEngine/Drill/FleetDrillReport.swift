import Foundation

/// What a fleet drill proves, written as report.json, report.md and timeline.svg (one lane per member).
public struct FleetDrillReport: Codable, Sendable {
    /// A step's start, seconds from the drill's start.
    public struct StepMark: Codable, Sendable {
        /// The step's number in its member's run.
        public var number: Int
        /// Its kind.
        public var kind: String
        /// When it started.
        public var at: Double
    }

    /// One member's figures.
    public struct Member: Codable, Sendable {
        /// The member.
        public var member: String
        /// Its plan's name.
        public var plan: String
        /// Its transitions.
        public var actions: [String]
        /// How it ended in the fleet run: succeeded, failed, refused, skipped, abandoned.
        public var status: String
        /// Its run.
        public var runID: String?
        /// Why it did not succeed.
        public var error: String?
        /// The members it waited for.
        public var waitsFor: [String]
        /// When it started and ended, seconds from the drill's start.
        public var startedAt: Double?
        /// When it ended.
        public var endedAt: Double?
        /// Its run's duration.
        public var seconds: Double?
        /// Its write unavailability: the longest gap between acknowledged writes around its transitions.
        public var rtoSeconds: Double?
        /// Acknowledged commits missing from its final primary.
        public var acknowledgedLost: Int
        /// Commits acknowledged by its workload.
        public var acknowledged: Int
        /// Its first transition's target's lag as the fleet started, in bytes and seconds.
        public var lagAtStartBytes: UInt64?
        /// The same lag in seconds.
        public var lagAtStartSeconds: Double?
        /// Its first gate's verdict as the fleet started.
        public var gateAtStart: String?
        /// True when every check of its own drill report passed.
        public var checksPassed: Bool
        /// The checks that failed.
        public var failedChecks: [String]
        /// Its steps' starts, for the timeline.
        public var steps: [StepMark]
        /// The faults struck on it.
        public var faults: [DrillReport.FaultEvent]
        /// Its acknowledged writes per 100 ms, for the timeline.
        public var acknowledgedPer100ms: [Int]
    }

    /// The fleet's name.
    public var fleet: String
    /// The fleet run.
    public var fleetRunID: String
    /// How the fleet run ended.
    public var outcome: String
    /// The exit code `fleet run` gives this outcome.
    public var exitCode: Int32
    /// How many members acted at once.
    public var concurrency: Int
    /// Why the brake engaged, if it did.
    public var brake: String?
    /// Writers per member.
    public var writersPerMember: Int
    /// When the fleet run started, seconds from the drill's start.
    public var fleetStartedAt: Double
    /// Every member.
    public var members: [Member]
    /// The drill's length.
    public var durationSeconds: Double
    /// From the fleet's start to the last member's end.
    public var totalSeconds: Double = 0
    /// The member whose run took longest.
    public var slowestMember: String?
    /// The critical path through `after` (and tiers): from the member that ended last, back through the member
    /// it waited for that ended last, to one that waited for none.
    public var criticalPath: [String] = []
    /// From the start of the critical path's first member to the end of its last.
    public var criticalPathSeconds: Double = 0
    /// True when every member's checks passed.
    public var passed: Bool = false

    /// Fills in the fleet's totals from the members.
    mutating func computeTotals() {
        let ended = members.compactMap { m in m.endedAt.map { (m, $0) } }
        totalSeconds = (ended.map(\.1).max() ?? fleetStartedAt) - fleetStartedAt
        slowestMember = members.filter { $0.seconds != nil }.max { $0.seconds! < $1.seconds! }?.member
        passed = members.allSatisfy(\.checksPassed)
        guard var current = ended.max(by: { $0.1 < $1.1 })?.0 else { return }
        var path = [current.member]
        while let previous = current.waitsFor.compactMap({ name in members.first { $0.member == name && $0.endedAt != nil } })
            .max(by: { $0.endedAt! < $1.endedAt! }), !path.contains(previous.member)
        {
            path.insert(previous.member, at: 0)
            current = previous
        }
        criticalPath = path
        let first = members.first { $0.member == path[0] }?.startedAt ?? fleetStartedAt
        criticalPathSeconds = (members.first { $0.member == path.last! }?.endedAt ?? first) - first
    }

    /// Writes report.json, report.md and timeline.svg into `directory`.
    public func write(to directory: String) throws {
        try DrillReport.writeFiles(self, markdown: markdown(), svg: svg(), to: directory)
    }

    static func f(_ v: Double?) -> String { DrillReport.f(v) }

    /// The human report.
    public func markdown() -> String {
        var md = "# Fleet drill of `\(fleet)`: \(passed ? "PASSED" : "FAILED")\n\n"
        md +=
            "Fleet run \(fleetRunID) \(outcome) (exit \(exitCode)), concurrency \(concurrency), \(writersPerMember) writer(s) per member. "
        md += "Fleet total time **\(Self.f(totalSeconds)) s**"
        if let slowest = slowestMember, let m = members.first(where: { $0.member == slowest }) {
            md += "; slowest member **\(slowest)** (\(Self.f(m.seconds)) s)"
        }
        md += "; critical path through `after`: **\(criticalPath.joined(separator: " → "))** (\(Self.f(criticalPathSeconds)) s).\n"
        if let brake { md += "\nBrake: \(brake).\n" }
        md +=
            "\n| member | actions | outcome | start (s) | seconds | RTO (s) | acknowledged lost | lag at start | first gate at start | checks |\n"
        md += "|---|---|---|---|---|---|---|---|---|---|\n"
        for m in members {
            let lag = m.lagAtStartBytes.map { "\($0) B, \(Self.f(m.lagAtStartSeconds)) s" } ?? "—"
            md += "| [\(m.member)](members/\(m.member)/report.md) | \(m.actions.joined(separator: "; ")) | \(m.status) | "
            md +=
                "\(Self.f(m.startedAt.map { $0 - fleetStartedAt })) | \(Self.f(m.seconds)) | \(Self.f(m.rtoSeconds)) | \(m.acknowledgedLost) | "
            md += "\(lag) | \(m.gateAtStart ?? "—") | \(m.checksPassed ? "pass" : "**FAIL**") |\n"
        }
        let problems = members.filter { $0.error != nil || !$0.failedChecks.isEmpty }
        if !problems.isEmpty {
            md += "\n## Members that did not pass\n\n"
            for m in problems {
                md += "- **\(m.member)** \(m.status)" + (m.error.map { ": \($0.replacingOccurrences(of: "|", with: "\\|"))" } ?? "") + "\n"
                for c in m.failedChecks { md += "  - failed check: \(c)\n" }
            }
        }
        let faults = members.flatMap { m in m.faults.map { (m.member, $0) } }
        if !faults.isEmpty {
            md += "\n## Faults\n\n"
            for (member, x) in faults { md += "- \(member): \(x.fault) at \(Self.f(x.at)) s: \(x.detail)\n" }
        }
        md += "\n![timeline](timeline.svg)\n"
        return md
    }

    /// One lane per member: its acknowledged writes per 100 ms (green), its run (a bar coloured by outcome,
    /// grey ticks at its steps), what it waited for (arrows from the end of each member it waited for), faults in red.
    public func svg() -> String {
        let width = 1000.0
        let left = 110.0
        let laneHeight = 44.0
        let top = 28.0
        let height = top + laneHeight * Double(max(1, members.count)) + 24
        let span = max(durationSeconds, 0.1)
        func x(_ seconds: Double) -> Double { left + seconds / span * (width - left - 10) }
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s +=
            "<text x=\"4\" y=\"14\">\(DrillReport.escape(fleet)): one lane per member; green = acknowledged writes per 100 ms, bar = its run (blue done, red failed, orange refused), red = faults</text>\n"
        let colors = ["succeeded": "#36c", "failed": "#d33", "refused": "#e90", "abandoned": "#999", "skipped": "#ccc"]
        var laneOf: [String: Int] = [:]
        for (i, m) in members.enumerated() { laneOf[m.member] = i }
        for (i, m) in members.enumerated() {
            let y = top + Double(i) * laneHeight
            s += String(format: "<text x=\"4\" y=\"%.1f\">%@</text>\n", y + 24, DrillReport.escape(m.member) as NSString)
            s += String(
                format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", left, width - 10, y + laneHeight - 2,
                y + laneHeight - 2)
            let peak = Double(max(1, m.acknowledgedPer100ms.max() ?? 1))
            for (k, c) in m.acknowledgedPer100ms.enumerated() where c > 0 {
                let h = Double(c) / peak * 16
                s += String(
                    format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#4a8\"/>\n", x(Double(k) / 10),
                    y + 18 - h, max(x(0.1) - x(0) - 0.2, 0.5), h)
            }
            if let a = m.startedAt, let b = m.endedAt {
                s += String(
                    format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"10\" fill=\"%@\" opacity=\"0.8\"/>\n", x(a), y + 22,
                    max(x(b) - x(a), 1), (colors[m.status] ?? "#36c") as NSString)
                // The label after the bar, or before it when the bar ends near the right edge.
                let after = x(b) + 3 < width - 170
                s += String(
                    format: "<text x=\"%.1f\" y=\"%.1f\" fill=\"#333\" text-anchor=\"%@\">%@ %.2f s, RTO %@ s</text>\n",
                    after ? x(b) + 3 : x(a) - 3, y + 31, (after ? "start" : "end") as NSString, m.status as NSString, b - a,
                    Self.f(m.rtoSeconds) as NSString)
            } else {
                s += String(format: "<text x=\"%.1f\" y=\"%.1f\" fill=\"#999\">%@</text>\n", left + 2, y + 31, m.status as NSString)
            }
            for st in m.steps {
                s += String(
                    format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\"/>\n", x(st.at), x(st.at), y + 20, y + 34)
            }
            for f in m.faults {
                s += String(
                    format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#d33\" stroke-width=\"2\"/>\n", x(f.at),
                    x(f.at), y + 2,
                    y + laneHeight - 4)
            }
            for dependency in m.waitsFor {
                guard let j = laneOf[dependency], let end = members[j].endedAt, let start = m.startedAt else { continue }
                let y0 = top + Double(j) * laneHeight + 27
                s += String(
                    format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#333\" stroke-dasharray=\"3 2\"/>\n", x(end),
                    x(start),
                    y0, y + 27)
            }
        }
        s += String(
            format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#36c\" stroke-width=\"1\"/>\n", x(fleetStartedAt),
            x(fleetStartedAt), top - 6, height - 20)
        s += String(
            format: "<text x=\"%.0f\" y=\"%.0f\">0 s</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f s</text>\n", left,
            height - 4,
            width - 10, height - 4, span)
        return s + "</svg>\n"
    }
}
