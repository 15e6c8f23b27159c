import Foundation

/// What `failoverd validate` and a run check on this machine beyond the plan's text: pgBackRest can reach
/// the repository as the plan says (``RepositoryAccess``), and the fencing hook, which failoverd runs as
/// root, is root's own (``TrustedPath``).
public enum HostAccess {
    /// Why the plan's fencing hook cannot be run as root (missing, a symbolic link on the way, or a file or
    /// a directory above it that someone other than root could change); nil when it can, or there is none.
    public static func fencingHookProblem(_ plan: Plan) -> String? {
        guard let executable = plan.fencing?.command.first else { return nil }
        return TrustedPath.executableProblem(executable)
    }

    /// Why each TLS file of the plan's coordination store cannot be used (see ``TrustedPath/fileProblem(_:secret:)``),
    /// with its field; empty when every one can, or there are none.
    public static func coordinationFileProblems(_ plan: Plan) -> [(field: String, problem: String)] {
        (plan.coordination?.etcd.files ?? []).compactMap { f in
            TrustedPath.fileProblem(f.path, secret: f.field == "keyFile").map { ("coordination.etcd." + f.field, $0) }
        }
    }

    /// ``PlanValidator/validate(_:)``, then for a plan that is otherwise valid, ``RepositoryAccess`` and
    /// ``fencingHookProblem(_:)`` as errors at `$.repository` and `$.fencing.command[0]`: what
    /// `failoverd validate` reports.
    public static func validate(_ data: Data, environment: [String: String] = ProcessInfo.processInfo.environment) -> PlanValidation {
        var result = RepositoryAccess.validate(data, environment: environment)
        if let plan = result.plan ?? PlanValidator.validate(data).plan {
            let problems = coordinationFileProblems(plan)
            for p in problems {
                result.problems.append(
                    PlanProblem.error(
                        JSONPath.root.appending("coordination").appending("etcd").appending(String(p.field.split(separator: ".").last!)),
                        "\(p.field): \(p.problem)",
                        hint:
                            "failoverd reads it as root: a regular file named by its real path, owned by root (or failoverd's user), writable by no one else; a key readable by no one else."
                    ))
            }
            if !problems.isEmpty {
                result.plan = nil
                result.summary = "plan \"\(plan.name)\" is invalid: \(PlanValidator.count(result.errors.count, "error"))"
            }
        }
        guard let plan = result.plan ?? PlanValidator.validate(data).plan, let problem = fencingHookProblem(plan) else { return result }
        let error = PlanProblem.error(
            JSONPath.root.appending("fencing").appending("command").appending(0), "fencing: the hook cannot be run as root: \(problem)",
            hint:
                "failoverd runs the hook as root: the file and every directory above it must belong to root (or the user running failoverd) and be writable by no one else, named by its real path (no symbolic link)."
        )
        let errors = result.plan == nil ? result.errors.count + 1 : 1
        result.problems.append(error)
        result.plan = nil
        result.summary =
            "plan \"\(plan.name)\" is invalid: \(PlanValidator.count(errors, "error"))"
            + (errors > 1 ? " in reaching its repository and running its fencing hook" : " in running its fencing hook")
        return result
    }

    /// Throws an invalid-input error (exit 2) naming what cannot be used as the plan says: the repository's
    /// access, the fencing hook.
    public static func check(_ plan: Plan) throws {
        if let p = coordinationFileProblems(plan).first {
            throw FailoverError.invalid("\(p.field): \(p.problem) ($.\(p.field)); nothing was changed.")
        }
        try RepositoryAccess.check(plan)
        if let problem = fencingHookProblem(plan) {
            throw FailoverError.invalid(
                "the fencing hook cannot be run as root: \(problem). failoverd runs it as root, so it and every directory above it must belong to root and be writable by no one else ($.fencing.command[0])."
            )
        }
    }
}
