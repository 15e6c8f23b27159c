import Foundation

/// A fleet (fleet.json, format v1): many clusters moved in one fleet run, each by its own ordinary plan,
/// under a concurrency bound, an order and a brake.
///
/// A fleet never reaches into a member's steps: each member is an ordinary run of its plan, in a state
/// directory of its own (``FleetPaths``), and the fleet record ties the runs together. Decode a fleet only
/// through ``FleetValidator``, which validates every member plan as `failoverd validate` does.
public struct Fleet: Codable, Sendable, Equatable {
    /// The format version; always 1.
    public var version: Int
    /// The fleet's name: its state lives in `STATE/fleets/<name>`.
    public var name: String
    /// The members, in the order the fleet file lists them (the order in which free members start).
    public var members: [FleetMember]
    /// How many members act at once (default 4).
    public var concurrency: Int
    /// After this many failed or refused members no new member starts (default 1).
    public var brake: Int
    /// The tiers as written (`order.tiers`): every member of a tier waits for every member of the tiers before it.
    public var tiers: [[String]]
    /// The `after` dependencies as written (`order.after`): member → the members it waits for.
    public var after: [String: [String]]

    /// The default of `concurrency`.
    public static let defaultConcurrency = 4
    /// The default of `brake`.
    public static let defaultBrake = 1
    /// The most members a fleet may have (and the largest concurrency and brake).
    public static let maximumMembers = 256

    /// The member named `name`.
    public func member(named name: String) -> FleetMember? { members.first { $0.name == name } }

    /// Every member a member waits for: its `after` list and every member of the tiers before its own.
    public var dependencies: [String: [String]] {
        var result: [String: [String]] = [:]
        for m in members { result[m.name] = after[m.name] ?? [] }
        for (index, tier) in tiers.enumerated() where index > 0 {
            for m in tier {
                for earlier in tiers[index - 1] where !(result[m]?.contains(earlier) ?? false) { result[m, default: []].append(earlier) }
            }
        }
        return result
    }

    /// The fleet as canonical JSON (sorted keys), as stored in the fleet record: member plans included.
    public func canonicalJSON() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }
}

/// One member of a fleet: a name and an ordinary plan.
public struct FleetMember: Codable, Sendable, Equatable {
    /// The member's name, unique in the fleet (default: its plan's name); its state directory is named after it.
    public var name: String
    /// The plan file as the fleet file writes it (relative paths are relative to the fleet file's directory).
    public var planFile: String
    /// The plan, validated.
    public var plan: Plan
}

/// Where a fleet keeps its state under failoverd's state directory.
///
/// `STATE/fleets/<fleet>/fleet.sqlite` is the fleet record; `STATE/fleets/<fleet>/members/<member>/` is a
/// member's own state directory (journal, run lock, site roles), so `failoverd status|resume|abandon
/// --state <member directory>` works on a member alone.
public struct FleetPaths: Sendable, Equatable {
    /// failoverd's state directory.
    public var stateDirectory: String
    /// The fleet's name.
    public var fleet: String

    /// The paths of `fleet` under `stateDirectory`.
    public init(stateDirectory: String, fleet: String) {
        self.stateDirectory = stateDirectory
        self.fleet = fleet
    }

    /// `STATE/fleets`.
    public static func root(_ stateDirectory: String) -> String { (stateDirectory as NSString).appendingPathComponent("fleets") }
    /// `STATE/fleets/<fleet>`.
    public var directory: String { Self.root(stateDirectory) + "/" + fleet }
    /// `STATE/fleets/<fleet>/fleet.sqlite`.
    public var record: String { directory + "/fleet.sqlite" }
    /// `STATE/fleets/<fleet>/members/<member>`: the member's state directory.
    public func member(_ name: String) -> String { directory + "/members/" + name }
}

/// One thing wrong with a fleet: in the fleet file or in a member's plan, where (a JSON path in that file),
/// what, and what to do.
public struct FleetProblem: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Whether it makes the fleet invalid.
    public var severity: PlanProblem.Severity
    /// The member it is about, when it is about one.
    public var member: String?
    /// The file the path points into: the fleet file, or the member's plan file.
    public var file: String
    /// True when the problem lies in the member's plan file rather than in the fleet file.
    public var inMemberPlan: Bool
    /// The JSON path in that file, e.g. `$.order.after.billing[0]` or `$.sites[1].role`.
    public var path: String
    /// What is wrong.
    public var message: String
    /// What to do about it.
    public var hint: String

    /// A problem in the fleet file.
    init(_ severity: PlanProblem.Severity, file: String, at path: JSONPath, member: String? = nil, _ message: String, hint: String) {
        self.severity = severity
        self.member = member
        self.file = file
        inMemberPlan = false
        self.path = path.description
        self.message = message
        self.hint = hint
    }

    /// A problem of the fleet file found by a check the plan validator shares (syntax, secrets, control characters).
    init(fleetFile: String, _ problem: PlanProblem) {
        severity = problem.severity
        member = nil
        file = fleetFile
        inMemberPlan = false
        path = problem.path
        message = problem.message
        hint = problem.hint
    }

    /// A problem of a member's plan, as the plan validator reported it.
    init(member: String, file: String, _ problem: PlanProblem) {
        severity = problem.severity
        self.member = member
        self.file = file
        inMemberPlan = true
        path = problem.path
        message = problem.message
        hint = problem.hint
    }

    /// `error: member "billing" (plans/x/billing.json) $.sites[1].role: …` and the hint on its own line.
    public var description: String { "\(severity.rawValue): \(location): \(message)\n  hint: \(hint)" }

    /// `$.members[2].plan` for the fleet file, `member "billing" (FILE) $.sites[1].role` for a member's plan.
    public var location: String {
        guard inMemberPlan else { return path }
        return "member \(PlanValues.quoted(member ?? "?")) (\(file)) \(path)"
    }
}

/// The outcome of ``FleetValidator/validate(_:file:)``: every problem found, and the fleet when it is valid.
public struct FleetValidation: Sendable, Equatable {
    /// Every problem, errors and warnings: the fleet file's, then each member plan's, then across members.
    public var problems: [FleetProblem]
    /// The fleet, present exactly when there is no error.
    public var fleet: Fleet?
    /// One line for people.
    public var summary: String

    /// The problems that make the fleet invalid.
    public var errors: [FleetProblem] { problems.filter { $0.severity == .error } }
    /// True when the fleet has no error.
    public var isValid: Bool { fleet != nil }
}

/// Reads and validates a fleet file, turning every problem into one invalid-input error.
public enum FleetLoader {
    /// The validated fleet at `path`, or a ``FailoverError`` (exit 2) listing every problem with its member and JSON path.
    public static func load(_ path: String) throws -> Fleet {
        let result = FleetValidator.validate(file: path)
        guard let fleet = result.fleet else { throw FailoverError.invalid(describe(result.problems, file: path)) }
        return fleet
    }

    /// Every problem on its own line: `  error $.members[1].name: …` or `  error member "x" (FILE) $.sites[0].port: …`.
    public static func describe(_ problems: [FleetProblem], file: String) -> String {
        let errors = problems.filter { $0.severity == .error }.count
        let warnings = problems.count - errors
        return "\(file): \(PlanValidator.count(errors, "error")), \(PlanValidator.count(warnings, "warning")):\n"
            + problems.map {
                "  \($0.severity.rawValue) \($0.location): \($0.message)" + ($0.hint.isEmpty ? "" : "\n      hint: \($0.hint)")
            }
            .joined(separator: "\n")
    }
}
