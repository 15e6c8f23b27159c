/// The outcome of ``PlanValidator/validate(_:)``: every problem found, and the plan when it is valid.
public struct PlanValidation: Sendable, Equatable {
    /// Every problem, errors and warnings, shape first, then cross-references, then roles.
    public var problems: [PlanProblem]
    /// The decoded plan; present exactly when there is no error (warnings allowed).
    public var plan: Plan?
    /// One line for people, e.g. `plan "xkube-dr" is valid: 2 sites, 3 instances, 4 transitions; roles after
    /// it: dr=primary, prod=streaming-standby`, or `plan "xkube-dr" is invalid: 2 errors, 1 warning`.
    public var summary: String

    /// The problems that make the plan invalid.
    public var errors: [PlanProblem] { problems.filter { $0.severity == .error } }
    /// The problems that leave the plan valid.
    public var warnings: [PlanProblem] { problems.filter { $0.severity == .warning } }
    /// True when the plan has no error and was decoded.
    public var isValid: Bool { plan != nil }

    /// The plan, or an invalid-input error (exit 2) that lists every error with its path and hint.
    public func validPlan() throws(FailoverError) -> Plan {
        if let plan { return plan }
        let lines = [summary] + errors.map { "  \($0.path): \($0.message) (\($0.hint))" }
        throw .invalid(lines.joined(separator: "\n"))
    }
}
