extension PlanValidator {
    /// Pass 6: the settings of remote sites and of the fencing hook belong together: an `ssh` site has its
    /// `ssh` settings and no other site has them; a service manager has exactly the fields it takes; the hook's
    /// executable is an absolute path.
    static func checkRemote(_ root: JSONValue, into problems: inout [PlanProblem]) {
        for (i, site) in (root["sites"]?.arrayValue ?? []).enumerated() {
            let path = JSONPath.root.appending("sites").appending(i)
            let name = site["name"]?.stringValue.map { "site \(PlanValues.quoted($0))" } ?? "site \(i + 1)"
            let driver = site["driver"]?.stringValue
            let kind = driverKind(of: site)
            if kind == .ssh, site["ssh"] == nil {
                problems.append(
                    .error(
                        path.appending("ssh"), "\(name): driver ssh needs its \"ssh\" settings",
                        hint:
                            "Add \"ssh\": { \"user\": \"dba\", \"identityFile\": …, \"knownHostsFile\": … }: the login user, its key and the hosts' keys; see docs/operations.md."
                    ))
            }
            if kind != .ssh, site["ssh"] != nil {
                problems.append(
                    .error(
                        path.appending("ssh"), "\(name): \"ssh\" settings given for driver \(driver ?? "?")",
                        hint: "Remove them, or set \"driver\": \"ssh\" when the site's hosts are reached over SSH."))
            }
            for (j, instance) in (site["instances"]?.arrayValue ?? []).enumerated() {
                guard let service = instance["service"] else { continue }
                let at = path.appending("instances").appending(j).appending("service")
                let who = instance["name"]?.stringValue.map { "instance \(PlanValues.quoted($0))" } ?? "instance \(j + 1)"
                checkService(service, who: who, driver: driver, kind: kind, at: at, into: &problems)
            }
        }
        if let command = root["fencing"]?["command"]?.arrayValue, let first = command.first?.stringValue,
            let problem = PlanValues.pathProblem(first)
        {
            problems.append(
                .error(
                    JSONPath.root.appending("fencing").appending("command").appending(0),
                    "fencing: the hook's executable \(PlanValues.quoted(first)) \(problem)",
                    hint:
                        "Name the executable by its absolute path (no shell reads the command; failoverd appends the site and instance names)."
                ))
        }
    }

    private static func checkService(
        _ service: JSONValue, who: String, driver: String?, kind: DriverKind?, at path: JSONPath, into problems: inout [PlanProblem]
    ) {
        guard let manager = service["manager"]?.stringValue, ServiceSettings.managers.contains(manager) else { return }
        if kind != .ssh && manager != "pg_ctl" {
            problems.append(
                .error(
                    path.appending("manager"), "\(who): service manager \(manager) applies to driver ssh only",
                    hint: "The \(driver ?? "?") driver starts servers with pg_ctl; remove \"service\" or use \"driver\": \"ssh\"."))
        }
        let takes: [String: [String]] = ["pg_ctl": [], "pg_ctlcluster": ["version", "cluster"], "systemd": ["unit"]]
        let optionals: [String: [String]] = [
            "pg_ctl": [], "pg_ctlcluster": ["configurationRoot"], "systemd": ["scope", "runtimeDirectory", "dropInDirectory"],
        ]
        let fields = takes[manager] ?? []
        let optional = optionals[manager] ?? []
        for field in ["version", "cluster", "unit", "configurationRoot", "scope", "runtimeDirectory", "dropInDirectory"] {
            switch (fields.contains(field) || optional.contains(field), service[field] != nil) {
            case (true, false) where !optional.contains(field):
                problems.append(
                    .error(
                        path.appending(field), "\(who): service manager \(manager) needs \"\(field)\"",
                        hint: manager == "systemd"
                            ? "Add \"unit\": \"postgresql-15.service\"." : "Add \"version\": 15 and \"cluster\": \"main\"."
                    ))
            case (false, true):
                let all = fields + optional
                problems.append(
                    .error(
                        path.appending(field), "\(who): \"\(field)\" does not apply to service manager \(manager)",
                        hint:
                            "Remove it; \(manager) takes \(all.isEmpty ? "no other field" : all.map { "\"\($0)\"" }.joined(separator: ", "))."
                    ))
            default: break
            }
        }
        guard manager == "systemd" else { return }
        if service["runtimeDirectory"] != nil, service["scope"]?.stringValue != "user" {
            problems.append(
                .error(
                    path.appending("runtimeDirectory"), "\(who): \"runtimeDirectory\" applies to systemd scope user only",
                    hint: "Remove it, or set \"scope\": \"user\" when the unit belongs to the OS user's own manager (systemctl --user)."))
        }
        // systemd reads a unit's drop-ins from UNIT.d (or a template's NAME@.service.d) in its unit path.
        if let directory = service["dropInDirectory"]?.stringValue, !directory.hasSuffix(".service.d") {
            problems.append(
                .error(
                    path.appending("dropInDirectory"),
                    "\(who): drop-in directory \(PlanValues.quoted(directory)) is not a UNIT.service.d directory",
                    hint:
                        "Name the unit's drop-in directory in systemd's unit path, such as /etc/systemd/system/\(service["unit"]?.stringValue ?? "postgresql-15.service").d; failoverd checks at run time that systemd loads its drop-in from there."
                ))
        }
    }
}
