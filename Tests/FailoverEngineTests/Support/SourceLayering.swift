import Foundation

/// Which folder of a source tree uses a type declared in which other folder: the reader behind
/// ``LayeringTests``. A folder is the first path component under the root (`Drivers` for
/// `Drivers/Postgres/PostgresInstanceDriver.swift`); a type is one declared at the top level of a file
/// (`struct`, `class`, `actor`, `enum`, `protocol`, `typealias`); a use is its name as a whole word in code,
/// comments and the text of string literals left out (the code inside an interpolation counts).
struct SourceLayering {
    /// One use of a type declared in another folder.
    struct Use: Equatable, CustomStringConvertible {
        /// The using file, relative to the root.
        var file: String
        /// Its line, from 1.
        var line: Int
        /// The type's name.
        var type: String
        /// The folder of the using file.
        var from: String
        /// The folder that declares the type.
        var to: String

        var description: String { "\(file):\(line) uses \(type) (declared in \(to)/): \(from) → \(to)" }
    }

    /// Every folder under the root that holds a Swift file, by name.
    var folders: Set<String> = []
    /// Where each top-level type is declared: its folder.
    var declaredIn: [String: String] = [:]
    /// Type names declared in more than one folder, with those folders (a use of one cannot be placed).
    var ambiguous: [String: Set<String>] = [:]
    /// Every use of a type declared in another folder, in file and line order.
    var uses: [Use] = []

    /// Reads every `.swift` file under `root`.
    init(root: String) throws {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var files: [(path: String, folder: String, code: String)] = []
        while let path = enumerator?.nextObject() as? String {
            guard path.hasSuffix(".swift"), let folder = path.split(separator: "/").first, path.contains("/") else { continue }
            let text = try String(contentsOfFile: root + "/" + path, encoding: .utf8)
            files.append((path, String(folder), Self.code(of: text)))
        }
        files.sort { $0.path < $1.path }
        for file in files {
            folders.insert(file.folder)
            for line in file.code.split(separator: "\n", omittingEmptySubsequences: false) {
                guard let name = Self.declaredType(String(line)) else { continue }
                if let other = declaredIn[name], other != file.folder {
                    ambiguous[name, default: [other]].insert(file.folder)
                } else {
                    declaredIn[name] = file.folder
                }
            }
        }
        for file in files {
            for (index, line) in file.code.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                var seen: Set<String> = []
                for word in Self.words(line) where !seen.contains(word) {
                    seen.insert(word)
                    guard let to = declaredIn[word], to != file.folder, ambiguous[word] == nil else { continue }
                    uses.append(Use(file: file.path, line: index + 1, type: word, from: file.folder, to: to))
                }
            }
        }
    }

    /// The type a line of code declares at the top level (no indentation), if any.
    static func declaredType(_ line: String) -> String? {
        guard let first = line.first, first != " ", first != "\t" else { return nil }
        var rest = Substring(line)
        // Attributes first (`@_spi(Benchmarks)`, `@available(macOS 14, *)`), with their arguments.
        while rest.first == "@" {
            var j = rest.index(after: rest.startIndex)
            while j < rest.endIndex, rest[j] == "_" || rest[j].isLetter || rest[j].isNumber { j = rest.index(after: j) }
            if j < rest.endIndex, rest[j] == "(" {
                var depth = 0
                while j < rest.endIndex {
                    if rest[j] == "(" { depth += 1 }
                    if rest[j] == ")" { depth -= 1 }
                    j = rest.index(after: j)
                    if depth == 0 { break }
                }
            }
            rest = rest[j...].drop { $0 == " " }
        }
        let modifiers: Set<Substring> = ["public", "internal", "package", "private", "fileprivate", "final", "indirect", "nonisolated"]
        let keywords: Set<Substring> = ["struct", "class", "actor", "enum", "protocol", "typealias"]
        let tokens = rest.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "<" || $0 == "{" || $0 == "=" })
        for (i, token) in tokens.enumerated() {
            if keywords.contains(token) { return i + 1 < tokens.count ? String(tokens[i + 1]) : nil }
            guard modifiers.contains(token) else { return nil }
        }
        return nil
    }

    /// The identifiers of a line of code.
    static func words(_ line: Substring) -> [String] {
        var out: [String] = []
        var current = ""
        for c in line {
            if c == "_" || c.isLetter || c.isNumber {
                current.append(c)
            } else {
                if let f = current.first, !f.isNumber { out.append(current) }
                current = ""
            }
        }
        if let f = current.first, !f.isNumber { out.append(current) }
        return out
    }

    /// `text` with its comments and the text of its string literals blanked (newlines kept, so lines keep
    /// their numbers); the code of an interpolation is kept.
    static func code(of text: String) -> String {
        var scanner = Scanner(Array(text.unicodeScalars))
        scanner.code(untilClosingParenthesis: false)
        return String(String.UnicodeScalarView(scanner.out))
    }

    /// The lexer behind ``code(of:)``: Swift's comments (nested), string literals ("…", """…""", raw #"…"#)
    /// and interpolations (`\(…)`, `\#(…)`).
    struct Scanner {
        let s: [Unicode.Scalar]
        var i = 0
        var out: [Unicode.Scalar] = []

        init(_ s: [Unicode.Scalar]) { self.s = s }

        func at(_ text: String, _ k: Int) -> Bool {
            var j = k
            for c in text.unicodeScalars {
                guard j < s.count, s[j] == c else { return false }
                j += 1
            }
            return true
        }

        mutating func code(untilClosingParenthesis: Bool) {
            var depth = 0
            while i < s.count {
                if at("//", i) {
                    while i < s.count, s[i] != "\n" { i += 1 }
                } else if at("/*", i) {
                    var nested = 0
                    repeat {
                        if at("/*", i) {
                            nested += 1
                            i += 2
                        } else if at("*/", i) {
                            nested -= 1
                            i += 2
                        } else {
                            if s[i] == "\n" { out.append("\n") }
                            i += 1
                        }
                    } while nested > 0 && i < s.count
                } else if s[i] == "#" || s[i] == "\"" {
                    var hashes = 0
                    while i + hashes < s.count, s[i + hashes] == "#" { hashes += 1 }
                    guard i + hashes < s.count, s[i + hashes] == "\"" else {
                        out.append(s[i])
                        i += 1
                        continue
                    }
                    i += hashes
                    let quotes = at("\"\"\"", i) ? 3 : 1
                    i += quotes
                    string(hashes: hashes, quotes: quotes)
                    out.append(contentsOf: "\"\"".unicodeScalars)
                } else {
                    if untilClosingParenthesis {
                        if s[i] == "(" { depth += 1 }
                        if s[i] == ")" {
                            if depth == 0 {
                                i += 1
                                return
                            }
                            depth -= 1
                        }
                    }
                    out.append(s[i])
                    i += 1
                }
            }
        }

        mutating func string(hashes: Int, quotes: Int) {
            let pounds = String(repeating: "#", count: hashes)
            let close = String(repeating: "\"", count: quotes) + pounds
            while i < s.count {
                if at("\\" + pounds + "(", i) {
                    i += hashes + 2
                    out.append(" ")
                    code(untilClosingParenthesis: true)
                    out.append(" ")
                } else if at("\\" + pounds, i) {
                    i += hashes + 2
                } else if at(close, i) {
                    i += close.unicodeScalars.count
                    return
                } else {
                    if s[i] == "\n" { out.append("\n") }
                    i += 1
                }
            }
        }
    }
}
