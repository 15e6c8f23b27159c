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
            case "archive-stall":
                guard let s = Double(parts[1]), s > 0 else { throw bad(raw, "archive-stall@SECONDS takes a positive number of seconds") }
                faults.append(.archiveStall(seconds: s))
            default:
                throw bad(
                    raw,
                    "unknown fault \"\(parts[0])\"; known: kill-primary@STEP, crash-engine@STEP:before|after, cut-receiver@SITE, archive-stall@SECONDS"
                )
            }
        }
        if faults.filter({ if case .crashEngine = $0 { true } else { false } }).count > 1 {
            throw FailoverError.invalid("--faults: at most one crash-engine fault per drill")
        }
        return faults
    }

    static func bad(_ raw: String, _ why: String) -> FailoverError { .invalid("--faults \(raw): \(why)") }

    public var description: String {
        switch self {
        case .killPrimary(let n): "kill-primary@\(n)"
        case .crashEngine(let c): "crash-engine@\(c)"
        case .cutReceiver(let s): "cut-receiver@\(s)"
        case .archiveStall(let s): "archive-stall@\(s.formatted())"
        }
    }
}
