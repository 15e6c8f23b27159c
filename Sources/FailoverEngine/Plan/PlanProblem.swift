/// One thing wrong with a plan: where (a JSON path), what, and what to do about it.
public struct PlanProblem: Sendable, Equatable, Codable, CustomStringConvertible {
    /// How much a problem matters.
    public enum Severity: String, Sendable, Codable {
        /// The plan is invalid: `failoverd validate` exits 2 and nothing runs it.
        case error
        /// Worth a look, but the plan stays valid (an unknown key, which failoverd ignores).
        case warning
    }

    /// Whether the problem makes the plan invalid.
    public var severity: Severity
    /// The JSON path of the offending value, e.g. `$.sites[1].instances[0].port`; `$` for the whole document.
    public var path: String
    /// What is wrong, naming the field, site or transition.
    public var message: String
    /// What to do about it.
    public var hint: String

    /// Creates a problem.
    public init(_ severity: Severity, at path: JSONPath, _ message: String, hint: String) {
        self.severity = severity
        self.path = path.description
        self.message = message
        self.hint = hint
    }

    /// An error at `path`.
    static func error(_ path: JSONPath, _ message: String, hint: String) -> PlanProblem {
        PlanProblem(.error, at: path, message, hint: hint)
    }

    /// A warning at `path`.
    static func warning(_ path: JSONPath, _ message: String, hint: String) -> PlanProblem {
        PlanProblem(.warning, at: path, message, hint: hint)
    }

    /// `error: $.sites[1].role: …` followed by the hint on its own indented line.
    public var description: String { "\(severity.rawValue): \(path): \(message)\n  hint: \(hint)" }
}
