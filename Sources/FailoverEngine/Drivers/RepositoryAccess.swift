import Foundation

/// Whether pgBackRest can reach the plan's repository as the plan says: the named configuration file
/// agrees with the repository type, and the credentials an object store needs are there (in failoverd's
/// environment or in that file), checked without ever printing them.
public enum RepositoryAccess {
    /// The environment variables pgBackRest reads the credentials of each repository type from.
    public static let credentialVariables: [String: [String]] = [
        "s3": ["PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"],
        "gcs": ["PGBACKREST_REPO1_GCS_KEY"],
        "azure": ["PGBACKREST_REPO1_AZURE_KEY"],
    ]
    /// The same credentials as configuration-file options.
    static let credentialOptions: [String: [String]] = [
        "s3": ["repo1-s3-key", "repo1-s3-key-secret"], "gcs": ["repo1-gcs-key"], "azure": ["repo1-azure-key"],
    ]
    /// The key-type options that let pgBackRest find credentials itself (an instance role, a service account).
    static let automaticKeyTypes: [String: String] = ["s3": "repo1-s3-key-type", "gcs": "repo1-gcs-key-type"]

    /// Every problem with the plan's repository access, each naming the field and what to do; empty when fine.
    public static func problems(_ plan: Plan, environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        let repository = plan.repository
        var problems: [String] = []
        var options: [String: String] = [:]
        if let config = repository.config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                return ["$.repository.config: cannot read \(config); create it (or let `failoverd sandbox up` write it) or fix the path"]
            }
            options = parseOptions(text)
            let configured = options["repo1-type"] ?? "posix"
            if configured != repository.type {
                problems.append(
                    "$.repository.type: the plan says \(repository.type) but \(config) sets repo1-type=\(configured); make them agree, or pgBackRest would use another repository than the plan names"
                )
            }
        }
        guard let variables = credentialVariables[repository.type], let names = credentialOptions[repository.type] else { return problems }
        if let keyType = automaticKeyTypes[repository.type],
            let value = options[keyType] ?? environment["PGBACKREST_" + keyType.uppercased().replacingOccurrences(of: "-", with: "_")],
            value == "auto"
        {
            return problems
        }
        let fromEnvironment = variables.allSatisfy { !(environment[$0] ?? "").isEmpty }
        let fromConfig = names.allSatisfy { !(options[$0] ?? "").isEmpty }
        if !fromEnvironment && !fromConfig {
            problems.append(
                "$.repository: no \(repository.type) credentials for pgBackRest: set \(variables.joined(separator: " and ")) in failoverd's environment, or put \(names.joined(separator: " and ")) in the configuration file $.repository.config names (never in the plan)"
            )
        }
        return problems
    }

    /// ``PlanValidator/validate(_:)`` and then, for a plan that is otherwise valid, ``problems(_:environment:)``
    /// as errors at `$.repository`: what `failoverd validate` reports.
    public static func validate(_ data: Data, environment: [String: String] = ProcessInfo.processInfo.environment) -> PlanValidation {
        let result = PlanValidator.validate(data)
        guard let plan = result.plan else { return result }
        let access = problems(plan, environment: environment)
        guard !access.isEmpty else { return result }
        let errors = access.map { text -> PlanProblem in
            let parts = text.split(separator: ":", maxSplits: 1)
            let path: JSONPath =
                parts.first == "$.repository.type"
                ? .root.appending("repository").appending("type")
                : parts.first == "$.repository.config" ? .root.appending("repository").appending("config") : .root.appending("repository")
            return .error(path, parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : text, hint: "")
        }
        return PlanValidation(
            problems: result.problems + errors, plan: nil,
            summary: "plan \"\(plan.name)\" is invalid: \(PlanValidator.count(errors.count, "error")) in reaching its repository")
    }

    /// Throws an invalid-input error (exit 2) listing ``problems(_:environment:)``.
    public static func check(_ plan: Plan) throws {
        let found = problems(plan)
        if !found.isEmpty {
            throw FailoverError.invalid("the repository cannot be used as the plan says:\n  " + found.joined(separator: "\n  "))
        }
    }

    /// `key=value` options of a pgBackRest configuration file, from every section (later ones win).
    static func parseOptions(_ text: String) -> [String: String] {
        var options: [String: String] = [:]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), !line.hasPrefix("["), let eq = line.firstIndex(of: "=") else { continue }
            options[line[..<eq].trimmingCharacters(in: .whitespaces)] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return options
    }
}
