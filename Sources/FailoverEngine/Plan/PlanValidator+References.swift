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

        for (i, site) in (root["sites"]?.arrayValue ?? []).enumerated() {
            let sitePath = JSONPath.root.appending("sites").appending(i)
            let siteName = nonEmptyString(site["name"])
            if let siteName {
                if let first = siteAt[siteName] {
                    problems.append(
                        .error(
                            sitePath.appending("name"), "site \"\(siteName)\" is declared twice (first at \(first))",
                            hint: "Give each site its own name: transitions refer to sites by name."))
                } else {
                    siteAt[siteName] = sitePath
                    siteNames.append(siteName)
                }
            }
            if site["role"]?.stringValue == Role.primary.rawValue {
                let this = siteName.map { "\"\($0)\"" } ?? "at \(sitePath)"
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
                let label = nonEmptyString(instance["name"]).map { "\"\($0)\"" } ?? "at \(path)"
                if let name = nonEmptyString(instance["name"]) {
                    if let first = instanceAt[name] {
                        problems.append(
                            .error(
                                path.appending("name"), "instance \"\(name)\" is declared twice (first at \(first))",
                                hint:
                                    "Give each instance a name unique across the whole plan: the journal and reports name instances alone."
                            ))
                    } else {
                        instanceAt[name] = path
                    }
                }
                guard let host = nonEmptyString(instance["host"])?.lowercased() else { continue }
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
                if let directory = nonEmptyString(instance["dataDirectory"]), directory.hasPrefix("/") {
                    let trimmed = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
                    let key = "\(host) \(trimmed)"
                    if let other = dataDirectoryOwner[key] {
                        problems.append(
                            .error(
                                path.appending("dataDirectory"),
                                "instances \(other) and \(label) both use the data directory \(trimmed) on host \(host)",
                                hint: "Two PostgreSQL servers cannot share a data directory; give each instance its own."))
                    } else {
                        dataDirectoryOwner[key] = label
                    }
                }
            }
        }
        checkSiteReferences(root, siteNames: siteNames, into: &problems)
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
                        "\(transitionLabel(value, index: i)): no site named \"\(name)\" (\"\(key)\")",
                        hint: didYouMean(name, among: siteNames) + known))
            }
        }
    }

    private static func nonEmptyString(_ value: JSONValue?) -> String? {
        guard let text = value?.stringValue, !text.isEmpty else { return nil }
        return text
    }
}
