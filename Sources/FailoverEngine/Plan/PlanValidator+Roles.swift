extension PlanValidator {
    /// Pass 5: walks the transitions in order from the declared roles and asks ``RoleMachine`` whether
    /// each is legal from the roles the earlier ones leave.
    ///
    /// After a refusal the walk goes on as if the transition had succeeded (see ``rolesAssumingLegal(_:_:)``):
    /// the author meant it to, so later transitions are judged against the intended roles and every real
    /// problem shows in one run. A transition the shape or reference pass already rejected is not judged
    /// again; it too is assumed to have happened when its subject is known.
    static func checkRoles(_ root: JSONValue, into problems: inout [PlanProblem]) {
        var roles: [String: Role] = [:]
        var seen: Set<String> = []
        for site in root["sites"]?.arrayValue ?? [] {
            guard let name = site["name"]?.stringValue, seen.insert(name).inserted else { continue }
            if let role = site["role"]?.stringValue.flatMap(Role.init(rawValue:)) { roles[name] = role }
        }
        for (i, value) in (root["transitions"]?.arrayValue ?? []).enumerated() {
            guard let transition = transition(from: value) else { continue }
            let action = transition.action
            let sound = action.requiredFields.allSatisfy { key in
                key == "method" ? transition.method != nil : value[key]?.stringValue.map { roles[$0] != nil } ?? false
            }
            guard sound else {
                if roles[transition.subject] != nil { roles = rolesAssumingLegal(transition, roles) }
                continue
            }
            switch RoleMachine.apply(transition, position: i + 1, to: roles) {
            case .success(let next):
                roles = next
            case .failure(let refusal):
                let subjectKey = action.requiredFields.contains("site") ? "site" : "to"
                let key =
                    refusal.site == transition.subject
                    ? subjectKey
                    : refusal.site == transition.upstream ? "upstream" : refusal.site == transition.source ? "source" : subjectKey
                problems.append(
                    .error(
                        JSONPath.root.appending("transitions").appending(i).appending(key), refusal.message,
                        hint:
                            "Roles at that point of the plan: \(describe(roles)). The transitions after this one are checked as if it had succeeded."
                    ))
                roles = rolesAssumingLegal(transition, roles)
            }
        }
    }

    /// The roles after `transition` had it been legal: it is applied with its subject given a role the action
    /// accepts; when the machine still refuses (an upstream, source or old primary in the wrong role), only the
    /// subject takes the role the action gives it.
    static func rolesAssumingLegal(_ transition: Transition, _ roles: [String: Role]) -> [String: Role] {
        var patched = roles
        if let accepted = RoleMachine.legalSubjectRoles(for: transition.action).sorted().first {
            patched[transition.subject] = accepted
        }
        if case .success(let next) = RoleMachine.apply(transition, position: 0, to: patched) { return next }
        patched = roles
        patched[transition.subject] = RoleMachine.resultingSubjectRole(for: transition.action)
        return patched
    }

    /// `dr=archive-standby, prod=primary`, by site name.
    static func describe(_ roles: [String: Role]) -> String {
        roles.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ", ")
    }
}
