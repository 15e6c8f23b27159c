import Foundation

extension OSUser {
    /// The user that runs PostgreSQL for `plan`: `plan.osUser ?? "failoverd"` when running as root, else this process's user.
    ///
    /// - Throws: ``FailoverError`` when running as root and that user does not exist.
    public static func postgresUser(for plan: Plan) throws -> OSUser {
        guard isRoot else { return current }
        let name = plan.osUser ?? "failoverd"
        if let problem = PlanValues.osUserProblem(name) {
            throw FailoverError.invalid("osUser \(PlanValues.quoted(name)) \(problem); name an unprivileged user.")
        }
        guard let user = lookup(name) else {
            throw FailoverError.invalid(
                "OS user \"\(name)\" does not exist: failoverd runs PostgreSQL as this unprivileged user when started as root. "
                    + "Create it (useradd --system --user-group \(name)), run `failoverd sandbox up`, or set \"osUser\" in the plan.")
        }
        guard user.uid != 0 else {
            throw FailoverError.invalid(
                "OS user \"\(name)\" has uid 0: failoverd never runs PostgreSQL with root's privileges. Name an unprivileged user in \"osUser\"."
            )
        }
        return user
    }
}
