/// The table of legal transitions: which role a site must have for each action, and the roles after it.
///
/// Roles are applied in sequence over a plan, so the second transition is checked against the roles the
/// first one leaves behind.
public enum RoleMachine {
    /// The roles the transition's subject site may have for `action` to be legal.
    public static func legalSubjectRoles(for action: Action) -> Set<Role> {
        switch action {
        case .bootstrapStandby: [.none]
        case .enableStreaming: [.archiveStandby]
        case .disableStreaming: [.streamingStandby]
        case .fence: [.primary]
        case .switchover: [.streamingStandby]
        case .failover: [.streamingStandby, .archiveStandby]
        case .rewind: [.fenced]
        case .rebuild: [.archiveStandby, .streamingStandby, .fenced]
        case .failback: [.fenced, .streamingStandby, .archiveStandby]
        }
    }

    /// The role the subject site has after `action`.
    public static func resultingSubjectRole(for action: Action) -> Role {
        switch action {
        case .bootstrapStandby, .disableStreaming, .rebuild: .archiveStandby
        case .enableStreaming, .rewind: .streamingStandby
        case .fence: .fenced
        case .switchover, .failover, .failback: .primary
        }
    }

    /// A transition the state machine refuses, with the reason and what to do.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// The site the refusal is about.
        public var site: String
        /// The human message.
        public var message: String
        public var description: String { message }
    }

    /// Applies `transition` to `roles` and returns the roles after it, or the refusal.
    ///
    /// - Parameter position: the transition's 1-based number in the plan, for messages.
    public static func apply(_ transition: Transition, position: Int, to roles: [String: Role]) -> Result<
        [String: Role], Refusal
    > {
        let subject = transition.subject
        let label = "transition \(position) (\(transition.summary))"
        guard let role = roles[subject] else {
            return .failure(.init(site: subject, message: "\(label): no site named \"\(subject)\" in the plan"))
        }
        let legal = legalSubjectRoles(for: transition.action)
        guard legal.contains(role) else {
            let need = legal.sorted().map(\.rawValue).joined(separator: " or ")
            return .failure(
                .init(
                    site: subject,
                    message:
                        "\(label) is illegal: site \"\(subject)\" is \(role.rawValue) at that point of the plan; \(transition.action.rawValue) needs \(need). \(hint(for: transition.action, from: role))"
                ))
        }
        var next = roles
        let primaries = roles.filter { $0.value == .primary }.map(\.key).sorted()
        switch transition.action {
        case .enableStreaming:
            let upstream = transition.upstream ?? ""
            guard upstream != subject else {
                return .failure(.init(site: subject, message: "\(label): a site cannot stream from itself; name the primary as upstream"))
            }
            guard let upRole = roles[upstream], upRole == .primary || upRole == .streamingStandby else {
                let seen = roles[upstream].map { "is \($0.rawValue)" } ?? "is not in the plan"
                return .failure(
                    .init(
                        site: upstream,
                        message:
                            "\(label): upstream \"\(upstream)\" \(seen) at that point of the plan; it must be primary or streaming-standby")
                )
            }
        case .switchover, .failback:
            guard let old = primaries.first, old != subject else {
                return .failure(
                    .init(
                        site: subject,
                        message: "\(label): there is no primary to hand over from at that point of the plan; use failover instead"))
            }
            next[old] = .streamingStandby
        case .failover:
            for old in primaries where old != subject { next[old] = .fenced }
        case .rewind:
            let source = transition.source ?? ""
            guard roles[source] == .primary else {
                let seen = roles[source].map { "is \($0.rawValue)" } ?? "is not in the plan"
                return .failure(
                    .init(
                        site: source,
                        message:
                            "\(label): source \"\(source)\" \(seen) at that point of the plan; pg_rewind needs the current primary as source"
                    ))
            }
        case .bootstrapStandby, .disableStreaming, .fence, .rebuild:
            break
        }
        next[subject] = resultingSubjectRole(for: transition.action)
        return .success(next)
    }

    /// Applies every transition in order; returns the final roles or the first refusal.
    public static func applyAll(_ transitions: [Transition], to roles: [String: Role]) -> Result<[String: Role], Refusal> {
        var current = roles
        for (i, t) in transitions.enumerated() {
            switch apply(t, position: i + 1, to: current) {
            case .success(let next): current = next
            case .failure(let refusal): return .failure(refusal)
            }
        }
        return .success(current)
    }

    static func hint(for action: Action, from role: Role) -> String {
        switch (action, role) {
        case (.switchover, .archiveStandby): "Add an enable-streaming transition before it."
        case (.switchover, .fenced), (.enableStreaming, .fenced): "Repair it first with rewind or rebuild."
        case (.bootstrapStandby, _): "The site already has data; use rebuild to restore it again."
        case (_, .none): "Bootstrap the site first with bootstrap-standby."
        case (.fence, _), (_, .primary): "A primary changes role only through switchover, failover or fence."
        default: "Check the site's role in the plan against `failoverd status`."
        }
    }
}
