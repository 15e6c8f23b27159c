extension PlanValidator {
    /// Pass 2: checks the document against ``PlanShape/plan``: fields, types, values, ranges.
    static func checkShape(_ root: JSONValue, into problems: inout [PlanProblem]) {
        guard case .object = root else {
            problems.append(
                .error(
                    .root, "the plan must be a JSON object, found \(root.kindDescription)",
                    hint: "A plan starts with { \"version\": 1, \"name\": …, \"repository\": … }; see docs/plan-format.md."))
            return
        }
        check(root, PlanShape.plan, field: nil, owner: "the plan", at: .root, into: &problems)
    }

    /// Checks `value` against `kind`; `field` is the member it is the value of (nil for array elements and the root).
    private static func check(
        _ value: JSONValue, _ kind: PlanShape.Kind, field: PlanShape.Field?, owner: String, at path: JSONPath,
        into problems: inout [PlanProblem]
    ) {
        let name = field.map { "\"\($0.key)\"" } ?? elementName(path)
        let example = field.map { "write it as \($0.example)" } ?? "see docs/plan-format.md"
        func wrong(_ found: String) {
            problems.append(.error(path, "\(owner): \(name) must be \(kind.expectation), found \(found)", hint: example + "."))
        }
        switch kind {
        case .name, .role, .osUser, .host, .path, .url, .endpoint, .slot, .oneOf, .argument, .unit:
            guard case .string(let text) = value else { return wrong(value.kindDescription) }
            checkText(text, kind, name: name, owner: owner, example: example, at: path, into: &problems)
        case .integer(let range):
            guard case .number(let literal) = value else { return wrong(value.kindDescription) }
            guard let number = Int(literal) else { return wrong(literal) }
            if !range.contains(number) {
                problems.append(
                    .error(
                        path,
                        "\(owner): \(field?.key ?? "value") \(number) is out of range; it must be from \(range.lowerBound) to \(range.upperBound)",
                        hint: example + "."))
            }
        case .byteCount:
            guard case .number(let literal) = value else { return wrong(value.kindDescription) }
            guard let number = UInt64(literal), number <= PlanValues.maximumByteCount else { return wrong(literal) }
        case .seconds:
            guard case .number(let literal) = value else { return wrong(value.kindDescription) }
            guard let number = Double(literal), PlanValues.timeoutRange.contains(number) else { return wrong(literal) }
        case .boolean:
            guard case .bool = value else { return wrong(value.kindDescription) }
        case .formatVersion:
            guard case .number(let literal) = value, let version = Int(literal) else { return wrong(value.kindDescription) }
            if version != 1 {
                problems.append(
                    .error(
                        path, "\(owner): format version \(version) is not supported; this failoverd reads version 1",
                        hint: "Write \"version\": 1 and the v1 fields described in docs/plan-format.md."))
            }
        case .array(let element, let atLeastOne):
            guard case .array(let elements) = value else { return wrong(value.kindDescription) }
            if atLeastOne && elements.isEmpty {
                problems.append(
                    .error(
                        path, "\(owner) has no \(field?.key ?? "elements")",
                        hint: "Add at least one, e.g. \(field?.example ?? "")."))
            }
            for (i, item) in elements.enumerated() {
                check(item, element, field: nil, owner: owner, at: path.appending(i), into: &problems)
            }
        case .object(let noun, let fields):
            guard case .object(let members) = value else { return wrong(value.kindDescription) }
            let own = objectOwner(value, noun: noun, fields: fields)
            for field in fields {
                if let member = members.first(where: { $0.key == field.key }) {
                    check(member.value, field.kind, field: field, owner: own, at: path.appending(field.key), into: &problems)
                } else if field.required {
                    problems.append(
                        .error(
                            path.appending(field.key), "\(own): missing required field \"\(field.key)\"",
                            hint: "Add \(field.example)."))
                }
            }
            let known = fields.map(\.key)
            for member in members where !known.contains(member.key) {
                warnUnknown(member.key, known: known, owner: own, at: path.appending(member.key), into: &problems)
            }
        case .transition:
            guard case .object = value, case .index(let index)? = path.components.last else {
                return wrong(value.kindDescription)
            }
            checkTransition(value, index: index, at: path, into: &problems)
        }
    }

    /// `"sites"[2]` for the element at `$.sites[2]`.
    private static func elementName(_ path: JSONPath) -> String {
        guard case .index(let i)? = path.components.last, case .key(let key)? = path.components.dropLast().last else {
            return "the value"
        }
        return "\"\(key)\"[\(i)]"
    }

    private static func checkText(
        _ text: String, _ kind: PlanShape.Kind, name: String, owner: String, example: String, at path: JSONPath,
        into problems: inout [PlanProblem]
    ) {
        switch kind {
        case .oneOf(let values, let noun):
            if !values.contains(text) {
                problems.append(
                    .error(
                        path, "\(owner): unknown \(noun) \(PlanValues.quoted(text))",
                        hint: didYouMean(text, among: values) + "The \(noun) must be one of: \(values.joined(separator: ", "))."))
            }
        case .name, .role, .osUser, .host, .path, .url, .endpoint, .slot, .argument, .unit:
            let problem: String?
            let allowed: String
            switch kind {
            case .name:
                (problem, allowed) = (
                    PlanValues.nameProblem(text), "A name has 1 to \(PlanValues.maximumNameLength) \(PlanValues.nameCharacters)"
                )
            case .role:
                (problem, allowed) = (
                    PlanValues.roleProblem(text), "A role name has 1 to \(PlanValues.maximumNameLength) \(PlanValues.roleCharacters)"
                )
            case .osUser:
                (problem, allowed) = (
                    PlanValues.osUserProblem(text),
                    "An OS user name other than root has 1 to \(PlanValues.maximumOSUserLength) \(PlanValues.osUserCharacters)"
                )
            case .host:
                (problem, allowed) = (
                    PlanValues.hostProblem(text), "A host is an IPv4 address (127.0.0.1), an IPv6 address (::1) or an RFC 1123 host name"
                )
            case .url:
                (problem, allowed) = (PlanValues.urlProblem(text), "A Patroni REST API address is http://HOST:PORT or https://HOST:PORT")
            case .endpoint:
                (problem, allowed) = (PlanValues.endpointProblem(text), "An endpoint is HOST:PORT, e.g. 127.0.0.1:2379")
            case .slot:
                (problem, allowed) = (PlanValues.slotProblem(text), "A replication slot name has 1 to 63 lowercase letters, digits and _")
            case .path(let maximum):
                (problem, allowed) = (
                    PlanValues.pathProblem(text, maximumLength: maximum),
                    "A path is absolute and normal: / then segments of \(PlanValues.pathCharacters), separated by single slashes, with no . or .. segment and no trailing slash; failoverd, pgBackRest and PostgreSQL must all read it as the same directory, and no shell may read anything else in it"
                )
            case .argument:
                (problem, allowed) = (
                    PlanValues.argumentProblem(text),
                    "An argument is passed as it is, without a shell, and holds no control character"
                )
            case .unit:
                (problem, allowed) = (PlanValues.unitProblem(text), "A unit name has letters, digits, @ . _ - : and ends in .service")
            default: (problem, allowed) = (nil, "")
            }
            if let problem {
                // A value that looks like it holds a password is never repeated in a message.
                let shown = looksLikeSecretValue(text) ? "(value not shown: it looks like it holds a password)" : PlanValues.quoted(text)
                problems.append(.error(path, "\(owner): \(name) \(shown) \(problem)", hint: "\(allowed); \(example)."))
            }
        default:
            break
        }
    }

    /// `site "dr"` for an object with a name, `unnamed site` when the name is missing, or the noun alone.
    private static func objectOwner(_ value: JSONValue, noun: String, fields: [PlanShape.Field]) -> String {
        guard fields.contains(where: { $0.key == "name" }), noun != "plan" else { return noun == "plan" ? "the plan" : noun }
        guard let name = value["name"]?.stringValue, !name.isEmpty else { return "unnamed \(noun)" }
        return "\(noun) \(PlanValues.quoted(name))"
    }

    /// A warning for an unknown key, unless it looks like a secret (the secrets pass makes that an error).
    private static func warnUnknown(
        _ key: String, known: [String], owner: String, at path: JSONPath, into problems: inout [PlanProblem]
    ) {
        guard !looksLikeSecretKey(key) else { return }
        problems.append(
            .warning(
                path, "\(owner): unknown field \(PlanValues.quoted(key)) is ignored",
                hint: didYouMean(key, among: known) + "The known fields here are: \(known.joined(separator: ", "))."))
    }

    /// A transition: a known action, exactly the fields that action takes, each of the right kind.
    private static func checkTransition(_ value: JSONValue, index: Int, at path: JSONPath, into problems: inout [PlanProblem]) {
        let label = transitionLabel(value, index: index)
        let members = value.objectMembers ?? []
        let known = ["action"] + PlanShape.transitionFields.map(\.key)
        let action: Action?
        if let member = value["action"] {
            check(
                member, PlanShape.action.kind, field: PlanShape.action, owner: label, at: path.appending("action"),
                into: &problems)
            action = member.stringValue.flatMap(Action.init(rawValue:))
        } else {
            problems.append(
                .error(
                    path.appending("action"), "\(label) has no \"action\"",
                    hint: "Add \"action\": one of \(Action.allCases.map(\.rawValue).joined(separator: ", "))."))
            action = nil
        }
        for field in PlanShape.transitionFields {
            let fieldPath = path.appending(field.key)
            let member = value[field.key]
            guard let action else {
                if let member { check(member, field.kind, field: field, owner: label, at: fieldPath, into: &problems) }
                continue
            }
            let takes = action.requiredFields
            switch (takes.contains(field.key), member) {
            case (true, let member?):
                check(member, field.kind, field: field, owner: label, at: fieldPath, into: &problems)
            case (true, nil):
                problems.append(
                    .error(fieldPath, "\(label): \(action.rawValue) needs \"\(field.key)\"", hint: "Add \(field.example)."))
            case (false, _?):
                problems.append(
                    .error(
                        fieldPath, "\(label): \"\(field.key)\" does not apply to \(action.rawValue)",
                        hint: "Remove it; \(action.rawValue) takes \(takes.map { "\"\($0)\"" }.joined(separator: " and "))."))
            case (false, nil):
                break
            }
        }
        for member in members where !known.contains(member.key) {
            warnUnknown(member.key, known: known, owner: label, at: path.appending(member.key), into: &problems)
        }
    }
}
