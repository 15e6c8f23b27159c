extension PlanValidator {
    /// Pass 5: an object store's settings belong to its type: `s3` needs the `s3` object, and settings of
    /// another type are an error (they would be ignored, and the plan would not mean what it says).
    static func checkRepository(_ root: JSONValue, into problems: inout [PlanProblem]) {
        guard let repository = root["repository"], let type = repository["type"]?.stringValue else { return }
        let path = JSONPath.root.appending("repository")
        let settings = [
            "s3": "{ \"bucket\": …, \"endpoint\": …, \"region\": … }", "gcs": "{ \"bucket\": … }",
            "azure": "{ \"account\": …, \"container\": … }",
        ]
        if let example = settings[type], repository[type] == nil {
            problems.append(
                .error(
                    path.appending(type), "a repository of type \(type) needs its \"\(type)\" settings",
                    hint:
                        "Add \"\(type)\": \(example) to $.repository; credentials stay out of the plan (environment or the configuration file)."
                ))
        }
        if type != "posix", repository["config"] == nil {
            problems.append(
                .error(
                    path.appending("config"), "a repository of type \(type) needs a pgBackRest configuration file",
                    hint:
                        "Name it in $.repository.config: it holds the lock, log and spool paths for the PostgreSQL OS user and, unless they come from the environment, the credentials."
                ))
        }
        for other in settings.keys.sorted() where other != type && repository[other] != nil {
            problems.append(
                .error(
                    path.appending(other), "\"\(other)\" settings given for a repository of type \(type)",
                    hint: "Remove them, or set $.repository.type to \(other) if that is the repository the sites share."))
        }
    }
}
