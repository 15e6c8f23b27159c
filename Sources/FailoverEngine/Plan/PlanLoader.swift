import Foundation

/// Reads and validates a plan file, turning every problem into one invalid-input error.
public enum PlanLoader {
    /// The validated plan at `path`, or a ``FailoverError`` (exit 2) listing every problem with its JSON path.
    public static func load(_ path: String) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FailoverError.invalid("cannot read plan file \(path): no such file or not readable")
        }
        let result = PlanValidator.validate(data)
        guard let plan = result.plan, result.isValid else {
            throw FailoverError.invalid(describe(result.problems, file: path))
        }
        return plan
    }

    /// Every problem on its own line: `file: $.path: message (hint)`.
    public static func describe(_ problems: [PlanProblem], file: String) -> String {
        let errors = problems.filter { $0.severity == .error }.count
        return
            "\(file): \(errors) error\(errors == 1 ? "" : "s"), \(problems.count - errors) warning\(problems.count - errors == 1 ? "" : "s"):\n"
            + problems.map { "  \($0.severity.rawValue) \($0.path): \($0.message)" + ($0.hint.isEmpty ? "" : "\n      hint: \($0.hint)") }
            .joined(separator: "\n")
    }
}
