extension PlanValidator {
    /// Pass 4: names and endpoints that must be unique, at most one declared primary, and transitions that
    /// name sites the plan has. Values of the wrong type were reported by the shape pass and are skipped here.
    static func checkReferences(_ root: JSONValue, into problems: inout [PlanProblem]) {
        var siteAt: [String: JSONPath] = [:]
        var siteNames: [String] = []
        var primary: String?
        var instanceAt: [String: JSONPath] = [:]
        var endpointOwner: [String: String] = [:]
        var dataDirectoryOwner: [String: String] = [:]
        var trees: [(directory: String, label: String, path: JSONPath)] = []

        for (i, site) in (root["sites"]?.arrayValue ?? []).enumerated() {
            let sitePath = JSONPath.root.appending("sites").appending(i)
            let siteName = nonEmptyString(site["name"])
            if let siteName {
                if let first = siteAt[siteName] {
                    problems.append(
                        .error(
                            sitePath.appending("name"), "site \(PlanValues.quoted(siteName)) is declared twice (first at \(first))",
                            hint: "Give each site its own name: transitions refer to sites by name."))
                } else {
                    siteAt[siteName] = sitePath
                    siteNames.append(siteName)
                }
            }
            checkPatroni(site, at: sitePath, into: &problems)
            if site["role"]?.stringValue == Role.primary.rawValue {
                let this = siteName.map { PlanValues.quoted($0) } ?? "at \(sitePath)"
                if let primary {
                    problems.append(
                        .error(
                            sitePath.appending("role"), "sites \(primary) and \(this) are both declared primary",
                            hint:
                                "A plan starts from one primary at most: give the other site the role it really has now (fenced, or a standby); `failoverd status` shows it."
                        ))
                } else {
                    primary = this
                }
            }
            for (j, instance) in (site["instances"]?.arrayValue ?? []).enumerated() {
                let path = sitePath.appending("instances").appending(j)
                let label = nonEmptyString(instance["name"]).map { PlanValues.quoted($0) } ?? "at \(path)"
                if let name = nonEmptyString(instance["name"]) {
                    if let first = instanceAt[name] {
                        problems.append(
                            .error(
                                path.appending("name"), "instance \(PlanValues.quoted(name)) is declared twice (first at \(first))",
                                hint:
                                    "Give each instance a name unique across the whole plan: the journal and reports name instances alone."
                            ))
                    } else {
                        instanceAt[name] = path
                    }
                }
                guard let host = nonEmptyString(instance["host"])?.lowercased() else { continue }
                if driverKind(of: site) == .local, PlanValues.hostProblem(host) == nil, !HostAddress.isLocal(host) {
                    problems.append(
                        .error(
                            path.appending("host"),
                            "instance \(label) of a local site is on \(PlanValues.quoted(host)), which is not this host",
                            hint:
                                "The local driver manages servers on this host only: use a loopback address (127.0.0.1, ::1), localhost, this host's name or one of its addresses. Whether an address is local is decided on the address, not on how it starts."
                        ))
                }
                if let port = instance["port"]?.integerValue, (1...65535).contains(port) {
                    let endpoint = "\(host):\(port)"
                    if let other = endpointOwner[endpoint] {
                        problems.append(
                            .error(
                                path.appending("port"), "instances \(other) and \(label) both listen on \(endpoint)",
                                hint: "Give each instance on a shared host its own port."))
                    } else {
                        endpointOwner[endpoint] = label
                    }
                }
                if let directory = nonEmptyString(instance["dataDirectory"]),
                    PlanValues.pathProblem(directory, maximumLength: PlanValues.maximumDataDirectoryLength) == nil
                {
                    // Local sites all live on this host, whatever address names it: the directory alone decides.
                    let local = driverKind(of: site) == .local
                    let key = local ? "local \(directory)" : "\(host) \(directory)"
                    if let other = dataDirectoryOwner[key] {
                        problems.append(
                            .error(
                                path.appending("dataDirectory"),
                                "instances \(other) and \(label) both use the data directory \(directory)\(local ? " on this host" : " on host \(host)")",
                                hint: "Two PostgreSQL servers cannot share a data directory; give each instance its own."))
                    } else {
                        dataDirectoryOwner[key] = label
                        trees.append((directory, label, path.appending("dataDirectory")))
                    }
                }
            }
        }
        checkNesting(root, trees: trees, into: &problems)
        checkSiteReferences(root, siteNames: siteNames, into: &problems)
    }

    /// No data directory (with the state directory failoverd keeps next to it, `<dataDirectory>.failoverd`) lies
    /// inside another, and the repository, its configuration and the passfile lie inside none: `sandbox down`,
    /// restores and rewinds empty a data directory, and must never reach another instance's files or the repository.
    private static func checkNesting(
        _ root: JSONValue, trees: [(directory: String, label: String, path: JSONPath)], into problems: inout [PlanProblem]
    ) {
        for (i, a) in trees.enumerated() {
            for b in trees[(i + 1)...] {
                let (outer, inner) = a.directory.count <= b.directory.count ? (a, b) : (b, a)
                if PlanValues.isWithin(inner.directory, outer.directory)
                    || PlanValues.isWithin(inner.directory, outer.directory + ".failoverd")
                    || inner.directory == outer.directory + ".failoverd"
                {
                    problems.append(
                        .error(
                            inner.path,
                            "instance \(inner.label)'s data directory \(inner.directory) lies inside instance \(outer.label)'s \(outer.directory)",
                            hint: "Give each instance a directory of its own, side by side (e.g. /srv/pg/dr-0 and /srv/pg/dr-1)."))
                }
            }
        }
        let others: [(String, JSONPath)] = [
            ("repository", .root.appending("repository").appending("path")),
            ("repository", .root.appending("repository").appending("config")),
            ("replication", .root.appending("replication").appending("passfile")),
        ]
        for (object, path) in others {
            guard case .key(let key)? = path.components.last, let value = nonEmptyString(root[object]?[key]),
                PlanValues.pathProblem(value) == nil
            else { continue }
            for tree in trees
            where PlanValues.isWithin(value, tree.directory) || PlanValues.isWithin(value, tree.directory + ".failoverd")
                || PlanValues.isWithin(tree.directory, value)
            {
                problems.append(
                    .error(
                        path,
                        "\(object).\(key) \(value) and instance \(tree.label)'s data directory \(tree.directory) lie one inside the other",
                        hint:
                            "Keep the repository, its configuration and the passfile outside every data directory, and no data directory inside them."
                    ))
            }
        }
    }

    /// Every site a transition names (site, to, upstream, source) must be a site of the plan.
    private static func checkSiteReferences(_ root: JSONValue, siteNames: [String], into problems: inout [PlanProblem]) {
        let referring = ["site", "upstream", "to", "source"]
        for (i, value) in (root["transitions"]?.arrayValue ?? []).enumerated() {
            // With a known action, only the fields it takes (others were reported as not applying).
            let keys = transition(from: value).map { t in referring.filter(t.action.requiredFields.contains) } ?? referring
            for key in keys {
                guard let name = nonEmptyString(value[key]), !siteNames.contains(name) else { continue }
                let known =
                    siteNames.isEmpty
                    ? "The plan declares no site." : "The sites in this plan are: \(siteNames.joined(separator: ", "))."
                problems.append(
                    .error(
                        JSONPath.root.appending("transitions").appending(i).appending(key),
                        "\(transitionLabel(value, index: i)): no site named \(PlanValues.quoted(name)) (\"\(key)\")",
                        hint: didYouMean(name, among: siteNames) + known))
            }
        }
    }

    /// The driver kind a site's JSON names; nil when it names none, or one failoverd does not know (the
    /// shape pass reports that).
    static func driverKind(of site: JSONValue) -> DriverKind? { site["driver"]?.stringValue.flatMap(DriverKind.init(rawValue:)) }

    private static func nonEmptyString(_ value: JSONValue?) -> String? {
        guard let text = value?.stringValue, !text.isEmpty else { return nil }
        return text
    }

    /// A `patroni` site names its cluster (`patroni.scope`) and each member's REST API (`patroni.url`);
    /// other sites carry no Patroni settings, which would otherwise be silently ignored.
    private static func checkPatroni(_ site: JSONValue, at path: JSONPath, into problems: inout [PlanProblem]) {
        let label = nonEmptyString(site["name"]).map { "site \(PlanValues.quoted($0))" } ?? "site at \(path)"
        let isPatroni = driverKind(of: site) == .patroni
        if isPatroni, site["patroni"] == nil {
            problems.append(
                .error(
                    path.appending("patroni"), "\(label) uses driver patroni but names no Patroni cluster",
                    hint: "Add \"patroni\": { \"scope\": \"<the cluster's scope>\" } to the site."))
        } else if !isPatroni, site["patroni"] != nil {
            problems.append(
                .error(
                    path.appending("patroni"), "\(label) has Patroni settings but its driver is not patroni",
                    hint: "Set \"driver\": \"patroni\", or remove \"patroni\" from the site."))
        }
        for (j, instance) in (site["instances"]?.arrayValue ?? []).enumerated() where (instance["patroni"] == nil) == isPatroni {
            let name = nonEmptyString(instance["name"]).map { "instance \(PlanValues.quoted($0))" } ?? "instance \(j)"
            problems.append(
                isPatroni
                    ? .error(
                        path.appending("instances").appending(j).appending("patroni"),
                        "\(name) of Patroni \(label) does not say where its member's REST API answers",
                        hint: "Add \"patroni\": { \"url\": \"http://<host>:8008\" } to the instance.")
                    : .error(
                        path.appending("instances").appending(j).appending("patroni"),
                        "\(name) has Patroni settings but \(label) does not use driver patroni",
                        hint: "Set the site's \"driver\": \"patroni\", or remove \"patroni\" from the instance."))
        }
    }
}
