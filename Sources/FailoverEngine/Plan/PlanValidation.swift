/// The outcome of ``PlanValidator/validate(_:)``: every problem found, and the plan when it is valid.
public struct PlanValidation: Sendable, Equatable {
    /// Every problem, errors and warnings, in pass order: duplicate keys, shape, secrets, cross-references, roles.
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
}
