extension PlanValidator {
    /// Keys that look like they hold a secret: password, passwd, passphrase, secret or token anywhere in
    /// the key (any case), or a key that is or ends in the word pass or pwd (`pass`, `db_pass`, `adminPwd`).
    ///
    /// An ECMA-262 pattern so that docs/plan.schema.json uses the very same text (`propertyNames`).
    static let secretKeyPattern =
        "[Pp][Aa][Ss][Ss]([Ww][Oo][Rr][Dd]|[Ww][Dd]|[Pp][Hh][Rr][Aa][Ss][Ee])|[Ss][Ee][Cc][Rr][Ee][Tt]|[Tt][Oo][Kk][Ee][Nn]"
        + "|(^|[-_.])([Pp][Aa][Ss][Ss]|[Pp][Ww][Dd])$|[a-z0-9](Pass|PASS|Pwd|PWD)$"

    /// Values that carry a password: a libpq `password=` keyword (any case, spaces allowed before `=`) or
    /// credentials in a URL (`postgresql://user:secret@host`).
    static let secretValuePattern = "[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]\\s*=|://[^/:@\\s]+:[^/@\\s]*@"

    /// True when `key` matches ``secretKeyPattern``.
    static func looksLikeSecretKey(_ key: String) -> Bool { matches(key, secretKeyPattern) }

    /// Pass 3: an error for every key or string value anywhere in the document that looks like a secret.
    ///
    /// The message never repeats the value: validation output ends up in terminals and logs.
    static func checkSecrets(_ value: JSONValue, at path: JSONPath, into problems: inout [PlanProblem]) {
        let hint =
            "Secrets never appear in a plan: put the password in the libpq passfile named by replication.passfile "
            + "(lines host:port:database:user:password, mode 0600) and remove it here."
        switch value {
        case .object(let members):
            for member in members {
                let memberPath = path.appending(member.key)
                if looksLikeSecretKey(member.key) {
                    problems.append(
                        .error(memberPath, "field \"\(member.key)\" looks like a password or other secret", hint: hint))
                } else {
                    checkSecrets(member.value, at: memberPath, into: &problems)
                }
            }
        case .array(let elements):
            for (i, element) in elements.enumerated() { checkSecrets(element, at: path.appending(i), into: &problems) }
        case .string(let text) where matches(text, secretValuePattern):
            let field =
                path.components.last.map { component -> String in
                    if case .key(let key) = component { return "the value of \"\(key)\"" }
                    return "a value"
                } ?? "the document"
            problems.append(.error(path, "\(field) contains a password (password=… or user:password@ in a URL)", hint: hint))
        case .null, .bool, .number, .string:
            break
        }
    }

    /// The two patterns, compiled once: compiling a Regex per key made validating a plan of 1,000
    /// transitions take 0.7 s. Regex is not Sendable; these are only read.
    nonisolated(unsafe) private static let compiled: [String: Regex<AnyRegexOutput>] = Dictionary(
        uniqueKeysWithValues: [secretKeyPattern, secretValuePattern].map { pattern in
            do {
                return (pattern, try Regex(pattern))
            } catch {
                preconditionFailure("secret pattern \(pattern) does not compile: \(error)")
            }
        })

    /// True when `text` looks like it holds a password: messages must not repeat it.
    static func looksLikeSecretValue(_ text: String) -> Bool { matches(text, secretValuePattern) }

    private static func matches(_ text: String, _ pattern: String) -> Bool {
        guard let regex = compiled[pattern] else { preconditionFailure("unknown secret pattern \(pattern)") }
        return text.contains(regex)
    }
}
