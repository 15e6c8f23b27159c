import Foundation

/// One problem found in a plan: where (a JSON path), what, and what to do.
public struct PlanProblem: Sendable, Equatable, Codable {
    public var path: String
    public var message: String
    public var hint: String
}

/// The result of validating a plan.
public struct PlanValidation: Sendable {
    public var problems: [PlanProblem]
    public var plan: Plan?
    public var summary: String
}

/// Temporary minimal validator (decoding + role machine) until the full validator lands.
public enum PlanValidator {
    public static func validate(_ data: Data) -> PlanValidation {
        do {
            let plan = try Plan.decode(data)
            if case .failure(let r) = Planner(plan: plan).steps() {
                return PlanValidation(problems: [PlanProblem(path: "$.transitions", message: r.message, hint: "")], plan: nil, summary: "")
            }
            return PlanValidation(problems: [], plan: plan, summary: "plan \"\(plan.name)\" is valid")
        } catch {
            return PlanValidation(problems: [PlanProblem(path: "$", message: "\(error)", hint: "")], plan: nil, summary: "")
        }
    }
}
