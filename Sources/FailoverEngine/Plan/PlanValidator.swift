import Foundation

/// Checks a plan.json and reports every problem at once, each with its JSON path, what is wrong and
/// what to do, then decodes the plan when nothing is wrong.
///
/// The checks run in passes over the parsed document, so one mistake does not hide another:
/// 1. syntax (line and column) and duplicate keys, by ``JSONParser``;
/// 2. shape: required fields, types, known roles, drivers, actions and methods, ranges, absolute paths,
///    the fields each action takes (see ``Action/requiredFields``); unknown keys are warnings;
/// 3. secrets: keys that look like passwords or tokens, values with `password=` or URL credentials;
/// 4. cross-references: unique site and instance names, one host:port and one data directory per
///    instance, at most one declared primary, transitions naming sites that exist;
/// 5. roles: each transition is checked by ``RoleMachine`` against the roles the earlier ones leave.
///    After an illegal transition the walk carries on as if it had succeeded (the author's intent), so
///    the later transitions are still checked.
///
/// Only a syntax error stops the walk. Warnings leave the plan valid.
public enum PlanValidator {
    /// Validates the bytes of a plan.json.
    public static func validate(_ data: Data) -> PlanValidation {
        guard data.count <= maximumPlanBytes else {
            let problem = PlanProblem.error(
                .root, "the plan is \(data.count) bytes long; at most \(maximumPlanBytes) are allowed",
                hint: "A plan lists a few sites and transitions; a file this large is not a plan.")
            return PlanValidation(problems: [problem], plan: nil, summary: "plan is invalid: too large")
        }
        let document: JSONParser.Document
        do {
            document = try JSONParser.parse(data)
        } catch {
            let problem = PlanProblem.error(
                .root, "not valid JSON: \(error)",
                hint:
                    "A plan is strict JSON (RFC 8259): keys and strings in double quotes, commas between members, no trailing commas, no comments."
            )
            return PlanValidation(problems: [problem], plan: nil, summary: "plan is not valid JSON: \(error)")
        }
        let root = document.value
        var problems = document.duplicateKeys.map(duplicateKeyProblem)
        checkControlCharacters(root, at: .root, into: &problems)
        checkShape(root, into: &problems)
        checkSecrets(root, at: .root, into: &problems)
        checkReferences(root, into: &problems)
        checkRoles(root, into: &problems)
        checkRepository(root, into: &problems)
        checkRemote(root, into: &problems)
        checkCoordination(root, into: &problems)

        let name = root["name"]?.stringValue.flatMap { $0.isEmpty ? nil : "plan \"\($0)\"" } ?? "plan"
        let errors = problems.filter { $0.severity == .error }.count
        let warnings = problems.count - errors
        guard errors == 0 else {
            return PlanValidation(
                problems: problems, plan: nil,
                summary: "\(name) is invalid: \(count(errors, "error"))" + (warnings > 0 ? ", \(count(warnings, "warning"))" : "")
            )
        }
        do {
            let plan = try Plan.decode(data)
            return PlanValidation(problems: problems, plan: plan, summary: summary(of: plan, warnings: warnings))
        } catch {
            problems.append(
                .error(
                    .root, "the plan passed every check but could not be decoded: \(error)",
                    hint: "This is a failoverd bug; please report it with the plan."))
            return PlanValidation(problems: problems, plan: nil, summary: "\(name) is invalid: \(count(1, "error"))")
        }
    }

    /// `plan "x" is valid: 2 sites, 3 instances, 4 transitions; roles after it: dr=primary, prod=streaming-standby`.
    static func summary(of plan: Plan, warnings: Int) -> String {
        let declared = Dictionary(plan.sites.map { ($0.name, $0.role) }, uniquingKeysWith: { first, _ in first })
        // The role pass accepted every transition, so applying them all succeeds.
        let after = (try? RoleMachine.applyAll(plan.transitions, to: declared).get()) ?? declared
        return
            "plan \"\(plan.name)\" is valid: \(count(plan.sites.count, "site")), \(count(plan.allInstances.count, "instance")), "
            + "\(count(plan.transitions.count, "transition")); roles after it: \(describe(after))"
            + (warnings > 0 ? " (\(count(warnings, "warning")))" : "")
    }

    private static func duplicateKeyProblem(_ duplicate: JSONParser.DuplicateKey) -> PlanProblem {
        guard case .key(let key)? = duplicate.path.components.last else { preconditionFailure("a duplicate is always a key") }
        return .error(
            duplicate.path,
            "key \"\(key)\" appears twice in the same object (line \(duplicate.firstLine), column \(duplicate.firstColumn) and line \(duplicate.line), column \(duplicate.column))",
            hint: "Keep one of them: JSON readers disagree on which value wins.")
    }

    /// The largest plan file failoverd reads: 1 MiB.
    public static let maximumPlanBytes = 1 << 20

    /// Pass 1b: no key anywhere in the document (unknown fields included) holds a NUL or another control
    /// character, which would change what a terminal or a log shows. String values of known fields are checked
    /// against their own character sets by the shape pass; values of unknown fields are never used or shown.
    static func checkControlCharacters(_ value: JSONValue, at path: JSONPath, into problems: inout [PlanProblem]) {
        func check(_ text: String, _ what: String, at path: JSONPath) {
            guard let (offset, scalar) = text.unicodeScalars.enumerated().first(where: { PlanValues.isControl($0.element) }) else { return }
            problems.append(
                .error(
                    path, "\(what) \(PlanValues.quoted(text)) contains \(PlanValues.describe(scalar)) at character \(offset + 1)",
                    hint: "A plan holds no control character (U+0000 to U+001F, U+007F to U+009F) in any key; remove it."))
        }
        switch value {
        case .array(let elements):
            for (i, element) in elements.enumerated() { checkControlCharacters(element, at: path.appending(i), into: &problems) }
        case .object(let members):
            for member in members {
                check(member.key, "the key", at: path.appending(member.key))
                checkControlCharacters(member.value, at: path.appending(member.key), into: &problems)
            }
        case .null, .bool, .number, .string: break
        }
    }

    /// `1 site`, `3 sites`.
    static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

    /// The transition at `value` with only the fields its action takes, when its action is known.
    static func transition(from value: JSONValue) -> Transition? {
        guard let action = value["action"]?.stringValue.flatMap(Action.init(rawValue:)) else { return nil }
        let fields = Set(action.requiredFields)
        func field(_ key: String) -> String? { fields.contains(key) ? value[key]?.stringValue : nil }
        return Transition(
            action: action, site: field("site"), upstream: field("upstream"), to: field("to"), source: field("source"),
            method: field("method").flatMap(FailbackMethod.init(rawValue:)))
    }

    /// `transition 2 (switchover to dr)`, or `transition 2` when its action is not known.
    static func transitionLabel(_ value: JSONValue, index: Int) -> String {
        guard let transition = transition(from: value), !transition.summary.unicodeScalars.contains(where: PlanValues.isControl) else {
            return "transition \(index + 1)"
        }
        return "transition \(index + 1) (\(transition.summary))"
    }

    /// `did you mean "primary"? ` when `word` is a near miss of one of `candidates`, else the empty string.
    static func didYouMean(_ word: String, among candidates: [String]) -> String {
        guard word.count <= 64 else { return "" }
        let lowered = word.lowercased()
        let best = candidates.map { ($0, editDistance(lowered, $0.lowercased())) }.min { $0.1 < $1.1 }
        guard let (candidate, distance) = best, distance <= max(1, min(3, candidate.count / 3)) else { return "" }
        return "did you mean \"\(candidate)\"? "
    }

    /// Levenshtein distance: the fewest single-character edits that turn `a` into `b`.
    private static func editDistance(_ a: String, _ b: String) -> Int {
        let b = Array(b)
        var row = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for (j, cb) in b.enumerated() {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (ca == cb ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}
