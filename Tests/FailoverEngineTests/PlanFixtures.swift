import Foundation
import Testing

@testable import FailoverEngine

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

    /// The example plans under plans/ (none yet is fine; each one added is checked from then on): the plans
    /// at its top, and the member plans of the example fleets in its subdirectories (`fleet-x/member.json`).
    /// Fleet files (`fleet-*.json`) are not plans: see ``exampleFleets()``.
    static func examplePlans() throws -> [(name: String, text: String)] {
        let directory = repository.appendingPathComponent("plans")
        let names = (try? FileManager.default.subpathsOfDirectory(atPath: directory.path)) ?? []
        return try names.filter { $0.hasSuffix(".json") && !$0.hasPrefix("fleet-") || $0.hasPrefix("fleet-") && $0.contains("/") }.sorted()
            .map { ($0, try read("plans/" + $0)) }
    }

    /// The example fleet files under plans/ (`fleet-*.json`).
    static func exampleFleets() throws -> [(name: String, text: String)] {
        let directory = repository.appendingPathComponent("plans")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return try names.filter { $0.hasPrefix("fleet-") && $0.hasSuffix(".json") }.sorted().map { ($0, try read("plans/" + $0)) }
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
            message: #"repository: "config" must be an absolute, normal path of at most 1024 bytes"#),
        BadPlan(
            kind: "empty name", edits: [(#""name": "xkube-dr""#, #""name": """#)], path: "$.name",
            message: #"the plan: "name" "" is empty"#),
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
            hint: "The driver must be one of: local, patroni, simulated, ssh."),
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
            kind: "two instances on one data directory", edits: [(#""/var/lib/failoverd/dr-1""#, #""/var/lib/failoverd/dr-0""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message: #"instances "dr-0" and "dr-1" both use the data directory /var/lib/failoverd/dr-0 on this host"#,
            schemaRejects: false),
        BadPlan(
            kind: "one data directory spelled another way", edits: [(#""/var/lib/failoverd/dr-1""#, #""/var/lib/failoverd/dr-0/""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message: #"instance "dr-1": "dataDirectory" "/var/lib/failoverd/dr-0/" ends with a slash"#),
        BadPlan(
            kind: "data directory inside another", edits: [(#""/var/lib/failoverd/dr-1""#, #""/var/lib/failoverd/dr-0/base""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message:
                #"instance "dr-1"'s data directory /var/lib/failoverd/dr-0/base lies inside instance "dr-0"'s /var/lib/failoverd/dr-0"#,
            schemaRejects: false),
        BadPlan(
            kind: "dot-dot segment", edits: [(#""/var/lib/failoverd/dr-1""#, #""/var/lib/failoverd/../../etc""#)],
            path: "$.sites[1].instances[1].dataDirectory",
            message: #"instance "dr-1": "dataDirectory" "/var/lib/failoverd/../../etc" has a ".." segment"#),
        BadPlan(
            kind: "shell in a path", edits: [(#""/etc/failoverd/pgpass""#, #""/etc/failoverd/$(id)""#)],
            path: "$.replication.passfile",
            message:
                #"replication: "passfile" "/etc/failoverd/$(id)" contains "$" (U+0024) at character 16, which is not allowed in a path"#),
        BadPlan(
            kind: "prefix-local host", edits: [(#""host": "127.0.0.1", "port": 6433"#, #""host": "127.evil.example", "port": 6433"#)],
            path: "$.sites[1].instances[0].host",
            message: #"instance "dr-0" of a local site is on "127.evil.example", which is not this host"#, schemaRejects: false),
        BadPlan(
            kind: "root as osUser", edits: [(#""version": 1,"#, #""version": 1, "osUser": "root","#)], path: "$.osUser",
            message: #"the plan: "osUser" "root" is root"#),
        BadPlan(
            kind: "NUL in a name", edits: [(#""name": "dr-1""#, #""name": "dr\u00001""#)], path: "$.sites[1].instances[1].name",
            message: #"instance "dr\u00001": "name" "dr\u00001" contains U+0000 (NUL) at character 3, which is not allowed in a name"#),
        BadPlan(
            kind: "huge timeout", edits: [(#""stepTimeoutSeconds": 120"#, #""stepTimeoutSeconds": 1e300"#)],
            path: "$.policy.stepTimeoutSeconds",
            message: #"policy: "stepTimeoutSeconds" must be a number of seconds from 1 to 86400 (24 h), found 1e300"#),
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
            message: #"instance "dr-1": "dataDirectory" "dr-1" is not absolute (it must start with /)"#),
        BadPlan(
            kind: "negative maxLagBytes", edits: [(#""maxLagBytes": 16777216"#, #""maxLagBytes": -1"#)],
            path: "$.policy.maxLagBytes",
            message: #"policy: "maxLagBytes" must be a whole number of bytes from 0 to 4611686018427387903 (below 2^62), found -1"#),
        BadPlan(
            kind: "zero timeout", edits: [(#""stepTimeoutSeconds": 120"#, #""stepTimeoutSeconds": 0"#)],
            path: "$.policy.stepTimeoutSeconds",
            message: #"policy: "stepTimeoutSeconds" must be a number of seconds from 1 to 86400 (24 h), found 0"#),
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
