import Foundation

/// A libpq passfile (`host:port:database:user:password` per line, mode 0600): the only place passwords live.
///
/// The sandbox writes one entry per role with wildcards for host, port and database, so the same file
/// serves failoverd's admin connections, primary_conninfo and pg_rewind's --source-server on every instance.
public struct Passfile: Sendable {
    /// The file's path (plan.replication.passfile).
    public var path: String

    /// A passfile at `path`.
    public init(path: String) { self.path = path }

    /// The connection keywords for libpq with the passfile read by failoverd itself: `passfile` replaced by
    /// `password` when an entry matches.
    ///
    /// libpq would open the passfile as root and follow a symbolic link the PostgreSQL OS user planted there
    /// (to another root-only passfile, whose password would then go to a server that user controls). failoverd
    /// reads it as ``Files/readText(_:owner:)`` does, and refuses a link; the password only travels in process.
    static func resolvingPassword(_ info: ConnInfo) throws -> [(String, String)] {
        guard let path = info.passfile, let text = try Files.readText(path, owner: nil) else { return info.keywords }
        let keywords = info.keywords.filter { $0.0 != "passfile" }
        guard let password = password(in: text, host: info.host, port: info.port, database: info.dbname ?? info.user, user: info.user)
        else {
            return keywords
        }
        return keywords + [("password", password)]
    }

    /// The password of the first line of a passfile that matches, as libpq matches them (`*` matches anything).
    static func password(in text: String, host: String, port: Int, database: String, user: String) -> String? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = split(String(line.hasSuffix("\r") ? line.dropLast() : line))
            guard fields.count >= 5 else { continue }
            let wanted = [host, String(port), database, user]
            if zip(fields.prefix(4), wanted).allSatisfy({ $0 == "*" || $0 == $1 }) { return fields[4] }
        }
        return nil
    }

    /// The passwords per role of the wildcard entries (`*:*:*:role:password`); empty when the file is missing.
    ///
    /// - Throws: ``FailoverError`` (refused) when the passfile is a symbolic link or not a regular file.
    public func passwords(owner: OSUser? = nil) throws -> [String: String] {
        guard let text = try Files.readText(path, owner: owner) else { return [:] }
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = Self.split(String(line))
            if fields.count == 5, fields[0] == "*", fields[1] == "*", fields[2] == "*", result[fields[3]] == nil {
                result[fields[3]] = fields[4]
            }
        }
        return result
    }

    /// Makes sure every role in `roles` has a password: keeps the ones present, generates the missing ones,
    /// and writes the file (0600, owned by `owner`). Returns every role's password and whether the file was created.
    @discardableResult
    public func ensure(roles: [String], owner: OSUser?) throws -> (passwords: [String: String], created: Bool) {
        let existing = try Files.readText(path, owner: owner)
        let existed = existing != nil
        var known = try passwords(owner: owner)
        let missing = roles.filter { known[$0] == nil }
        guard !missing.isEmpty || !existed else { return (known, false) }
        var text = existing ?? "# libpq passfile written by failoverd sandbox: host:port:database:user:password\n"
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        for role in missing {
            let password = Self.generatePassword()
            known[role] = password
            text += "*:*:*:\(Self.escape(role)):\(password)\n"
        }
        try Files.makeDirectory((path as NSString).deletingLastPathComponent, mode: 0o755, owner: owner)
        try Files.write(text, to: path, mode: 0o600, owner: owner)
        return (known, !existed)
    }

    /// 32 random characters from [A-Za-z0-9] (about 190 bits), from the system's secure generator.
    public static func generatePassword() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }

    /// A passfile field: `:` and `\` escaped with `\`.
    static func escape(_ field: String) -> String {
        field.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ":", with: "\\:")
    }

    /// Splits a passfile line on unescaped `:`, unescaping fields.
    static func split(_ line: String) -> [String] {
        var fields: [String] = []
        var current = ""
        var escaped = false
        for character in line {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == ":" {
                fields.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        fields.append(current)
        return fields
    }
}
