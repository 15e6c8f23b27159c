import Foundation

/// What a drill proves, written as report.json, report.md and timeline.svg.
public struct DrillReport: Codable, Sendable {
    /// One check and its outcome.
    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var passed: Bool
        public var detail: String
        public init(name: String, passed: Bool, detail: String) {
            self.name = name
            self.passed = passed
            self.detail = detail
        }
    }

    /// A step's timing, seconds from the drill's start.
    public struct StepTiming: Codable, Sendable {
        public var number: Int
        public var kind: String
        public var summary: String
        public var status: String
        public var startedAt: Double?
        public var endedAt: Double?
        public var seconds: Double?
    }

    /// One transition's figures.
    public struct TransitionReport: Codable, Sendable {
        public var action: String
        public var summary: String
        public var startedAt: Double
        public var endedAt: Double
        /// The longest gap between acknowledged commits around the transition.
        public var rtoSeconds: Double
        /// From the transition's start to the first acknowledged write on the primary it leaves.
        public var firstWriteSeconds: Double?
        /// Acknowledged commits missing from the final primary, attributed to this transition.
        public var acknowledgedLost: Int
        /// For a failover: the engine's estimate of WAL the old primary had beyond the promoted position.
        public var walLossEstimateBytes: UInt64?
        public var steps: [StepTiming]
    }

    /// Visibility lag of fresh rows on one standby, in one replication mode.
    public struct Lag: Codable, Sendable {
        public var instance: String
        public var site: String
        /// `archive` or `streaming`.
        public var mode: String
        public var samples: Int
        public var medianSeconds: Double
        public var p95Seconds: Double
        public var maxSeconds: Double
    }

    /// The workload's totals.
    public struct Workload: Codable, Sendable {
        public var writers: Int
        public var attempted: Int
        public var acknowledged: Int
        public var errors: Int
        public var unknownOutcomeCommitted: Int
        public var lost: Int
        public var lostIDs: [Int64]
    }

    /// A fault and when it struck.
    public struct FaultEvent: Codable, Sendable {
        public var fault: String
        public var at: Double
        public var detail: String
    }

    public var plan: String
    public var passed: Bool
    public var checks: [Check]
    public var transitions: [TransitionReport]
    public var lag: [Lag]
    public var workload: Workload
    public var faults: [FaultEvent]
    public var runID: String?
    public var durationSeconds: Double
    /// Acknowledged commits per 100 ms, for the timeline.
    public var acknowledgedPer100ms: [Int]
    /// What `failoverd lost` listed for the former primaries the run fenced.
    public var lost: LostList? = nil
    /// A coordinated plan drilled with `crash-coordinator`: who ran each step, and the takeover time.
    public var coordination: CoordinationReport? = nil

    /// Which coordinator ended a step (its last audit event names it).
    public struct StepCoordinator: Codable, Sendable {
        /// The step's number.
        public var number: Int
        /// Its kind.
        public var kind: String
        /// The coordinator: `HOST pid PID token TOKEN`.
        public var coordinator: String
        /// `first` (killed by the drill) or `second` (took the run over).
        public var which: String
    }

    /// The two coordinators of a `crash-coordinator` drill.
    public struct CoordinationReport: Codable, Sendable {
        /// The coordinator the drill killed.
        public var first: String?
        /// The coordinator that took over.
        public var second: String?
        /// The lab host the second one ran on (in its network namespace).
        public var secondHost: String
        /// When the first was killed (drill seconds).
        public var faultAt: Double
        /// When the second began its first act (its first `step-start`), drill seconds.
        public var firstActOfSecondAt: Double?
        /// From the fault to the second coordinator's first act.
        public var takeoverSeconds: Double?
        /// Each step with its coordinator.
        public var steps: [StepCoordinator]
    }

    /// Writes report.json, report.md and timeline.svg into `directory`.
    public func write(to directory: String) throws {
        try Self.writeFiles(self, markdown: markdown(), svg: svg(), to: directory)
    }

    /// Writes a report's three files into `directory` (created if needed): report.json (pretty, sorted keys),
    /// report.md and timeline.svg. Shared by the drill's and the fleet drill's reports.
    static func writeFiles<Report: Encodable>(_ report: Report, markdown: String, svg: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: URL(fileURLWithPath: directory + "/report.json"))
        try markdown.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
        try svg.write(toFile: directory + "/timeline.svg", atomically: true, encoding: .utf8)
    }

    static func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "—" }

    /// The human report.
    /// Every restore from the repository the run performed (bootstrap, rebuild, rewind fallback), with
    /// its duration: how long the repository (a file system or an object store) takes to seed a standby.
    public var restores: [(summary: String, seconds: Double)] {
        transitions.flatMap(\.steps).filter { $0.kind == StepKind.restore.rawValue && $0.status == "done" }.compactMap { s in
            s.seconds.map { (s.summary, $0) }
        }
    }

    public func markdown() -> String {
        var md = "# Drill of plan `\(plan)`: \(passed ? "PASSED" : "FAILED")\n\n"
        md += "Run \(runID ?? "—"), \(String(format: "%.1f", durationSeconds)) s, \(workload.writers) writers: "
        md +=
            "\(workload.acknowledged) commits acknowledged of \(workload.attempted) attempted, \(workload.errors) errors seen by clients, "
        md += "\(workload.lost) acknowledged commits lost, \(workload.unknownOutcomeCommitted) unknown-outcome commits found committed.\n\n"
        md += "## Checks\n\n| check | result | detail |\n|---|---|---|\n"
        for c in checks {
            md += "| \(c.name) | \(c.passed ? "pass" : "**FAIL**") | \(c.detail.replacingOccurrences(of: "|", with: "\\|")) |\n"
        }
        for t in transitions {
            md += "\n## \(t.summary)\n\n"
            md +=
                "RTO (longest gap between acknowledged writes): **\(Self.f(t.rtoSeconds)) s**; first acknowledged write after its start: \(Self.f(t.firstWriteSeconds)) s; "
            md += "acknowledged commits lost: **\(t.acknowledgedLost)**"
            if let w = t.walLossEstimateBytes { md += "; engine's WAL-loss estimate: \(w) bytes" }
            md += ".\n\n| step | kind | status | start (s) | seconds | what |\n|---|---|---|---|---|---|\n"
            for s in t.steps {
                md += "| \(s.number) | \(s.kind) | \(s.status) | \(Self.f(s.startedAt)) | \(Self.f(s.seconds)) | \(s.summary) |\n"
            }
        }
        if !lag.isEmpty {
            md +=
                "\n## Standby lag (commit acknowledged → row visible)\n\n| instance | site | mode | samples | median (s) | p95 (s) | max (s) |\n|---|---|---|---|---|---|---|\n"
            for l in lag {
                md +=
                    "| \(l.instance) | \(l.site) | \(l.mode) | \(l.samples) | \(Self.f(l.medianSeconds)) | \(Self.f(l.p95Seconds)) | \(Self.f(l.maxSeconds)) |\n"
            }
        }
        if !restores.isEmpty {
            md += "\n## Restores from the repository\n\n| step | seconds |\n|---|---|\n"
            for r in restores { md += "| \(r.summary) | \(Self.f(r.seconds)) |\n" }
        }
        if let l = lost {
            md +=
                "\n## Lost transactions (`failoverd lost`)\n\n\(l.count) transaction\(l.count == 1 ? "" : "s") committed on \(l.instances.joined(separator: ", ")) after the fork, \(l.ledgerCommits) of them the workload's acknowledged commits (report.json lists them all):\n\n```\n"
            md += l.firstLines.joined(separator: "\n") + "\n```\n"
        }
        if let c = coordination {
            md +=
                "\n## Coordinators\n\nFirst (killed at \(Self.f(c.faultAt)) s): \(c.first ?? "—"). Second, on \(c.secondHost): \(c.second ?? "—"), first act at \(Self.f(c.firstActOfSecondAt)) s: takeover **\(Self.f(c.takeoverSeconds)) s**.\n\n| step | kind | coordinator |\n|---|---|---|\n"
            for s in c.steps { md += "| \(s.number) | \(s.kind) | \(s.which): \(s.coordinator) |\n" }
        }
        if !faults.isEmpty {
            md += "\n## Faults\n\n"
            for x in faults { md += "- \(x.fault) at \(Self.f(x.at)) s: \(x.detail)\n" }
        }
        md += "\n![timeline](timeline.svg)\n"
        return md
    }

    /// Acknowledged writes per 100 ms, with step boundaries (grey), transitions (blue) and faults (red).
    public func svg() -> String {
        let width = 1000.0
        let height = 260.0
        let top = 30.0
        let plotH = 180.0
        let n = max(1, acknowledgedPer100ms.count)
        let dx = width / Double(n)
        let peak = Double(max(1, acknowledgedPer100ms.max() ?? 1))
        func x(_ seconds: Double) -> Double { seconds / 0.1 * dx }
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s +=
            "<text x=\"4\" y=\"14\">\(plan): acknowledged writes per 100 ms (peak \(Int(peak))); grey = steps, blue = transitions, red = faults</text>\n"
        for (i, c) in acknowledgedPer100ms.enumerated() where c > 0 {
            let h = Double(c) / peak * plotH
            s += String(
                format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#4a8\"/>\n", Double(i) * dx, top + plotH - h,
                max(dx - 0.2, 0.5), h)
        }
        for t in transitions {
            for st in t.steps {
                if let a = st.startedAt {
                    s += String(
                        format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#bbb\"/>\n", x(a), x(a), top, top + plotH)
                }
            }
            s += String(
                format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#36c\" stroke-width=\"2\"/>\n", x(t.startedAt),
                x(t.startedAt), top, top + plotH)
            s += String(
                format: "<text x=\"%.1f\" y=\"%.0f\" fill=\"#36c\">%@ (RTO %.2f s)</text>\n", x(t.startedAt) + 3, top + plotH + 16,
                Self.escape(t.summary) as NSString, t.rtoSeconds)
        }
        for fault in faults {
            s += String(
                format:
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#d33\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/>\n",
                x(fault.at), x(fault.at), top, top + plotH)
            s += String(
                format: "<text x=\"%.1f\" y=\"%.0f\" fill=\"#d33\">%@</text>\n", x(fault.at) + 3, top + plotH + 32,
                Self.escape(fault.fault) as NSString)
        }
        s += String(
            format: "<text x=\"4\" y=\"%.0f\">0 s</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f s</text>\n", height - 4,
            width - 4, height - 4, Double(n) / 10)
        return s + "</svg>\n"
    }

    static func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }
}
