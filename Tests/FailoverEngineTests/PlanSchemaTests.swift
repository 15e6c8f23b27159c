import Foundation
import Testing

@testable import FailoverEngine

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

    @Test func itsCharacterSetsAgreeWithTheValidators() throws {
        let schema = try schema()
        let defs = try #require(schema["$defs"])
        let check = SchemaCheck(root: schema)
        let samples: [(String, [String], (String) -> String?)] = [
            (
                "name",
                [
                    "dr-0", "a", "x.y_z", "-x", ".x", "a b", "a$", "", String(repeating: "n", count: 63), String(repeating: "n", count: 64),
                    "dr\u{0}",
                ],
                PlanValues.nameProblem
            ),
            ("roleName", ["postgres", "_x", "1x", "a-b", "A_b9", "a;b"], PlanValues.roleProblem),
            ("osUser", ["failoverd", "root", "Root", "_pg", "pg-1", "1pg", "roots"], PlanValues.osUserProblem),
            (
                "path",
                [
                    "/a", "/", "/a/", "/a//b", "/a/./b", "/a/../b", "/a/.b", "/a/..b", "a/b", "/a b", "/a$b",
                    "/" + String(repeating: "p", count: 1100),
                ],
                { PlanValues.pathProblem($0) }
            ),
            (
                "host",
                [
                    "127.0.0.1", "::1", "localhost", "127.evil.example", "999.1.1.1", "127.1", "a..b", "-a.b", "db-1.example.com",
                    "fe80::1%eth0", "[::1]", "01.2.3.4",
                ],
                PlanValues.hostProblem
            ),
        ]
        for (name, values, problem) in samples {
            let definition = try #require(defs[name])
            for value in values {
                let schemaAccepts = check.failures(.string(value), against: definition).isEmpty
                #expect(schemaAccepts == (problem(value) == nil), "\(name) \(PlanValues.quoted(value))")
            }
        }
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
        case ("maxItems", .array(let elements)):
            return elements.count <= value.integerValue ?? 0 ? [] : fail
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
        case ("maxLength", .string(let text)):
            return text.unicodeScalars.count <= value.integerValue ?? 0 ? [] : fail
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
            ("maxItems", _),
            ("contains", _), ("minimum", _), ("maximum", _), ("exclusiveMinimum", _), ("minLength", _), ("maxLength", _), ("pattern", _):
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
