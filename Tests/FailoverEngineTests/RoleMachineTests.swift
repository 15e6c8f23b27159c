import Testing

@testable import FailoverEngine

/// The role state machine: every (role, action) pair against a table written out by hand from
/// docs/plan-format.md, then sequences where one transition changes what the next may do.
struct RoleMachineTests {
    /// Which role the subject site must have for each action: the documented table, not the machine's.
    static let documentedLegalRoles: [Action: Set<Role>] = [
        .bootstrapStandby: [.none],
        .enableStreaming: [.archiveStandby],
        .disableStreaming: [.streamingStandby],
        .fence: [.primary],
        .switchover: [.streamingStandby],
        .failover: [.archiveStandby, .streamingStandby],
        .rewind: [.fenced],
        .rebuild: [.archiveStandby, .streamingStandby, .fenced],
        .failback: [.fenced, .streamingStandby, .archiveStandby],
    ]

    /// The roles after a legal transition on site "s", with "p" the other site (primary, or a streaming
    /// standby when "s" itself is the primary).
    static let documentedRolesAfter: [Action: (s: Role, p: Role)] = [
        .bootstrapStandby: (.archiveStandby, .primary),
        .enableStreaming: (.streamingStandby, .primary),
        .disableStreaming: (.archiveStandby, .primary),
        .fence: (.fenced, .streamingStandby),
        .switchover: (.primary, .streamingStandby),
        .failover: (.primary, .fenced),
        .rewind: (.streamingStandby, .primary),
        .rebuild: (.archiveStandby, .primary),
        .failback: (.primary, .streamingStandby),
    ]

    /// A transition acting on "s", with "p" as upstream and rewind source wherever the action takes them.
    private func transition(_ action: Action) -> Transition {
        Transition(action: action, site: "s", upstream: "p", to: "s", source: "p", method: .rewind)
    }

    @Test func machineTableMatchesTheDocumentedTable() {
        for action in Action.allCases {
            #expect(RoleMachine.legalSubjectRoles(for: action) == Self.documentedLegalRoles[action], "\(action.rawValue)")
            #expect(RoleMachine.resultingSubjectRole(for: action) == Self.documentedRolesAfter[action]?.s, "\(action.rawValue)")
        }
    }

    @Test(arguments: Role.allCases, Action.allCases)
    func everyRoleAndActionPair(role: Role, action: Action) throws {
        let legal = try #require(Self.documentedLegalRoles[action]).contains(role)
        #expect(RoleMachine.legalSubjectRoles(for: action).contains(role) == legal)
        let before: [String: Role] = ["s": role, "p": role == .primary ? .streamingStandby : .primary]

        switch RoleMachine.apply(transition(action), position: 1, to: before) {
        case .success(let after):
            #expect(legal, "\(action.rawValue) from \(role.rawValue) must be refused, got \(after)")
            let expected = try #require(Self.documentedRolesAfter[action])
            #expect(after == ["s": expected.s, "p": expected.p], "\(action.rawValue) from \(role.rawValue)")
        case .failure(let refusal):
            #expect(!legal, "\(action.rawValue) from \(role.rawValue) must be accepted: \(refusal)")
            #expect(refusal.site == "s")
            #expect(refusal.message.hasPrefix("transition 1 (\(transition(action).summary)) is illegal"), "\(refusal)")
            #expect(refusal.message.contains("site \"s\" is \(role.rawValue) at that point of the plan"), "\(refusal)")
            for needed in Self.documentedLegalRoles[action] ?? [] {
                #expect(refusal.message.contains(needed.rawValue), "\(refusal) should name \(needed.rawValue)")
            }
        }
    }

    private let declared: [String: Role] = ["prod": .primary, "dr": .archiveStandby]

    @Test func secondTransitionIsCheckedAgainstTheRolesAfterTheFirst() throws {
        let switchover = Transition(action: .switchover, to: "dr")
        let enable = Transition(action: .enableStreaming, site: "dr", upstream: "prod")

        guard case .failure(let alone) = RoleMachine.applyAll([switchover], to: declared) else {
            Issue.record("switchover to an archive standby must be refused")
            return
        }
        #expect(alone.message.contains("site \"dr\" is archive-standby"))
        #expect(alone.message.contains("Add an enable-streaming transition before it."))

        let after = try RoleMachine.applyAll([enable, switchover], to: declared).get()
        #expect(after == ["prod": .streamingStandby, "dr": .primary])

        guard case .failure(let again) = RoleMachine.applyAll([enable, switchover, switchover], to: declared) else {
            Issue.record("a second switchover to the new primary must be refused")
            return
        }
        #expect(again.message.hasPrefix("transition 3 (switchover to dr) is illegal: site \"dr\" is primary"))
    }

    @Test func switchoverDemotesTheOldPrimaryToStreamingStandby() throws {
        let roles: [String: Role] = ["prod": .primary, "dr": .streamingStandby, "spare": .archiveStandby]
        let after = try RoleMachine.apply(Transition(action: .switchover, to: "dr"), position: 1, to: roles).get()
        #expect(after == ["prod": .streamingStandby, "dr": .primary, "spare": .archiveStandby])
    }

    @Test func failoverFencesTheOldPrimaryWhichRewindThenRepairs() throws {
        let failedOver = try RoleMachine.apply(Transition(action: .failover, to: "dr"), position: 1, to: declared).get()
        #expect(failedOver == ["prod": .fenced, "dr": .primary])
        let rewound = try RoleMachine.apply(Transition(action: .rewind, site: "prod", source: "dr"), position: 2, to: failedOver)
            .get()
        #expect(rewound == ["prod": .streamingStandby, "dr": .primary])
    }

    @Test func theDocumentedExampleEndsWithDrPrimary() throws {
        let plan = [
            Transition(action: .enableStreaming, site: "dr", upstream: "prod"),
            Transition(action: .switchover, to: "dr"),
            Transition(action: .failover, to: "prod"),
            Transition(action: .failback, to: "dr", method: .rewind),
        ]
        #expect(try RoleMachine.applyAll(plan, to: declared).get() == ["dr": .primary, "prod": .streamingStandby])
    }

    /// Refusals that are not about the subject's role: the message names the other site and what to do.
    static let otherRefusals: [(transitions: [Transition], site: String, fragment: String)] = [
        ([Transition(action: .enableStreaming, site: "dr", upstream: "dr")], "dr", "a site cannot stream from itself"),
        (
            [Transition(action: .failover, to: "dr"), Transition(action: .enableStreaming, site: "dr", upstream: "prod")],
            "dr", "transition 2 (enable-streaming dr from prod) is illegal: site \"dr\" is primary"
        ),
        ([Transition(action: .bootstrapStandby, site: "new")], "new", "no site named \"new\" in the plan"),
        (
            [Transition(action: .failover, to: "dr"), Transition(action: .rewind, site: "prod", source: "nowhere")],
            "nowhere", "source \"nowhere\" is not in the plan"
        ),
        (
            [
                Transition(action: .fence, site: "prod"), Transition(action: .rebuild, site: "prod"),
                Transition(action: .enableStreaming, site: "prod", upstream: "dr"),
            ],
            "dr", "upstream \"dr\" is archive-standby at that point of the plan; it must be primary or streaming-standby"
        ),
        (
            [Transition(action: .fence, site: "prod"), Transition(action: .rewind, site: "prod", source: "dr")],
            "dr", "source \"dr\" is archive-standby"
        ),
        (
            [Transition(action: .fence, site: "prod"), Transition(action: .enableStreaming, site: "dr", upstream: "prod")],
            "prod", "upstream \"prod\" is fenced"
        ),
        (
            [Transition(action: .fence, site: "prod"), Transition(action: .failback, to: "prod", method: .rewind)],
            "prod", "there is no primary to hand over from at that point of the plan; use failover instead"
        ),
    ]

    @Test(arguments: 0..<otherRefusals.count) func refusalsNameTheSiteAndWhatToDo(_ i: Int) {
        let (transitions, site, fragment) = Self.otherRefusals[i]
        guard case .failure(let refusal) = RoleMachine.applyAll(transitions, to: declared) else {
            Issue.record("\(transitions.map(\.summary)) must be refused")
            return
        }
        #expect(refusal.site == site)
        #expect(refusal.message.contains(fragment), "\(refusal.message)")
    }
}
