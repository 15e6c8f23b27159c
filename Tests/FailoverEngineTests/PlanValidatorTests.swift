import Foundation
import Testing

@testable import FailoverEngine

/// PlanValidator: the documented example is valid, and each kind of problem is reported at its path.
struct PlanValidatorTests {
    private func validate(_ text: String) -> PlanValidation { PlanValidator.validate(Data(text.utf8)) }

    @Test func theDocumentedExampleIsValid() throws {
        let validation = validate(try PlanFixtures.documentedExample())
        #expect(validation.problems == [])
        #expect(
            validation.summary
                == #"plan "xkube-dr" is valid: 2 sites, 3 instances, 4 transitions; roles after it: dr=primary, prod=streaming-standby"#
        )
        let plan = try #require(validation.plan)
        #expect(plan.sites.map(\.name) == ["prod", "dr"])
        #expect(plan.site(named: "dr")?.followers.map(\.name) == ["dr-1"])
        #expect(plan.transitions.last == Transition(action: .failback, to: "dr", method: .rewind))
        #expect(plan.replication.effectiveRewindUser == "rewinder")
    }

    static let contractPath = "/work/shared/design/plan-format.md"

    // The shared design copy is the contract; where it is present (a developer machine), the docs must match
    // it. Where it is missing the test is reported skipped, never passed.
    @Test(
        .enabled(
            if: FileManager.default.fileExists(atPath: PlanValidatorTests.contractPath),
            "the shared design copy \(PlanValidatorTests.contractPath) is not on this machine"))
    func theDocumentedExampleIsTheContractsExample() throws {
        let contract = try String(contentsOfFile: Self.contractPath, encoding: .utf8)
        #expect(contract.contains(try PlanFixtures.documentedExample()))
    }

    @Test func theExamplePlansAreValid() throws {
        for (name, text) in try PlanFixtures.examplePlans() {
            let validation = validate(text)
            #expect(validation.errors == [], "plans/\(name): \(validation.errors)")
        }
    }

    @Test(arguments: BadPlan.catalogue) func reportsEachKindOfProblemAtItsPath(_ bad: BadPlan) throws {
        let validation = validate(try PlanFixtures.edited(PlanFixtures.documentedExample(), bad.edits))
        let problem = try #require(
            validation.problems.first { $0.path == bad.path && $0.message.contains(bad.message) },
            "expected \(bad.path): \(bad.message)\ngot:\n\(validation.problems.map(\.description).joined(separator: "\n"))")
        #expect(problem.severity == .error)
        #expect(validation.errors.filter { $0.path == bad.path }.count == 1, "reported once")
        #expect(bad.hint.isEmpty || problem.hint.contains(bad.hint), "\(problem.hint)")
        #expect(validation.plan == nil)
        let invalid = ["not JSON": "plan is not valid JSON: line 4, column 3", "empty name": "plan is invalid: "][
            bad.kind, default: #"plan "xkube-dr" is invalid: "#]
        #expect(validation.summary.hasPrefix(invalid), "\(validation.summary)")
        for other in validation.problems {
            #expect(!other.description.contains("hunter2"), "a secret reached a message: \(other)")
        }
    }

    @Test func theDocumentedProblemIsWhatTheValidatorPrints() throws {
        let doc = try PlanFixtures.read("docs/plan-format.md")
        let start = try #require(doc.range(of: "```\nerror: ")).lowerBound
        let block = doc[doc.index(start, offsetBy: 4)...].prefix { $0 != "`" }
        let text = try PlanFixtures.edited(
            PlanFixtures.documentedExample(), [(#"{ "action": "enable-streaming", "site": "dr", "upstream": "prod" },"#, "")])
        #expect(validate(text).problems.map(\.description).joined(separator: "\n") + "\n" == block)
    }

    @Test func reportsEveryProblemAtOnce() throws {
        let text = try PlanFixtures.edited(
            PlanFixtures.documentedExample(),
            [
                (#""version": 1"#, #""version": 3"#),
                (#""user": "replicator""#, #""user": "replicator", "secret": "hunter2""#),
                (#""driver": "local", "role": "archive-standby""#, #""driver": "docker", "role": "archive-standby""#),
                (#""port": 6434"#, #""port": 0"#),
                (#""upstream": "prod""#, #""upstream": "main""#),
                (#""failover", "to": "prod""#, #""failover", "to": "dr""#),
            ])
        let validation = validate(text)
        let expected: [(path: String, message: String)] = [
            ("$.version", "format version 3 is not supported"),
            ("$.sites[1].driver", #"site "dr": unknown driver "docker""#),
            ("$.sites[1].instances[1].port", "port 0 is out of range"),
            ("$.replication.secret", #"field "secret" looks like a password"#),
            ("$.transitions[0].upstream", #"no site named "main""#),
            ("$.transitions[2].to", #"transition 3 (failover to dr) is illegal: site "dr" is primary"#),
            ("$.transitions[3].to", #"transition 4 (failback to dr by rewind) is illegal: site "dr" is primary"#),
        ]
        #expect(validation.problems.map(\.path) == expected.map(\.path), "\(validation.problems.map(\.description))")
        for (problem, (path, message)) in zip(validation.problems, expected) {
            #expect(problem.path == path && problem.message.contains(message), "\(problem)")
        }
        #expect(validation.summary == #"plan "xkube-dr" is invalid: 7 errors"#)
        #expect(validation.plan == nil && !validation.isValid)
    }

    @Test func keepsCheckingRolesAfterAnIllegalTransitionAsIfItHadSucceeded() throws {
        // Without enable-streaming the switchover is illegal; assumed done, it leaves dr primary, so the
        // failover to prod is legal and a second switchover to dr is not (dr is fenced by then).
        let text = try PlanFixtures.edited(
            PlanFixtures.documentedExample(),
            [
                (#"{ "action": "enable-streaming", "site": "dr", "upstream": "prod" },"#, ""),
                (#"{ "action": "failback", "to": "dr", "method": "rewind" }"#, #"{ "action": "switchover", "to": "dr" }"#),
            ])
        let validation = validate(text)
        #expect(validation.problems.map(\.path) == ["$.transitions[0].to", "$.transitions[2].to"])
        #expect(
            validation.problems.last?.message.contains(#"transition 3 (switchover to dr) is illegal: site "dr" is fenced"#)
                == true)
        #expect(validation.problems.last?.hint.hasPrefix("Roles at that point of the plan: dr=fenced, prod=primary.") == true)
    }

    @Test func anUnknownKeyIsAWarningAndThePlanStaysValid() throws {
        let text = try PlanFixtures.edited(
            PlanFixtures.documentedExample(), [(#""user": "replicator""#, #""user": "replicator", "sslMode": "require""#)])
        let validation = validate(text)
        #expect(validation.isValid)
        let warning = try #require(validation.warnings.first)
        #expect(validation.problems.count == 1)
        #expect(warning.path == "$.replication.sslMode")
        #expect(warning.message == #"replication: unknown field "sslMode" is ignored"#)
        #expect(warning.hint.hasPrefix(#"did you mean "sslmode"?"#))
        #expect(validation.summary.hasSuffix("roles after it: dr=primary, prod=streaming-standby (1 warning)"))
        #expect(validation.plan?.replication.sslmode == nil)
    }

    @Test func aDocumentThatIsNotAnObjectIsOneProblem() {
        let validation = validate("[]")
        #expect(validation.problems.map(\.path) == ["$"])
        #expect(validation.problems.first?.message == "the plan must be a JSON object, found an array")
    }

    @Test func noFieldOfTheFormatLooksLikeASecret() {
        let shapes: [[PlanShape.Field]] = [
            PlanShape.repository, PlanShape.replication, PlanShape.policy, PlanShape.site, PlanShape.instance,
            PlanShape.transitionFields,
        ]
        guard case .object(_, let top) = PlanShape.plan else {
            Issue.record("the plan shape is an object")
            return
        }
        for key in (shapes.flatMap { $0 } + top).map(\.key) {
            #expect(!PlanValidator.looksLikeSecretKey(key), "\(key)")
        }
        for key in [
            "password", "PGPASSWORD", "passwd", "sslpassword", "passphrase", "clientSecret", "apiToken", "pass", "db_pass",
            "adminPwd", "PWD",
        ] {
            #expect(PlanValidator.looksLikeSecretKey(key), "\(key)")
        }
        for key in ["passfile", "pass_file", "passport", "bypass", "compass", "sslmode"] {
            #expect(!PlanValidator.looksLikeSecretKey(key), "\(key)")
        }
    }
}
