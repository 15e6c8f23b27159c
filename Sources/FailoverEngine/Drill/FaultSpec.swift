/// A fault a drill injects, parsed from `--faults` (comma-separated).
public enum Fault: Sendable, Equatable, CustomStringConvertible {
    /// SIGKILL the primary's postmaster when step N starts.
    case killPrimary(step: Int)
    /// Kill the engine at step N (before or after its act), then resume it.
    case crashEngine(CrashPoint)
    /// Cut the WAL receiver of every instance of a standby site.
    case cutReceiver(site: String)
    /// Make archive_command fail for this many seconds, from the run's start.
    case archiveStall(seconds: Double)
    /// Cut the links of a site's hosts when step N starts (lab only): its servers keep running behind the cut.
    case partition(step: Int, site: String)
    /// Restore the links of a site's hosts when step N starts (lab only).
    case heal(step: Int, site: String)
    /// Cut failoverd's host off every site when step N starts (lab only); the sites still reach each other.
    case isolateControl(step: Int)
    /// A coordinated plan in the lab: SIGKILL the coordinator (on the control host) around step N's act; a
    /// second coordinator, inside the data center of the plan's final primary, takes the run over.
    case crashCoordinator(CrashPoint)
    /// A coordinated plan in the lab: cut the coordinator's host (the control host) off etcd and every site
    /// as step N begins; a second coordinator, inside the data center of the plan's final primary, takes the
    /// run over once the first one's lease expired; the cut then heals, and the first must write nothing.
    case isolateCoordinator(step: Int)

    /// Parses one or more faults: `kill-primary@3,crash-engine@5:after,cut-receiver@dr,archive-stall@10`.
    public static func parse(_ spec: String, plan: Plan) throws -> [Fault] {
        var faults: [Fault] = []
        for raw in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            let parts = raw.split(separator: "@", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw bad(raw, "expected NAME@ARGUMENT") }
            switch parts[0] {
            case "kill-primary":
                guard let n = Int(parts[1]), n >= 1 else { throw bad(raw, "kill-primary@STEP takes a step number from 1") }
                faults.append(.killPrimary(step: n))
            case "crash-engine":
                guard let c = CrashPoint(parts[1]) else { throw bad(raw, "crash-engine@STEP:before or crash-engine@STEP:after") }
                faults.append(.crashEngine(c))
            case "cut-receiver":
                guard let site = plan.site(named: parts[1]) else {
                    throw bad(raw, "no site \"\(parts[1])\" in the plan; sites: \(plan.sites.map(\.name).joined(separator: ", "))")
                }
                faults.append(.cutReceiver(site: site.name))
            case "partition", "heal":
                let arguments = parts[1].split(separator: ":", maxSplits: 1).map(String.init)
                guard arguments.count == 2, let n = Int(arguments[0]), n >= 1 else {
                    throw bad(raw, "\(parts[0])@STEP:SITE takes a step number from 1 and a site")
                }
                guard let site = plan.site(named: arguments[1]) else {
                    throw bad(raw, "no site \"\(arguments[1])\" in the plan; sites: \(plan.sites.map(\.name).joined(separator: ", "))")
                }
                try requireLab(raw, plan)
                faults.append(parts[0] == "partition" ? .partition(step: n, site: site.name) : .heal(step: n, site: site.name))
            case "isolate-control":
                guard let n = Int(parts[1]), n >= 1 else { throw bad(raw, "isolate-control@STEP takes a step number from 1") }
                try requireLab(raw, plan)
                faults.append(.isolateControl(step: n))
            case "crash-coordinator":
                let argument = parts[1].contains(":") ? parts[1] : parts[1] + ":before"
                guard let c = CrashPoint(argument), c.phase != .mid else {
                    throw bad(raw, "crash-coordinator@STEP, crash-coordinator@STEP:before or crash-coordinator@STEP:after")
                }
                try requireLab(raw, plan)
                guard plan.coordination != nil else {
                    throw bad(raw, "the plan has no \"coordination\": a second coordinator takes over only a run coordinated through etcd")
                }
                faults.append(.crashCoordinator(c))
            case "isolate-coordinator":
                guard let n = Int(parts[1]), n >= 1 else { throw bad(raw, "isolate-coordinator@STEP takes a step number from 1") }
                try requireLab(raw, plan)
                guard plan.coordination != nil else {
                    throw bad(raw, "the plan has no \"coordination\": a second coordinator takes over only a run coordinated through etcd")
                }
                faults.append(.isolateCoordinator(step: n))
            case "archive-stall":
                guard let s = Double(parts[1]), s > 0 else { throw bad(raw, "archive-stall@SECONDS takes a positive number of seconds") }
                faults.append(.archiveStall(seconds: s))
            default:
                throw bad(
                    raw,
                    "unknown fault \"\(parts[0])\"; known: kill-primary@STEP, crash-engine@STEP:before|after, cut-receiver@SITE, archive-stall@SECONDS, partition@STEP:SITE, heal@STEP:SITE, isolate-control@STEP, crash-coordinator@STEP[:before|after], isolate-coordinator@STEP"
                )
            }
        }
        if faults.filter({ $0.isCrash }).count > 1 {
            throw FailoverError.invalid(
                "--faults: at most one crash-engine fault per drill (a crash-coordinator or isolate-coordinator fault counts as one)")
        }
        return faults
    }

    /// True for the faults that take the engine (or the coordinator) away in the middle of the run.
    var isCrash: Bool {
        switch self {
        case .crashEngine, .crashCoordinator, .isolateCoordinator: true
        default: false
        }
    }

    /// The step a network fault strikes at; nil for the others.
    var step: Int? {
        switch self {
        case .partition(let n, _), .heal(let n, _), .isolateControl(let n), .isolateCoordinator(let n): n
        default: nil
        }
    }

    static func bad(_ raw: String, _ why: String) -> FailoverError { .invalid("--faults \(raw): \(why)") }

    /// Network faults cut links of the lab: the plan's sites must be ssh sites.
    static func requireLab(_ raw: String, _ plan: Plan) throws {
        guard plan.sites.allSatisfy({ $0.driver == .ssh }) else {
            throw bad(raw, "network faults need the lab: every site of the plan must be an ssh site (see failoverd lab up)")
        }
    }

    public var description: String {
        switch self {
        case .killPrimary(let n): "kill-primary@\(n)"
        case .crashEngine(let c): "crash-engine@\(c)"
        case .cutReceiver(let s): "cut-receiver@\(s)"
        case .archiveStall(let s): "archive-stall@\(s.formatted())"
        case .partition(let n, let s): "partition@\(n):\(s)"
        case .heal(let n, let s): "heal@\(n):\(s)"
        case .isolateControl(let n): "isolate-control@\(n)"
        case .crashCoordinator(let c): "crash-coordinator@\(c)"
        case .isolateCoordinator(let n): "isolate-coordinator@\(n)"
        }
    }
}
