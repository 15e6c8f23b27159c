import Foundation

/// One row change of a lost transaction, from test_decoding's text
/// (`table public.t: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:1 v[text]:'z'`).
public struct RowChange: Sendable, Codable, Equatable {
    /// One column value.
    public struct Column: Sendable, Codable, Equatable {
        /// The column's name.
        public var name: String
        /// Its type.
        public var type: String
        /// Its value as text; nil for NULL.
        public var value: String?
        /// A TOASTed value the change left unchanged (not in WAL).
        public var unchangedToast: Bool
    }

    /// `schema.table`.
    public var table: String
    /// `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`.
    public var operation: String
    /// Where the change is in WAL.
    public var lsn: LSN
    /// The transaction.
    public var xid: UInt32
    /// The database.
    public var database: String
    /// The key (the table's replica identity columns) with their values; empty when unknown.
    public var key: [Column]
    /// The new row (INSERT, UPDATE).
    public var newValues: [Column]
    /// The old row, as far as the table's replica identity holds it (all columns with REPLICA IDENTITY FULL,
    /// the key otherwise).
    public var oldValues: [Column]

    /// Parses a decoded change; nil for BEGIN/COMMIT lines and anything not a table change.
    public static func parse(_ change: DecodedChange, keys: [String: [String]] = [:]) -> RowChange? {
        let text = change.data
        guard text.hasPrefix("table ") else { return nil }
        var found: (Range<String.Index>, String)?
        for op in ["INSERT", "UPDATE", "DELETE", "TRUNCATE"] {
            if let r = text.range(of: ": \(op):"), found.map({ r.lowerBound < $0.0.lowerBound }) ?? true { found = (r, op) }
        }
        guard let (range, operation) = found else { return nil }
        let table = String(text[text.index(text.startIndex, offsetBy: 6)..<range.lowerBound])
        var old: [Column] = []
        var new: [Column] = []
        var toOld = false
        var rest = Substring(text[range.upperBound...])
        while true {
            rest = rest.drop { $0 == " " }
            if rest.isEmpty { break }
            if rest.hasPrefix("old-key:") {
                toOld = true
                rest = rest.dropFirst(8)
                continue
            }
            if rest.hasPrefix("new-tuple:") {
                toOld = false
                rest = rest.dropFirst(10)
                continue
            }
            if rest.hasPrefix("(no-tuple-data)") || rest.hasPrefix("(no-flags)") || rest.hasPrefix("cascade")
                || rest.hasPrefix("restart_seqs")
            {
                rest = rest.drop { $0 != " " }
                continue
            }
            guard let (column, remainder) = column(rest) else { break }
            if toOld { old.append(column) } else { new.append(column) }
            rest = remainder
        }
        // A DELETE prints the old row (its identity) without a marker.
        if operation == "DELETE" {
            old = new
            new = []
        }
        let keyNames = keys[table] ?? []
        let source = old.isEmpty ? new : old
        let key = keyNames.compactMap { name in source.first { $0.name == name } }
        return RowChange(
            table: table, operation: operation, lsn: change.lsn, xid: change.xid, database: change.database, key: key, newValues: new,
            oldValues: old)
    }

    /// Reads `name[type]:value` from the start of `text`.
    static func column(_ text: Substring) -> (Column, Substring)? {
        var rest = text
        var name = ""
        if rest.first == "\"" {
            (name, rest) = quoted(rest, by: "\"")
        } else {
            name = String(rest.prefix { $0 != "[" })
            rest = rest.dropFirst(name.count)
        }
        guard rest.first == "[", let close = rest.range(of: "]:") else { return nil }
        let type = String(rest[rest.index(after: rest.startIndex)..<close.lowerBound])
        rest = rest[close.upperBound...]
        var value: String? = ""
        var unchanged = false
        if rest.first == "'" {
            let (v, remainder) = quoted(rest, by: "'")
            value = v
            rest = remainder
        } else {
            let word = String(rest.prefix { $0 != " " })
            rest = rest.dropFirst(word.count)
            if word == "null" { value = nil } else if word == "unchanged-toast-datum" { unchanged = true } else { value = word }
        }
        return (Column(name: name, type: type, value: value, unchangedToast: unchanged), rest)
    }

    /// The text of a quoted token at the start of `text` (the quote doubled inside it), and what follows.
    static func quoted(_ text: Substring, by quote: Character) -> (String, Substring) {
        var rest = text.dropFirst()
        var out = ""
        while let c = rest.first {
            rest = rest.dropFirst()
            guard c == quote else {
                out.append(c)
                continue
            }
            guard rest.first == quote else { break }
            out.append(quote)
            rest = rest.dropFirst()
        }
        return (out, rest)
    }

    /// `id=1, v='z'`.
    static func describe(_ columns: [Column]) -> String {
        columns.map { c in
            c.unchangedToast
                ? "\(c.name)=(unchanged TOAST)"
                : "\(c.name)=" + (c.value.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" } ?? "NULL")
        }.joined(separator: ", ")
    }

    /// One line for people: `public.t UPDATE key id='1' new id='1', v='z' old id='1', v='x'`.
    public var line: String {
        var parts = [table, operation]
        if !key.isEmpty { parts.append("key " + Self.describe(key)) }
        if !newValues.isEmpty { parts.append("new " + Self.describe(newValues)) }
        if !oldValues.isEmpty && operation != "DELETE" || (operation == "DELETE" && oldValues.count > key.count) {
            parts.append("old " + Self.describe(oldValues))
        }
        return parts.joined(separator: "  ")
    }
}
