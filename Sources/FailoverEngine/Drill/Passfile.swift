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

    /// The passwords per role of the wildcard entries (`*:*:*:role:password`); empty when the file is missing.
    public func passwords() -> [String: String] {
        guard let text = Files.read(path) else { return [:] }
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
        let existed = Files.exists(path)
        var known = passwords()
        let missing = roles.filter { known[$0] == nil }
        guard !missing.isEmpty || !existed else { return (known, false) }
        var text = Files.read(path) ?? "# libpq passfile written by failoverd sandbox: host:port:database:user:password\n"
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
