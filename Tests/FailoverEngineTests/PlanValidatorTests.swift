import Foundation
import Testing

@testable import FailoverEngine

/// The strict JSON parser under PlanValidator: positions, key order, duplicates, strictness.
struct PlanValidatorJSONParserTests {
    private func syntaxError(_ text: String) -> JSONParser.SyntaxError? { syntaxError(Data(text.utf8)) }

    private func syntaxError(_ data: Data) -> JSONParser.SyntaxError? {
        do {
            _ = try JSONParser.parse(data)
            return nil
        } catch {
            return error
        }
    }

    @Test func keepsKeyOrderAndNumberLiterals() throws {
        let document = try JSONParser.parse(Data(#"{"b": 1, "a": [6432.0, -1e3, true, null], "c": "\u00e9\n"}"#.utf8))
        #expect(document.value.objectMembers?.map(\.key) == ["b", "a", "c"])
        #expect(document.value["a"] == .array([.number("6432.0"), .number("-1e3"), .bool(true), .null]))
        #expect(document.value["c"] == .string("é\n"))
        #expect(document.value["a"]?.arrayValue?.first?.integerValue == nil)
        #expect(document.value["b"]?.integerValue == 1)
        #expect(document.duplicateKeys.isEmpty)
    }

    @Test func decodesSurrogatePairsAndSkipsAByteOrderMark() throws {
        let document = try JSONParser.parse(Data([0xEF, 0xBB, 0xBF]) + Data(#"{"k": "\ud83d\ude00"}"#.utf8))
        #expect(document.value["k"] == .string("😀"))
    }

    @Test func reportsDuplicateKeysWithTheirPathAndBothPositions() throws {
        let text = "{\n  \"sites\": [ { \"name\": \"a\",\n    \"name\": \"b\" } ]\n}"
        let document = try JSONParser.parse(Data(text.utf8))
        let duplicate = try #require(document.duplicateKeys.first)
        #expect(document.duplicateKeys.count == 1)
        #expect(duplicate.path.description == "$.sites[0].name")
        #expect((duplicate.firstLine, duplicate.firstColumn) == (2, 16))
        #expect((duplicate.line, duplicate.column) == (3, 5))
        #expect(document.value["sites"]?.arrayValue?.first?["name"] == .string("a"))
    }

    /// Each malformed document, the line and column the error must point at, and a fragment of its message.
    static let malformed: [(text: String, line: Int, column: Int, fragment: String)] = [
        ("", 1, 1, "the file is empty"),
        ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3, "expected ',' or '}' after the value of \"a\" (is a comma missing?)"),
        ("{\n  \"a\": [1,\n    2,\n  ]\n}", 3, 6, "trailing comma before ']'"),
        ("{\"a\": 1,}", 1, 8, "trailing comma before '}'"),
        ("{'a': 1}", 1, 2, "double quotes, not single quotes"),
        ("{a: 1}", 1, 2, "found the word 'a'"),
        ("{\"a\": True}", 1, 7, "found the word 'True'"),
        ("{\"a\": // note\n 1}", 1, 7, "comments are not allowed"),
        ("{\"a\": \"open\n}", 1, 7, "runs past the end of the line"),
        ("{\"a\": \"tab\there\"}", 1, 11, "control character U+0009"),
        ("{\"a\": \"C:\\data\"}", 1, 10, "invalid escape '\\d'"),
        ("{\"a\": \"\\ud800\"}", 1, 8, "high surrogate"),
        ("{\"a\": 012}", 1, 7, "leading zeros"),
        ("{\"a\": 1.}", 1, 9, "digit after the decimal point"),
        ("{\"a\": 1e999}", 1, 7, "too large"),
        ("{\"é\": \"ü\", \"b\": x}", 1, 17, "found the word 'x'"),
        ("[1, 2", 1, 6, "the array opened at line 1, column 1 is never closed"),
        ("{\"a\": {\"b\": 1}", 1, 15, "the object opened at line 1, column 1 is never closed"),
        ("{\"a\": 1}}", 1, 9, "after the end of the top-level value"),
        (String(repeating: "[", count: 200) + String(repeating: "]", count: 200), 1, 129, "nest deeper than 128"),
    ]

    @Test(arguments: 0..<malformed.count) func pointsAtTheLineAndColumnOfASyntaxError(_ i: Int) throws {
        let (text, line, column, fragment) = Self.malformed[i]
        let error = try #require(syntaxError(text), "\(text.debugDescription) should not parse")
        #expect((error.line, error.column) == (line, column), "\(text.debugDescription): \(error)")
        #expect(error.message.contains(fragment), "\(error.message)")
        #expect(error.description.hasPrefix("line \(line), column \(column): "))
    }

    @Test func rejectsInvalidUTF8WhereItIs() throws {
        let error = try #require(syntaxError(Data(#"{"a": "x"#.utf8) + Data([0xFF, 0x22, 0x7D])))
        #expect((error.line, error.column) == (1, 9))
        #expect(error.message.contains("invalid UTF-8 byte 0xFF"))
    }

    @Test func writesPathsWithBracketsForKeysThatAreNotIdentifiers() {
        let path = JSONPath.root.appending("sites").appending(1).appending("odd key").appending("a\"b")
        #expect(path.description == #"$.sites[1]["odd key"]["a\"b"]"#)
        #expect(JSONPath.root.description == "$")
    }
}

/// Files of this repository the tests read: the documented example must stay a valid plan.
enum PlanFixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func read(_ relativePath: String) throws -> String {
        try String(contentsOf: repository.appendingPathComponent(relativePath), encoding: .utf8)
    }

    /// The first ```json block of docs/plan-format.md: the example of the format, verbatim from the contract.
    static func documentedExample() throws -> String {
        let doc = try read("docs/plan-format.md")
        let start = try #require(doc.range(of: "```json\n")).upperBound
        let end = try #require(doc.range(of: "```", range: start..<doc.endIndex)).lowerBound
        return String(doc[start..<end])
    }

    /// The example plans under plans/ (none yet is fine; each one added is checked from then on).
    static func examplePlans() throws -> [(name: String, text: String)] {
        let directory = repository.appendingPathComponent("plans")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return try names.filter { $0.hasSuffix(".json") }.sorted().map { ($0, try read("plans/" + $0)) }
    }

    /// `text` with each `(old, new)` edit applied to the first occurrence of `old`, which must be there.
    static func edited(_ text: String, _ edits: [(String, String)]) throws -> String {
        var text = text
        for (old, new) in edits {
            let range = try #require(text.range(of: old), "the example no longer contains \(old)")
            text.replaceSubrange(range, with: new)
        }
        return text
    }
}

/// One kind of problem: how to make it from the documented example, and the path and message it must get.
struct BadPlan: Sendable, CustomTestStringConvertible {
    var kind: String
    var edits: [(String, String)]
    var path: String
    var message: String
    var hint = ""
    /// Whether docs/plan.schema.json can see this problem too (it cannot see names, references or roles).
    var schemaRejects = true
    var testDescription: String { kind }

    static let catalogue: [BadPlan] = [
        BadPlan(
            kind: "not JSON", edits: [(#""name": "xkube-dr","#, #""name": "xkube-dr""#)], path: "$",
            message:
                #"not valid JSON: line 4, column 3: expected ',' or '}' after the value of "name" (is a comma missing?), found '"'"#,
            hint: "strict JSON (RFC 8259)", schemaRejects: false),
        BadPlan(
            kind: "duplicate key", edits: [(#""name": "xkube-dr","#, #""name": "xkube-dr", "name": "other","#)], path: "$.name",
            message: #"key "name" appears twice in the same object (line 3, column 3 and line 3, column 23)"#,
            schemaRejects: false),
        BadPlan(
            kind: "version not 1", edits: [(#""version": 1"#, #""version": 2"#)], path: "$.version",
            message: "the plan: format version 2 is not supported; this failoverd reads version 1"),
        BadPlan(
            kind: "unknown action", edits: [(#""action": "switchover""#, #""action": "switch-over""#)],
            path: "$.transitions[1].action",
            message: #"transition 2: unknown action "switch-over""#,
            hint:
                #"did you mean "switchover"? The action must be one of: bootstrap-standby, enable-streaming, disable-streaming, fence, switchover, failover, rewind, rebuild, failback."#
        ),
        BadPlan(
            kind: "unknown site in site", edits: [(#""site": "dr", "upstream""#, #""site": "dr2", "upstream""#)],
            path: "$.transitions[0].site",
            message: #"transition 1 (enable-streaming dr2 from prod): no site named "dr2" ("site")"#,
            hint: #"did you mean "dr"? The sites in this plan are: prod, dr."#, schemaRejects: false),
        BadPlan(
            kind: "unknown site in to", edits: [(#""failover", "to": "prod""#, #""failover", "to": "production""#)],
            path: "$.transitions[2].to",
            message: #"transition 3 (failover to production): no site named "production" ("to")"#,
            hint: "The sites in this plan are: prod, dr.",
            schemaRejects: false),
        BadPlan(
            kind: "unknown site in upstream", edits: [(#""upstream": "prod""#, #""upstream": "prd""#)],
            path: "$.transitions[0].upstream",
            message: #"no site named "prd" ("upstream")"#, hint: #"did you mean "prod"?"#, schemaRejects: false),
        BadPlan(
            kind: "unknown site in source",
            edits: [
                (
                    #"{ "action": "failback", "to": "dr", "method": "rewind" }"#,
                    #"{ "action": "rewind", "site": "dr", "source": "primary" }"#
                )
            ],
            path: "$.transitions[3].source",
            message: #"transition 4 (rewind dr from primary): no site named "primary" ("source")"#, schemaRejects: false),
        BadPlan(
            kind: "missing field", edits: [(#", "stanza": "xkube""#, "")], path: "$.repository.stanza",
            message: #"repository: missing required field "stanza""#, hint: #"Add "stanza": "xkube"."#),
        BadPlan(
            kind: "mistyped field", edits: [(#""port": 6433"#, #""port": "6433""#)], path: "$.sites[1].instances[0].port",
            message: #"instance "dr-0": "port" must be an integer from 1 to 65535, found a string"#,
            hint: #"write it as "port": 6433"#),
        BadPlan(
            kind: "mistyped object",
            edits: [
                (#""policy": {"#, #""policy": [{"#), (#""archiveTimeoutSeconds": 120 }"#, #""archiveTimeoutSeconds": 120 }]"#),
            ],
            path: "$.policy", message: #"the plan: "policy" must be an object, found an array"#),
        BadPlan(
            kind: "null for an optional field", edits: [(#""stanza": "xkube""#, #""stanza": "xkube", "config": null"#)],
            path: "$.repository.config",
            message: #"repository: "config" must be an absolute path (a string starting with /), found null"#),
        BadPlan(
            kind: "empty name", edits: [(#""name": "xkube-dr""#, #""name": """#)], path: "$.name",
            message: #"the plan: "name" must not be empty"#),
        BadPlan(
            kind: "unknown role", edits: [(#""role": "archive-standby""#, #""role": "archive-stanby""#)], path: "$.sites[1].role",
            message: #"site "dr": unknown role "archive-stanby""#,
            hint:
                #"did you mean "archive-standby"? The role must be one of: none, primary, archive-standby, streaming-standby, fenced."#
        ),
        BadPlan(
            kind: "unknown driver",
            edits: [(#""driver": "local", "role": "archive-standby""#, #""driver": "kubernetes", "role": "archive-standby""#)],
            path: "$.sites[1].driver", message: #"site "dr": unknown driver "kubernetes""#,
            hint: "The driver must be one of: local, simulated."),
        BadPlan(
            kind: "unknown method", edits: [(#""method": "rewind""#, #""method": "pg_rewind""#)], path: "$.transitions[3].method",
            message: #"transition 4 (failback to dr by ?): unknown method "pg_rewind""#,
            hint: "The method must be one of: rewind, rebuild."),
        BadPlan(
            kind: "unknown sslmode", edits: [(#""user": "replicator""#, #""user": "replicator", "sslmode": "on""#)],
            path: "$.replication.sslmode",
            message: #"replication: unknown sslmode "on""#, hint: "disable, allow, prefer, require, verify-ca, verify-full"),
        BadPlan(
            kind: "missing field of the action", edits: [(#", "method": "rewind""#, "")], path: "$.transitions[3].method",
            message: #"transition 4 (failback to dr by ?): failback needs "method""#),
        BadPlan(
            kind: "field the action does not take",
            edits: [(#""switchover", "to": "dr""#, #""switchover", "to": "dr", "site": "prod""#)],
            path: "$.transitions[1].site", message: #"transition 2 (switchover to dr): "site" does not apply to switchover"#,
            hint: #"Remove it; switchover takes "to"."#),
        BadPlan(
            kind: "duplicate site name", edits: [(#"{ "name": "dr", "driver""#, #"{ "name": "prod", "driver""#)],
            path: "$.sites[1].name",
            message: #"site "prod" is declared twice (first at $.sites[0])"#, schemaRejects: false),
        BadPlan(
            kind: "duplicate instance name", edits: [(#""name": "dr-1""#, #""name": "prod-0""#)],
            path: "$.sites[1].instances[1].name",
            message: #"instance "prod-0" is declared twice (first at $.sites[0].instances[0])"#, schemaRejects: false),
        BadPlan(
            kind: "two instances on one host:port", edits: [(#""port": 6434"#, #""port": 6432"#)],
            path: "$.sites[1].instances[1].port",
            message: #"instances "prod-0" and "dr-1" both listen on 127.0.0.1:6432"#, schemaRejects: false),
        BadPlan(
            kind: "two instances on one data directory", edits: [(#""/var/lib/failoverd/dr-1""#, #""/var/lib/failoverd/dr-0/""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message: #"instances "dr-0" and "dr-1" both use the data directory /var/lib/failoverd/dr-0 on host 127.0.0.1"#,
            schemaRejects: false),
        BadPlan(
            kind: "two sites declared primary", edits: [(#""role": "archive-standby""#, #""role": "primary""#)],
            path: "$.sites[1].role",
            message: #"sites "prod" and "dr" are both declared primary"#),
        BadPlan(
            kind: "site with no instances",
            edits: [
                (#""sites": ["#, #""sites": [ { "name": "spare", "driver": "simulated", "role": "none", "instances": [] },"#)
            ],
            path: "$.sites[0].instances", message: #"site "spare" has no instances"#),
        BadPlan(
            kind: "port out of range", edits: [(#""port": 6434"#, #""port": 70000"#)], path: "$.sites[1].instances[1].port",
            message: #"instance "dr-1": port 70000 is out of range; it must be from 1 to 65535"#),
        BadPlan(
            kind: "relative dataDirectory", edits: [(#""/var/lib/failoverd/dr-1""#, #""dr-1""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message: #"instance "dr-1": "dataDirectory" must be an absolute path, found "dr-1""#),
        BadPlan(
            kind: "negative maxLagBytes", edits: [(#""maxLagBytes": 16777216"#, #""maxLagBytes": -1"#)],
            path: "$.policy.maxLagBytes",
            message: #"policy: "maxLagBytes" must be a whole number of bytes (0 or more), found -1"#),
        BadPlan(
            kind: "zero timeout", edits: [(#""stepTimeoutSeconds": 120"#, #""stepTimeoutSeconds": 0"#)],
            path: "$.policy.stepTimeoutSeconds",
            message: #"policy: "stepTimeoutSeconds" must be a number of seconds above 0, found 0"#),
        BadPlan(
            kind: "illegal transition", edits: [(#"{ "action": "enable-streaming", "site": "dr", "upstream": "prod" },"#, "")],
            path: "$.transitions[0].to",
            message:
                #"transition 1 (switchover to dr) is illegal: site "dr" is archive-standby at that point of the plan; switchover needs streaming-standby. Add an enable-streaming transition before it."#,
            hint:
                "Roles at that point of the plan: dr=archive-standby, prod=primary. The transitions after this one are checked as if it had succeeded.",
            schemaRejects: false),
        BadPlan(
            kind: "upstream in the wrong role",
            edits: [(#""transitions": ["#, #""transitions": [ { "action": "fence", "site": "prod" },"#)],
            path: "$.transitions[1].upstream",
            message:
                #"transition 2 (enable-streaming dr from prod): upstream "prod" is fenced at that point of the plan; it must be primary or streaming-standby"#,
            hint: "Roles at that point of the plan: dr=archive-standby, prod=fenced.", schemaRejects: false),
        BadPlan(
            kind: "password key", edits: [(#""user": "replicator""#, #""user": "replicator", "password": "hunter2""#)],
            path: "$.replication.password",
            message: #"field "password" looks like a password or other secret"#,
            hint: "put the password in the libpq passfile named by replication.passfile"),
        BadPlan(
            kind: "token key, deep", edits: [(#""port": 6432,"#, #""port": 6432, "apiToken": "hunter2","#)],
            path: "$.sites[0].instances[0].apiToken",
            message: #"field "apiToken" looks like a password or other secret"#),
        BadPlan(
            kind: "pass key", edits: [(#""stanza": "xkube""#, #""stanza": "xkube", "s3_pass": "hunter2""#)],
            path: "$.repository.s3_pass",
            message: #"field "s3_pass" looks like a password or other secret"#),
        BadPlan(
            kind: "password= in a value",
            edits: [(#""user": "replicator""#, #""user": "replicator", "options": "sslmode=require password=hunter2""#)],
            path: "$.replication.options", message: #"the value of "options" contains a password"#,
            hint: "libpq passfile named by replication.passfile"),
        BadPlan(
            kind: "credentials in a URL",
            edits: [(#""role": "primary","#, #""role": "primary", "conninfo": "postgresql://replicator:hunter2@db/postgres","#)],
            path: "$.sites[0].conninfo", message: #"the value of "conninfo" contains a password"#),
    ]
}

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

    @Test func theDocumentedExampleIsTheContractsExample() throws {
        // The shared design copy is the contract; where it is present (a developer machine), the docs must match it.
        guard let contract = try? String(contentsOfFile: "/work/shared/design/plan-format.md", encoding: .utf8) else { return }
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

/// docs/plan.schema.json: strict JSON, in step with the validator, and right about the plans it judges.
struct PlanValidatorSchemaTests {
    private func schema() throws -> JSONValue {
        let document = try JSONParser.parse(Data(try PlanFixtures.read("docs/plan.schema.json").utf8))
        #expect(document.duplicateKeys == [])
        return document.value
    }

    private func failures(_ text: String) throws -> [String] {
        let schema = try schema()
        return SchemaCheck(root: schema).failures(try JSONParser.parse(Data(text.utf8)).value, against: schema)
    }

    @Test func isDraft2020_12() throws {
        #expect(try schema()["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
    }

    @Test func acceptsTheDocumentedExampleAndTheExamplePlans() throws {
        let example = try PlanFixtures.documentedExample()
        #expect(try failures(example) == [])
        // Unknown keys are only warnings for the validator, so the schema allows them too.
        #expect(
            try failures(
                PlanFixtures.edited(example, [(#""user": "replicator""#, #""user": "replicator", "sslMode": "require""#)])) == [])
        for (name, text) in try PlanFixtures.examplePlans() {
            #expect(try failures(text) == [], "plans/\(name)")
        }
    }

    @Test(arguments: BadPlan.catalogue.filter(\.schemaRejects)) func rejectsWhatItCanSee(_ bad: BadPlan) throws {
        #expect(try failures(PlanFixtures.edited(PlanFixtures.documentedExample(), bad.edits)) != [])
    }

    @Test func saysWhatTheValidatorChecks() throws {
        let schema = try schema()
        let defs = try #require(schema["$defs"])
        guard case .object(_, let top) = PlanShape.plan else {
            Issue.record("the plan shape is an object")
            return
        }
        let objects: [(JSONValue?, [PlanShape.Field])] = [
            (schema, top), (defs["repository"], PlanShape.repository), (defs["replication"], PlanShape.replication),
            (defs["policy"], PlanShape.policy), (defs["site"], PlanShape.site), (defs["instance"], PlanShape.instance),
        ]
        for (object, fields) in objects {
            #expect(object?["properties"]?.objectMembers?.map(\.key) == fields.map(\.key))
            #expect(object?["required"] == .array(fields.filter(\.required).map { .string($0.key) }), "\(fields.map(\.key))")
        }
        func values(_ schema: JSONValue?) -> [String]? { schema?["enum"]?.arrayValue?.compactMap(\.stringValue) }
        func oneOf(_ fields: [PlanShape.Field], _ key: String) -> [String]? {
            guard case .oneOf(let values, _)? = fields.first(where: { $0.key == key })?.kind else { return nil }
            return values
        }
        #expect(values(defs["role"]) == Role.allCases.map(\.rawValue))
        #expect(values(defs["site"]?["properties"]?["driver"]) == oneOf(PlanShape.site, "driver"))
        #expect(values(defs["repository"]?["properties"]?["type"]) == oneOf(PlanShape.repository, "type"))
        #expect(values(defs["replication"]?["properties"]?["sslmode"]) == oneOf(PlanShape.replication, "sslmode"))
        #expect(values(defs["transition"]?["properties"]?["method"]) == FailbackMethod.allCases.map(\.rawValue))
        #expect(values(defs["transition"]?["properties"]?["action"]) == Action.allCases.map(\.rawValue))
        #expect(defs["instance"]?["properties"]?["port"]?["maximum"] == .number("65535"))

        let fields = PlanShape.transitionFields.map(\.key)
        let rules = defs["transition"]?["allOf"]?.arrayValue ?? []
        #expect(rules.count == Action.allCases.count)
        for action in Action.allCases {
            let rule = rules.first { $0["if"]?["properties"]?["action"]?["const"] == .string(action.rawValue) }
            #expect(rule?["then"]?["required"] == .array(action.requiredFields.map(JSONValue.string)), "\(action.rawValue)")
            let forbidden = rule?["then"]?["properties"]?.objectMembers?.filter { $0.value == .bool(false) }.map(\.key)
            #expect(forbidden == fields.filter { !action.requiredFields.contains($0) }, "\(action.rawValue)")
        }
        #expect(defs["secretFree"]?["propertyNames"]?["not"]?["pattern"] == .string(PlanValidator.secretKeyPattern))
        #expect(defs["secretFree"]?["not"]?["pattern"] == .string(PlanValidator.secretValuePattern))
    }
}

/// A JSON Schema 2020-12 evaluator for exactly the keywords docs/plan.schema.json uses. Any other keyword is a
/// failure, so a schema edit cannot slip a rule past this check unevaluated.
struct SchemaCheck {
    let root: JSONValue

    func failures(_ instance: JSONValue, against schema: JSONValue, at path: String = "$") -> [String] {
        switch schema {
        case .bool(true): return []
        case .bool(false): return ["\(path): not allowed"]
        case .object(let keywords): return keywords.flatMap { check($0.key, $0.value, in: schema, instance, path) }
        default: return ["\(path): a schema must be an object or a boolean"]
        }
    }

    private func check(_ keyword: String, _ value: JSONValue, in schema: JSONValue, _ instance: JSONValue, _ path: String)
        -> [String]
    {
        let fail = ["\(path): \(keyword) \(value)"]
        switch (keyword, instance) {
        case ("$schema", _), ("$id", _), ("$defs", _), ("title", _), ("description", _), ("minContains", _), ("maxContains", _),
            ("then", _):
            return []
        case ("$ref", _):
            guard let name = value.stringValue?.split(separator: "/").last, let target = root["$defs"]?[String(name)] else {
                return fail
            }
            return failures(instance, against: target, at: path)
        case ("type", _):
            return Self.has(instance, type: value.stringValue ?? "") ? [] : fail
        case ("const", _):
            return Self.same(instance, value) ? [] : fail
        case ("enum", _):
            return (value.arrayValue ?? []).contains { Self.same(instance, $0) } ? [] : fail
        case ("required", .object):
            return (value.arrayValue ?? []).compactMap(\.stringValue).filter { instance[$0] == nil }.map {
                "\(path): missing \($0)"
            }
        case ("properties", .object(let members)):
            return members.flatMap { member in
                value[member.key].map { failures(member.value, against: $0, at: "\(path).\(member.key)") } ?? []
            }
        case ("additionalProperties", .object(let members)):
            let declared = schema["properties"]?.objectMembers?.map(\.key) ?? []
            return members.filter { !declared.contains($0.key) }.flatMap {
                failures($0.value, against: value, at: "\(path).\($0.key)")
            }
        case ("propertyNames", .object(let members)):
            return members.flatMap { failures(.string($0.key), against: value, at: "\(path) key \($0.key)") }
        case ("items", .array(let elements)):
            return elements.enumerated().flatMap { failures($1, against: value, at: "\(path)[\($0)]") }
        case ("minItems", .array(let elements)):
            return elements.count >= value.integerValue ?? 0 ? [] : fail
        case ("contains", .array(let elements)):
            let matching = elements.filter { failures($0, against: value).isEmpty }.count
            let low = schema["minContains"]?.integerValue ?? 1
            let high = schema["maxContains"]?.integerValue ?? Int.max
            return (low...high).contains(matching) ? [] : fail
        case ("minimum", .number), ("maximum", .number), ("exclusiveMinimum", .number):
            let x = instance.doubleValue ?? .nan
            let limit = value.doubleValue ?? .nan
            return (keyword == "minimum" ? x >= limit : keyword == "maximum" ? x <= limit : x > limit) ? [] : fail
        case ("minLength", .string(let text)):
            return text.unicodeScalars.count >= value.integerValue ?? 0 ? [] : fail
        case ("pattern", .string(let text)):
            guard let regex = try? NSRegularExpression(pattern: value.stringValue ?? "") else { return fail }
            return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil ? fail : []
        case ("allOf", _):
            return (value.arrayValue ?? []).flatMap { failures(instance, against: $0, at: path) }
        case ("not", _):
            return failures(instance, against: value, at: path).isEmpty ? fail : []
        case ("if", _):
            guard failures(instance, against: value, at: path).isEmpty, let then = schema["then"] else { return [] }
            return failures(instance, against: then, at: path)
        case ("required", _), ("properties", _), ("additionalProperties", _), ("propertyNames", _), ("items", _), ("minItems", _),
            ("contains", _), ("minimum", _), ("maximum", _), ("exclusiveMinimum", _), ("minLength", _), ("pattern", _):
            return []  // applies to another type of value
        default:
            return ["\(path): unsupported keyword \(keyword)"]
        }
    }

    private static func has(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null),
            ("number", .number):
            true
        case ("integer", .number(let literal)): Double(literal).map { $0 == $0.rounded() } ?? false
        default: false
        }
    }

    private static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if case .number(let x) = a, case .number(let y) = b { return Double(x) == Double(y) }
        return a == b
    }
}
