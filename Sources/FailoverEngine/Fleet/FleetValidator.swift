import Foundation

/// Checks a fleet.json and every member plan it names, and reports every problem at once, each with the
/// member it is about and its JSON path, then builds the fleet when nothing is wrong.
///
/// The fleet file is checked like a plan (strict JSON, duplicate keys, secrets, fields and ranges, unknown
/// keys as warnings); each member plan is validated as `failoverd validate` validates it; then across the
/// fleet: unique member names and plan files, `order` naming members that exist, no member waiting for
/// itself or in a cycle, and no site (an endpoint, a data directory, a Patroni member, a pgBackRest stanza)
/// shared by two members, which would have one cluster driven by two runs at once.
public enum FleetValidator {
    /// The fields of the fleet object.
    static let fields = ["version", "name", "members", "order", "concurrency", "brake"]
    /// The fields of a member.
    static let memberFields = ["name", "plan"]
    /// The fields of `order`.
    static let orderFields = ["tiers", "after"]

    /// Validates the fleet file at `file` and the plans it names (relative to its directory).
    public static func validate(file: String) -> FleetValidation {
        guard let data = FileManager.default.contents(atPath: file) else {
            let problem = FleetProblem(
                .error, file: file, at: .root, "cannot read fleet file \(file): no such file or not readable",
                hint: "Give the path of a fleet.json (see docs/fleet.md).")
            return FleetValidation(problems: [problem], fleet: nil, summary: "fleet is invalid: its file cannot be read")
        }
        return validate(data, file: file)
    }

    /// Validates the bytes of a fleet file whose path is `file` (member plan paths are relative to its directory).
    public static func validate(_ data: Data, file: String) -> FleetValidation {
        var walk = Walk(file: file)
        let fleet = walk.run(data)
        let errors = walk.problems.filter { $0.severity == .error }.count
        let warnings = walk.problems.count - errors
        let name = walk.name.map { "fleet \(PlanValues.quoted($0))" } ?? "fleet"
        guard errors == 0, let fleet else {
            return FleetValidation(
                problems: walk.problems, fleet: nil,
                summary: "\(name) is invalid: \(PlanValidator.count(max(errors, 1), "error"))"
                    + (warnings > 0 ? ", \(PlanValidator.count(warnings, "warning"))" : ""))
        }
        let after = fleet.dependencies.filter { !$0.value.isEmpty }.count
        return FleetValidation(
            problems: walk.problems, fleet: fleet,
            summary:
                "fleet \(PlanValues.quoted(fleet.name)) is valid: \(PlanValidator.count(fleet.members.count, "member")), concurrency \(fleet.concurrency), brake \(fleet.brake)"
                + (after > 0 ? ", \(PlanValidator.count(after, "member")) waiting for others" : "")
                + (warnings > 0 ? " (\(PlanValidator.count(warnings, "warning")))" : ""))
    }

    /// One validation: the problems found so far and what the walk learnt.
    struct Walk {
        let file: String
        var problems: [FleetProblem] = []
        var name: String?

        init(file: String) { self.file = file }

        mutating func error(_ path: JSONPath, member: String? = nil, _ message: String, hint: String) {
            problems.append(FleetProblem(.error, file: file, at: path, member: member, message, hint: hint))
        }

        mutating func warning(_ path: JSONPath, member: String? = nil, _ message: String, hint: String) {
            problems.append(FleetProblem(.warning, file: file, at: path, member: member, message, hint: hint))
        }

        mutating func run(_ data: Data) -> Fleet? {
            guard data.count <= PlanValidator.maximumPlanBytes else {
                error(
                    .root, "the fleet file is \(data.count) bytes long; at most \(PlanValidator.maximumPlanBytes) are allowed",
                    hint: "A fleet lists member plans by path; a file this large is not a fleet.")
                return nil
            }
            let document: JSONParser.Document
            do {
                document = try JSONParser.parse(data)
            } catch {
                self.error(
                    .root, "not valid JSON: \(error)",
                    hint:
                        "A fleet is strict JSON (RFC 8259): keys and strings in double quotes, commas between members, no trailing commas, no comments."
                )
                return nil
            }
            let root = document.value
            var planProblems: [PlanProblem] = []
            for d in document.duplicateKeys {
                guard case .key(let key)? = d.path.components.last else { continue }
                planProblems.append(
                    PlanProblem(
                        .error, at: d.path,
                        "key \"\(key)\" appears twice in the same object (line \(d.firstLine), column \(d.firstColumn) and line \(d.line), column \(d.column))",
                        hint: "Keep one of them: JSON readers disagree on which value wins."))
            }
            PlanValidator.checkControlCharacters(root, at: .root, into: &planProblems)
            PlanValidator.checkSecrets(root, at: .root, into: &planProblems)
            for p in planProblems { problems.append(FleetProblem(fleetFile: file, p)) }
            guard case .object(let top) = root else {
                error(
                    .root, "the fleet must be a JSON object, found \(root.kindDescription)",
                    hint: "A fleet starts with { \"version\": 1, \"name\": …, \"members\": [ { \"plan\": \"…\" } ] }; see docs/fleet.md.")
                return nil
            }
            unknownKeys(top, known: FleetValidator.fields, owner: "the fleet", at: .root)
            checkVersion(root["version"])
            name = text(root["name"], field: "name", owner: "the fleet", at: .root.appending("name"), required: true, kind: .name)
            let concurrency = integer(
                root["concurrency"], field: "concurrency", at: .root.appending("concurrency"), meaning: "members act at once")
            let brake = integer(
                root["brake"], field: "brake", at: .root.appending("brake"), meaning: "failed or refused members stop new starts")
            let members = checkMembers(root["members"])
            let names = members.map(\.name)
            let (tiers, after) = checkOrder(root["order"], names: names)
            checkCycles(tiers: tiers, after: after, names: names)
            checkShared(members)
            guard let name, !problems.contains(where: { $0.severity == .error }) else { return nil }
            return Fleet(
                version: 1, name: name,
                members: members.compactMap { m in m.plan.map { FleetMember(name: m.name, planFile: m.file, plan: $0) } },
                concurrency: concurrency ?? Fleet.defaultConcurrency, brake: brake ?? Fleet.defaultBrake, tiers: tiers, after: after)
        }

        // MARK: Fields

        mutating func unknownKeys(_ members: [JSONValue.Member], known: [String], owner: String, at path: JSONPath) {
            for m in members where !known.contains(m.key) && !PlanValidator.looksLikeSecretKey(m.key) {
                warning(
                    path.appending(m.key), "\(owner): unknown field \(PlanValues.quoted(m.key)) is ignored",
                    hint: PlanValidator.didYouMean(m.key, among: known) + "The known fields here are: \(known.joined(separator: ", ")).")
            }
        }

        mutating func checkVersion(_ value: JSONValue?) {
            let path = JSONPath.root.appending("version")
            guard let value else {
                return error(path, "the fleet: missing required field \"version\"", hint: "Add \"version\": 1.")
            }
            guard value.integerValue == 1 else {
                return error(
                    path, "the fleet: \"version\" must be the integer 1, found \(value.kindDescription)",
                    hint: "Write \"version\": 1 and the v1 fields described in docs/fleet.md.")
            }
        }

        enum TextKind { case name, file }

        /// A string field: a name (``PlanValues/nameProblem(_:)``) or a file path (non-empty, no control character).
        mutating func text(_ value: JSONValue?, field: String, owner: String, at path: JSONPath, required: Bool, kind: TextKind)
            -> String?
        {
            guard let value else {
                if required {
                    error(
                        path, "\(owner): missing required field \"\(field)\"",
                        hint: kind == .name ? "Add \"\(field)\": \"evacuate-dc1\"." : "Add \"\(field)\": \"members/auth.json\".")
                }
                return nil
            }
            guard case .string(let text) = value else {
                error(path, "\(owner): \"\(field)\" must be a string, found \(value.kindDescription)", hint: "Write it in double quotes.")
                return nil
            }
            switch kind {
            case .name:
                if let problem = PlanValues.nameProblem(text) {
                    error(
                        path, "\(owner): \"\(field)\" \(PlanValues.quoted(text)) \(problem)",
                        hint:
                            "A name has 1 to \(PlanValues.maximumNameLength) \(PlanValues.nameCharacters); it names a directory of failoverd's state."
                    )
                    return nil
                }
            case .file:
                if text.isEmpty || text.utf8.count > PlanValues.maximumPathLength
                    || text.unicodeScalars.contains(where: PlanValues.isControl)
                {
                    error(
                        path, "\(owner): \"\(field)\" \(PlanValues.quoted(text)) is not a usable file path",
                        hint:
                            "Give the plan file's path, absolute or relative to the fleet file's directory, of 1 to \(PlanValues.maximumPathLength) bytes without control characters."
                    )
                    return nil
                }
            }
            return text
        }

        /// An optional integer field from 1 to ``Fleet/maximumMembers``.
        mutating func integer(_ value: JSONValue?, field: String, at path: JSONPath, meaning: String) -> Int? {
            guard let value else { return nil }
            guard case .number(let literal) = value, let n = Int(literal) else {
                error(
                    path, "the fleet: \"\(field)\" must be an integer from 1 to \(Fleet.maximumMembers), found \(value.kindDescription)",
                    hint:
                        "Write it as \"\(field)\": \(field == "brake" ? Fleet.defaultBrake : Fleet.defaultConcurrency) (how many \(meaning))."
                )
                return nil
            }
            guard (1...Fleet.maximumMembers).contains(n) else {
                error(
                    path, "the fleet: \(field) \(n) is out of range; it must be from 1 to \(Fleet.maximumMembers)",
                    hint:
                        field == "concurrency"
                        ? "At least 1 member must act at a time; write \"concurrency\": 1 to move one cluster after the other."
                        : "The brake counts failed or refused members (1: stop new starts at the first one); write \"brake\": \(Fleet.defaultBrake)."
                )
                return nil
            }
            return n
        }

        // MARK: Members

        /// A member as the walk saw it: its name (explicit or its plan's), its file, and its plan when valid.
        struct Seen {
            var name: String
            var file: String
            var resolved: String
            var index: Int
            var plan: Plan?
        }

        mutating func checkMembers(_ value: JSONValue?) -> [Seen] {
            let path = JSONPath.root.appending("members")
            guard let value else {
                error(
                    path, "the fleet: missing required field \"members\"",
                    hint: "Add \"members\": [ { \"name\": \"auth\", \"plan\": \"members/auth.json\" } ].")
                return []
            }
            guard case .array(let elements) = value else {
                error(
                    path, "the fleet: \"members\" must be an array, found \(value.kindDescription)",
                    hint: "Write \"members\": [ { \"plan\": \"members/auth.json\" }, … ].")
                return []
            }
            if elements.isEmpty {
                error(path, "the fleet has no members", hint: "Add at least one member: { \"plan\": \"members/auth.json\" }.")
            }
            if elements.count > Fleet.maximumMembers {
                error(
                    path, "the fleet has \(elements.count) members; at most \(Fleet.maximumMembers) are allowed",
                    hint: "Split it into several fleets.")
            }
            var seen: [Seen] = []
            var byName: [String: Int] = [:]
            var byFile: [String: Int] = [:]
            for (i, element) in elements.enumerated() {
                let at = path.appending(i)
                guard case .object(let fields) = element else {
                    error(
                        at, "the fleet: \"members\"[\(i)] must be an object, found \(element.kindDescription)",
                        hint: "Write each member as { \"name\": \"auth\", \"plan\": \"members/auth.json\" }.")
                    continue
                }
                let explicit = text(
                    element["name"], field: "name", owner: "member \(i + 1)", at: at.appending("name"), required: false, kind: .name)
                let owner = explicit.map { "member \(PlanValues.quoted($0))" } ?? "member \(i + 1)"
                unknownKeys(fields, known: FleetValidator.memberFields, owner: owner, at: at)
                guard let file = text(element["plan"], field: "plan", owner: owner, at: at.appending("plan"), required: true, kind: .file)
                else {
                    continue
                }
                let resolved = resolve(file)
                let plan = loadPlan(file: file, resolved: resolved, member: explicit, index: i, at: at.appending("plan"))
                guard let memberName = explicit ?? plan?.name else {
                    continue
                }
                if let first = byName[memberName] {
                    error(
                        explicit != nil ? at.appending("name") : at.appending("plan"), member: memberName,
                        "member \(PlanValues.quoted(memberName)) is declared twice (first at $.members[\(first)])"
                            + (explicit == nil ? ": its plan's name is its member name" : ""),
                        hint: "Give each member its own \"name\": its state directory and every report are named after it.")
                    continue
                }
                if let first = byFile[resolved] {
                    error(
                        at.appending("plan"), member: memberName,
                        "member \(PlanValues.quoted(memberName)) uses the plan file \(file), which member \(PlanValues.quoted(seen.first { $0.index == first }?.name ?? "?")) ($.members[\(first)]) uses too: one cluster would be driven by two runs at once",
                        hint: "List each cluster once.")
                    continue
                }
                byName[memberName] = i
                byFile[resolved] = i
                seen.append(Seen(name: memberName, file: file, resolved: resolved, index: i, plan: plan))
            }
            return seen
        }

        /// `file` made absolute against the fleet file's directory, with symbolic links resolved.
        func resolve(_ file: String) -> String {
            let base = URL(fileURLWithPath: self.file).standardizedFileURL.deletingLastPathComponent()
            let url = file.hasPrefix("/") ? URL(fileURLWithPath: file) : base.appendingPathComponent(file)
            return url.standardizedFileURL.resolvingSymlinksInPath().path
        }

        /// Reads and validates a member plan; its problems are the fleet's, named after the member.
        mutating func loadPlan(file: String, resolved: String, member: String?, index: Int, at path: JSONPath) -> Plan? {
            let label = member ?? "members[\(index)]"
            guard let data = FileManager.default.contents(atPath: resolved) else {
                error(
                    path, member: member,
                    "member \(PlanValues.quoted(label)): cannot read plan file \(file) (\(resolved)): no such file or not readable",
                    hint: "Plan paths are absolute or relative to the fleet file's directory; check the path.")
                return nil
            }
            let result = PlanValidator.validate(data)
            let name = member ?? result.plan?.name ?? label
            for p in result.problems { problems.append(FleetProblem(member: name, file: file, p)) }
            return result.plan
        }

        // MARK: Order

        mutating func checkOrder(_ value: JSONValue?, names: [String]) -> (tiers: [[String]], after: [String: [String]]) {
            guard let value else { return ([], [:]) }
            let path = JSONPath.root.appending("order")
            guard case .object(let fields) = value else {
                error(
                    path, "the fleet: \"order\" must be an object, found \(value.kindDescription)",
                    hint:
                        "Write \"order\": { \"after\": { \"billing\": [\"auth\"] } } or \"order\": { \"tiers\": [[\"auth\"], [\"billing\"]] }."
                )
                return ([], [:])
            }
            unknownKeys(fields, known: FleetValidator.orderFields, owner: "order", at: path)
            return (
                checkTiers(value["tiers"], names: names, at: path.appending("tiers")),
                checkAfter(value["after"], names: names, at: path.appending("after"))
            )
        }

        /// A member name inside `order`: a string naming a member of the fleet.
        mutating func memberReference(_ value: JSONValue, names: [String], at path: JSONPath, owner: String) -> String? {
            guard case .string(let name) = value else {
                error(
                    path, "\(owner): a member name must be a string, found \(value.kindDescription)",
                    hint: "Write the member's name in double quotes.")
                return nil
            }
            guard names.contains(name) else {
                error(
                    path, "\(owner): no member named \(PlanValues.quoted(name))",
                    hint: PlanValidator.didYouMean(name, among: names) + "The members are: \(names.joined(separator: ", ")).")
                return nil
            }
            return name
        }

        mutating func checkTiers(_ value: JSONValue?, names: [String], at path: JSONPath) -> [[String]] {
            guard let value else { return [] }
            guard case .array(let tiers) = value, !tiers.isEmpty else {
                error(
                    path, "order: \"tiers\" must be a non-empty array of tiers, found \(value.kindDescription)",
                    hint:
                        "Write \"tiers\": [[\"auth\", \"search\"], [\"billing\"]]: each tier starts once every member of the one before it is done."
                )
                return []
            }
            var result: [[String]] = []
            var placed: [String: Int] = [:]
            for (t, tier) in tiers.enumerated() {
                guard case .array(let entries) = tier, !entries.isEmpty else {
                    error(
                        path.appending(t), "order: tier \(t + 1) must be a non-empty array of member names, found \(tier.kindDescription)",
                        hint: "Write it as [\"auth\", \"search\"].")
                    continue
                }
                var members: [String] = []
                for (j, entry) in entries.enumerated() {
                    guard let name = memberReference(entry, names: names, at: path.appending(t).appending(j), owner: "order: tier \(t + 1)")
                    else { continue }
                    if let first = placed[name] {
                        error(
                            path.appending(t).appending(j), member: name,
                            "order: member \(PlanValues.quoted(name)) is in tier \(first + 1) and again in tier \(t + 1)",
                            hint: "Put each member in one tier.")
                        continue
                    }
                    placed[name] = t
                    members.append(name)
                }
                result.append(members)
            }
            for name in names where placed[name] == nil {
                error(
                    path, member: name, "order: member \(PlanValues.quoted(name)) is in no tier",
                    hint: "With tiers, list every member in exactly one tier (or drop \"tiers\" and order members with \"after\").")
            }
            return result
        }

        mutating func checkAfter(_ value: JSONValue?, names: [String], at path: JSONPath) -> [String: [String]] {
            guard let value else { return [:] }
            guard case .object(let entries) = value else {
                error(
                    path, "order: \"after\" must be an object, found \(value.kindDescription)",
                    hint: "Write \"after\": { \"billing\": [\"auth\"] }: billing starts only once auth is done.")
                return [:]
            }
            var result: [String: [String]] = [:]
            for entry in entries {
                let at = path.appending(entry.key)
                guard let member = memberReference(.string(entry.key), names: names, at: at, owner: "order.after") else { continue }
                guard case .array(let list) = entry.value, !list.isEmpty else {
                    error(
                        at, member: member,
                        "order.after: \(PlanValues.quoted(member)) must list the members it waits for, found \(entry.value.kindDescription)",
                        hint: "Write \"\(member)\": [\"auth\"].")
                    continue
                }
                var waits: [String] = []
                for (j, element) in list.enumerated() {
                    guard let other = memberReference(element, names: names, at: at.appending(j), owner: "order.after.\(member)") else {
                        continue
                    }
                    if other == member {
                        error(
                            at.appending(j), member: member, "order.after: member \(PlanValues.quoted(member)) waits for itself",
                            hint: "Remove it: a member cannot wait for its own end.")
                    } else if waits.contains(other) {
                        warning(
                            at.appending(j), member: member,
                            "order.after: \(PlanValues.quoted(other)) is listed twice for \(PlanValues.quoted(member))",
                            hint: "List it once.")
                    } else {
                        waits.append(other)
                    }
                }
                result[member] = waits
            }
            return result
        }

        /// Every cycle of waits (through `after` and tiers), once each: none of its members could ever start.
        mutating func checkCycles(tiers: [[String]], after: [String: [String]], names: [String]) {
            let fleet = Fleet(version: 1, name: "", members: [], concurrency: 1, brake: 1, tiers: tiers, after: after)
            var edges = fleet.dependencies
            for n in names where edges[n] == nil { edges[n] = after[n] ?? [] }
            var state: [String: Int] = [:]  // 1 on the stack, 2 done
            var stack: [String] = []
            var reported: Set<Set<String>> = []
            func visit(_ node: String, _ cycles: inout [[String]]) {
                state[node] = 1
                stack.append(node)
                for next in edges[node] ?? [] {
                    if state[next] == 1, let start = stack.firstIndex(of: next) {
                        cycles.append(Array(stack[start...]))
                    } else if state[next] == nil {
                        visit(next, &cycles)
                    }
                }
                stack.removeLast()
                state[node] = 2
            }
            var cycles: [[String]] = []
            for n in names where state[n] == nil { visit(n, &cycles) }
            for cycle in cycles where reported.insert(Set(cycle)).inserted {
                let first = cycle[0]
                let chain = (cycle + [first]).map { PlanValues.quoted($0) }.joined(separator: " waits for ")
                let path =
                    after[first] != nil
                    ? JSONPath.root.appending("order").appending("after").appending(first) : JSONPath.root.appending("order")
                error(
                    path, member: first, "order: members wait for each other in a cycle: \(chain); none of them could ever start",
                    hint: "Remove one of these waits (in \"after\" or in \"tiers\").")
            }
        }

        // MARK: Shared sites

        /// No endpoint, data directory, Patroni member or pgBackRest stanza belongs to two members.
        mutating func checkShared(_ members: [Seen]) {
            var owners: [String: (member: Seen, what: String)] = [:]
            var trees: [(member: Seen, instance: String, directory: String, local: Bool, host: String)] = []
            func claim(_ key: String, _ member: Seen, _ what: String) {
                if let first = owners[key], first.member.name != member.name {
                    error(
                        JSONPath.root.appending("members").appending(member.index).appending("plan"), member: member.name,
                        "members \(PlanValues.quoted(first.member.name)) and \(PlanValues.quoted(member.name)) share a site: \(first.what) of \(PlanValues.quoted(first.member.name)) and \(what) of \(PlanValues.quoted(member.name))",
                        hint:
                            "A fleet moves distinct clusters: one cluster in two members would be driven by two runs at once. List each cluster in one member only, or fix the member plan."
                    )
                } else if owners[key] == nil {
                    owners[key] = (member, what)
                }
            }
            for m in members {
                guard let plan = m.plan else { continue }
                for site in FleetValidator.siteKeys(of: plan) { claim(site.key, m, site.what) }
                for (site, instance) in plan.allInstances {
                    let local = site.driver == .local || HostAddress.isLocal(instance.host)
                    trees.append(
                        (m, instance.name, instance.dataDirectory, site.driver == .local, local ? "this host" : instance.host.lowercased())
                    )
                }
            }
            for (i, a) in trees.enumerated() {
                for b in trees[(i + 1)...]
                where a.member.name != b.member.name && (a.local == b.local) && (a.local || a.host == b.host) && a.directory != b.directory
                {
                    let (outer, inner) = a.directory.count <= b.directory.count ? (a, b) : (b, a)
                    guard
                        PlanValues.isWithin(inner.directory, outer.directory)
                            || PlanValues.isWithin(inner.directory, outer.directory + ".failoverd")
                    else { continue }
                    error(
                        JSONPath.root.appending("members").appending(inner.member.index).appending("plan"), member: inner.member.name,
                        "member \(PlanValues.quoted(inner.member.name))'s data directory \(inner.directory) (instance \(PlanValues.quoted(inner.instance))) lies inside member \(PlanValues.quoted(outer.member.name))'s \(outer.directory) (instance \(PlanValues.quoted(outer.instance)))",
                        hint:
                            "Give each cluster directories of its own, side by side: a restore or a sandbox teardown of one must never reach the other."
                    )
                }
            }
        }
    }

    /// What identifies the clusters a plan drives, each with a description for messages: every instance's
    /// endpoint (local hosts are one host, whatever address names them) and data directory, every Patroni
    /// member, and the pgBackRest stanza in its repository. Two plans with a key in common drive one cluster.
    static func siteKeys(of plan: Plan) -> [(key: String, what: String)] {
        var keys: [(key: String, what: String)] = []
        let r = plan.repository
        let bucket = r.s3?.bucket ?? r.gcs?.bucket ?? r.azure.map { "\($0.account)/\($0.container)" } ?? ""
        keys.append(("stanza \(r.type) \(bucket) \(r.path) \(r.stanza)", "pgBackRest stanza \(r.stanza) in repository \(r.path)"))
        for (site, instance) in plan.allInstances {
            let local = site.driver == .local || HostAddress.isLocal(instance.host)
            let host = local ? "this host" : instance.host.lowercased()
            keys.append(
                ("endpoint \(host):\(instance.port)", "instance \(PlanValues.quoted(instance.name)) on \(instance.host):\(instance.port)"))
            keys.append(
                (
                    "directory \(site.driver == .local ? "local" : host) \(instance.dataDirectory)",
                    "the data directory \(instance.dataDirectory) of instance \(PlanValues.quoted(instance.name))"
                ))
            if let url = instance.patroni?.url {
                keys.append(("patroni \(url.lowercased())", "the Patroni member \(url) of instance \(PlanValues.quoted(instance.name))"))
            }
        }
        return keys
    }
}
