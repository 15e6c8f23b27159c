import Foundation
import Testing

@testable import FailoverEngine

/// A fleet file and member plans in a fresh directory, made from the shipped example
/// (plans/fleet-evacuate-dc1.json and its member plans), each edit applied to a copy.
struct FleetFiles {
    let directory: String

    /// The shipped example's member names, in its order.
    static let members = ["auth", "billing", "orders", "search", "sessions", "ledger"]

    /// Copies the shipped example's member plans into a fresh directory.
    init() throws {
        directory = CLI.tempDirectory("failoverd-fleet-files")
        try FileManager.default.createDirectory(atPath: directory + "/members", withIntermediateDirectories: true)
        for m in Self.members {
            try FileManager.default.copyItem(
                atPath: CLI.packageRoot + "/plans/fleet-evacuate-dc1/\(m).json", toPath: directory + "/members/\(m).json")
        }
    }

    /// The shipped example's fleet file, its plan paths pointing at the copies.
    static func example() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: CLI.packageRoot + "/plans/fleet-evacuate-dc1.json"))
        var fleet = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        fleet["members"] = members.map { ["name": $0, "plan": "members/\($0).json"] }
        return fleet
    }

    /// Writes `fleet` as DIR/NAME.json and returns its path.
    @discardableResult
    func write(_ fleet: [String: Any], _ name: String = "fleet") throws -> String {
        let path = directory + "/\(name).json"
        try JSONSerialization.data(withJSONObject: fleet, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Rewrites member `name`'s plan with `edit` applied to its JSON object.
    func editPlan(_ name: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = directory + "/members/\(name).json"
        var plan = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&plan)
        try JSONSerialization.data(withJSONObject: plan, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// fleet.json: every problem at once, with the member and the JSON path; invalid fleets change nothing.
struct FleetValidatorTests {
    @Test func theShippedExampleIsValid() throws {
        let result = FleetValidator.validate(file: CLI.packageRoot + "/plans/fleet-evacuate-dc1.json")
        #expect(result.errors == [], "\(result.problems)")
        let fleet = try #require(result.fleet)
        #expect(fleet.members.map(\.name) == FleetFiles.members)
        #expect(fleet.members.count >= 6)
        #expect(fleet.concurrency == 4 && fleet.brake == 1)
        #expect(fleet.dependencies["billing"] == ["auth"])
        let actions = Set(fleet.members.flatMap { $0.plan.transitions.map(\.action) })
        #expect(actions == [.switchover, .failover])
        // Distinct fixed ports and /tmp/failoverd-sandbox/<plan name> paths, used by no other shipped plan.
        let others = try PlanFixtures.examplePlans().filter { !$0.name.hasPrefix("fleet-evacuate-dc1/") }.map {
            try PlanValidator.validate(Data($0.text.utf8)).plan!
        }
        let otherPorts = Set(others.flatMap { $0.allInstances.map(\.instance.port) })
        for m in fleet.members {
            for (_, i) in m.plan.allInstances {
                #expect(!otherPorts.contains(i.port), "\(m.name): port \(i.port) is used by another shipped plan")
                #expect(i.dataDirectory.hasPrefix("/tmp/failoverd-sandbox/\(m.plan.name)/"))
            }
            #expect(!others.contains { $0.name == m.plan.name })
        }
    }

    @Test func defaultsAndTiers() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        var fleet = try FleetFiles.example()
        fleet["concurrency"] = nil
        fleet["brake"] = nil
        fleet["order"] = [
            "tiers": [["auth", "orders"], ["billing", "search"], ["sessions", "ledger"]], "after": ["ledger": ["billing"]],
        ]
        let result = FleetValidator.validate(file: try files.write(fleet))
        let f = try #require(result.fleet, "\(result.problems)")
        #expect(f.concurrency == 4 && f.brake == 1)
        #expect(f.dependencies["auth"] == [])
        #expect(Set(f.dependencies["billing"] ?? []) == ["auth", "orders"])
        #expect(Set(f.dependencies["ledger"] ?? []) == ["billing", "search"])
    }

    /// The issue's invalid fleets, all in one file: every problem is reported at once, naming the member and path.
    @Test func everyProblemAtOnce() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        // sessions listens where orders' standby does: a site shared by two members.
        try files.editPlan("sessions") { plan in
            var sites = plan["sites"] as! [[String: Any]]
            var instances = sites[1]["instances"] as! [[String: Any]]
            instances[0]["port"] = 6705
            sites[1]["instances"] = instances
            plan["sites"] = sites
        }
        var fleet = try FleetFiles.example()
        var members = fleet["members"] as! [[String: String]]
        members.append(["name": "ghost", "plan": "members/ghost.json"])  // missing member file
        members.append(["name": "auth", "plan": "members/ledger.json"])  // duplicate member
        fleet["members"] = members
        fleet["concurrency"] = 0
        fleet["order"] = ["after": ["billing": ["auth"], "auth": ["orders"], "orders": ["billing"]]]  // a cycle
        let result = FleetValidator.validate(file: try files.write(fleet))
        #expect(!result.isValid)
        func has(_ path: String, _ text: String, member: String? = nil) {
            #expect(
                result.errors.contains { $0.path == path && $0.message.contains(text) && (member == nil || $0.member == member) },
                "no error at \(path) saying \(text): \(result.errors.map { "\($0.path): \($0.message)" })")
        }
        has("$.concurrency", "concurrency 0 is out of range")
        has("$.members[6].plan", "cannot read plan file members/ghost.json")
        has("$.members[7].name", "member \"auth\" is declared twice (first at $.members[0])", member: "auth")
        #expect(
            result.errors.contains {
                $0.path.hasPrefix("$.order.after.")
                    && $0.message.contains("cycle: \"auth\" waits for \"orders\" waits for \"billing\" waits for \"auth\"")
            }, "\(result.errors.map(\.message))")
        has("$.members[4].plan", "members \"orders\" and \"sessions\" share a site", member: "sessions")
        #expect(result.errors.count == 5, "\(result.errors.map(\.message))")
    }

    @Test func aMemberPlanProblemNamesTheMemberItsFileAndItsPath() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        try files.editPlan("orders") { plan in
            var sites = plan["sites"] as! [[String: Any]]
            sites[1]["role"] = "primry"
            plan["sites"] = sites
        }
        let path = try files.write(try FleetFiles.example())
        let result = FleetValidator.validate(file: path)
        let problem = try #require(result.errors.first)
        #expect(
            problem.member == "orders" && problem.inMemberPlan && problem.path == "$.sites[1].role" && problem.file == "members/orders.json"
        )
        #expect(problem.message.contains("unknown role \"primry\""))
        let text = FleetLoader.describe(result.problems, file: path)
        #expect(
            text.contains("error member \"orders\" (members/orders.json) $.sites[1].role: site \"dc2\": unknown role \"primry\""), "\(text)"
        )
    }

    @Test func orderProblems() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        var fleet = try FleetFiles.example()
        fleet["order"] = [
            "tiers": [["auth", "orders", "auth"], ["billng"]], "after": ["ledger": ["ledger"], "nobody": ["auth"]], "afterr": true,
        ]
        let result = FleetValidator.validate(file: try files.write(fleet))
        let messages = result.problems.map { "\($0.severity) \($0.path): \($0.message)" }
        for expected in [
            "error $.order.tiers[0][2]: order: member \"auth\" is in tier 1 and again in tier 1",
            "error $.order.tiers[1][0]: order: tier 2: no member named \"billng\"",
            "error $.order.tiers: order: member \"search\" is in no tier",
            "error $.order.after.ledger[0]: order.after: member \"ledger\" waits for itself",
            "error $.order.after.nobody: order.after: no member named \"nobody\"",
            "warning $.order.afterr: order: unknown field \"afterr\" is ignored",
        ] {
            #expect(messages.contains(expected), "missing \(expected) in \(messages)")
        }
        #expect(result.errors.first { $0.path == "$.order.tiers[1][0]" }?.hint.contains("did you mean \"billing\"?") == true)
    }

    @Test func nestedDataDirectoriesAndSharedStanzasAcrossMembers() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        try files.editPlan("ledger") { plan in
            var repository = plan["repository"] as! [String: Any]
            repository["path"] = "/tmp/failoverd-sandbox/fleet-dc1-auth/repo"
            repository["stanza"] = "auth"
            plan["repository"] = repository
            var sites = plan["sites"] as! [[String: Any]]
            var instances = sites[0]["instances"] as! [[String: Any]]
            instances[0]["dataDirectory"] = "/tmp/failoverd-sandbox/fleet-dc1-auth/dc1-0/inner"
            sites[0]["instances"] = instances
            plan["sites"] = sites
        }
        let result = FleetValidator.validate(file: try files.write(try FleetFiles.example()))
        #expect(result.errors.contains { $0.path == "$.members[5].plan" && $0.message.contains("pgBackRest stanza auth") })
        #expect(result.errors.contains { $0.path == "$.members[5].plan" && $0.message.contains("lies inside member \"auth\"'s") })
    }

    @Test func shapeProblems() throws {
        let files = try FleetFiles()
        defer { files.remove() }
        let cases: [(String, String)] = [
            (#"{"version": 2, "name": "x", "members": [{"plan": "members/auth.json"}]}"#, "$.version"),
            (#"{"version": 1, "name": "a b", "members": [{"plan": "members/auth.json"}]}"#, "$.name"),
            (#"{"version": 1, "name": "x", "members": []}"#, "$.members"),
            (#"{"version": 1, "name": "x", "members": ["members/auth.json"]}"#, "$.members[0]"),
            (#"{"version": 1, "name": "x", "members": [{"plan": "members/auth.json"}], "brake": 0}"#, "$.brake"),
            (#"{"version": 1, "name": "x", "members": [{"plan": "members/auth.json"}], "concurrency": 1.5}"#, "$.concurrency"),
            (#"{"version": 1, "name": "x", "members": [{"plan": "members/auth.json"}], "order": []}"#, "$.order"),
            (#"{"version": 1, "name": "x", "name": "y", "members": [{"plan": "members/auth.json"}]}"#, "$.name"),
            (#"{"version": 1, "name": "x", "members": [{"plan": "members/auth.json", "token": "s3cr3t"}]}"#, "$.members[0].token"),
            (#"{"version": 1, "name": "x", "members": [{"plan": "members/auth.json"}],}"#, "$"),
        ]
        for (text, path) in cases {
            let file = files.directory + "/shape.json"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let result = FleetValidator.validate(file: file)
            #expect(result.errors.map(\.path) == [path], "\(text): \(result.errors.map { "\($0.path): \($0.message)" })")
        }
    }

    @Test("invalid fleets exit 2 with every problem and change nothing", arguments: ["run", "plan", "validate", "drill"])
    func invalidFleetsExit2(verb: String) throws {
        let files = try FleetFiles()
        defer { files.remove() }
        var fleet = try FleetFiles.example()
        fleet["concurrency"] = 0
        var members = fleet["members"] as! [[String: String]]
        members.append(["plan": "members/missing.json"])
        fleet["members"] = members
        let path = try files.write(fleet)
        let state = files.directory + "/state"
        let r = try CLI.run(["fleet", verb, path] + (verb == "validate" ? [] : ["--state", state]))
        #expect(r.status == 2, "\(r.stdout) \(r.stderr)")
        let output = r.stdout + r.stderr
        #expect(output.contains("$.concurrency: the fleet: concurrency 0 is out of range"), "\(output)")
        #expect(output.contains("$.members[6].plan: member \"members[6]\": cannot read plan file members/missing.json"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: state), "an invalid fleet created \(state)")
    }
}

/// docs/fleet.schema.json: strict JSON, in step with the validator, and right about the fleets it judges.
struct FleetSchemaTests {
    private func schema() throws -> JSONValue {
        let document = try JSONParser.parse(Data(try PlanFixtures.read("docs/fleet.schema.json").utf8))
        #expect(document.duplicateKeys == [])
        return document.value
    }

    private func failures(_ text: String) throws -> [String] {
        let schema = try schema()
        return SchemaCheck(root: schema).failures(try JSONParser.parse(Data(text.utf8)).value, against: schema)
    }

    /// The first ```json block of docs/fleet.md.
    static func documentedExample() throws -> String {
        let doc = try PlanFixtures.read("docs/fleet.md")
        let start = try #require(doc.range(of: "```json\n")).upperBound
        let end = try #require(doc.range(of: "```", range: start..<doc.endIndex)).lowerBound
        return String(doc[start..<end])
    }

    @Test func acceptsTheDocumentedExampleAndTheExampleFleets() throws {
        #expect(try schema()["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        let fleets = try PlanFixtures.exampleFleets()
        #expect(!fleets.isEmpty)
        for (name, text) in fleets { #expect(try failures(text) == [], "plans/\(name)") }
        #expect(try failures(Self.documentedExample()) == [])
        // The documented example is the shipped one, and valid beside the shipped member plans.
        let directory = CLI.tempDirectory("failoverd-fleet-doc")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.copyItem(atPath: CLI.packageRoot + "/plans/fleet-evacuate-dc1", toPath: directory + "/fleet-evacuate-dc1")
        try Self.documentedExample().write(toFile: directory + "/fleet.json", atomically: true, encoding: .utf8)
        let documented = FleetValidator.validate(file: directory + "/fleet.json")
        #expect(documented.problems == [], "\(documented.problems)")
        #expect(
            documented.fleet == (try FleetLoader.load(CLI.packageRoot + "/plans/fleet-evacuate-dc1.json")).withFiles(of: documented.fleet))
    }

    @Test(arguments: [
        (#""version": 1"#, #""version": 2"#), (#""name": "evacuate-dc1""#, #""name": "a b""#), (#""concurrency": 4"#, #""concurrency": 0"#),
        (#""concurrency": 4"#, #""concurrency": 257"#), (#""brake": 1"#, #""brake": 0"#),
        (#"{ "name": "auth", "plan": "fleet-evacuate-dc1/auth.json" }"#, #""fleet-evacuate-dc1/auth.json""#),
        (#"{ "name": "auth", "plan": "fleet-evacuate-dc1/auth.json" }"#, #"{ "name": "auth" }"#),
        (#""order": { "after": { "billing": ["auth"] } }"#, #""order": { "after": { "billing": [] } }"#),
        (#""order": { "after": { "billing": ["auth"] } }"#, #""order": { "tiers": [] }"#),
    ])
    func rejectsWhatItCanSee(_ edit: (String, String)) throws {
        let text = try PlanFixtures.edited(Self.documentedExample(), [edit])
        #expect(try failures(text) != [], "\(edit.1)")
    }

    @Test func itsFieldsAndNamesAreTheValidators() throws {
        let schema = try schema()
        #expect(schema["properties"]?.objectMembers?.map(\.key) == FleetValidator.fields)
        #expect(schema["$defs"]?["member"]?["properties"]?.objectMembers?.map(\.key) == FleetValidator.memberFields)
        #expect(schema["$defs"]?["order"]?["properties"]?.objectMembers?.map(\.key) == FleetValidator.orderFields)
        let name = try #require(schema["$defs"]?["name"])
        for value in [
            "dr-0", "a", "x.y_z", "-x", ".x", "a b", "a$", "", String(repeating: "n", count: 63), String(repeating: "n", count: 64),
        ] {
            let accepts = SchemaCheck(root: schema).failures(.string(value), against: name).isEmpty
            #expect(accepts == (PlanValues.nameProblem(value) == nil), "\(PlanValues.quoted(value))")
        }
    }
}

extension Fleet {
    /// This fleet with the plan file paths of `other` (two files of one fleet name their plans differently).
    func withFiles(of other: Fleet?) -> Fleet {
        var copy = self
        for i in copy.members.indices { copy.members[i].planFile = other?.members[i].planFile ?? copy.members[i].planFile }
        return copy
    }
}
