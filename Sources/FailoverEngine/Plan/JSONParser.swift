import Foundation

/// A strict JSON (RFC 8259) parser that says where a document is wrong, by line and column.
///
/// Besides syntax errors it reports keys that appear twice in one object (parsers disagree on which
/// value wins, so a plan must not depend on it) and keeps object key order. It accepts no extensions:
/// no comments, no trailing commas, no single quotes, no `NaN`. A leading UTF-8 byte order mark is
/// skipped, as RFC 8259 allows. Lines and columns count from 1; a column counts characters, not bytes.
public struct JSONParser {
    /// Why a document is not JSON, and where.
    public struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The line of the offending character, from 1.
        public var line: Int
        /// The column of the offending character, from 1, in characters.
        public var column: Int
        /// What is wrong, e.g. `expected ',' or '}' after the value of "port", found '"'`.
        public var message: String

        /// `line 3, column 14: <message>`.
        public var description: String { "line \(line), column \(column): \(message)" }
    }

    /// A key that appears more than once in the same object.
    public struct DuplicateKey: Sendable, Equatable {
        /// The path of the repeated member.
        public var path: JSONPath
        /// Where the repeated key is written.
        public var line: Int, column: Int
        /// Where the key was first written; the parsed value keeps that first occurrence.
        public var firstLine: Int, firstColumn: Int
    }

    /// A parsed document.
    public struct Document: Sendable, Equatable {
        /// The top-level value.
        public var value: JSONValue
        /// Every repeated key, in document order.
        public var duplicateKeys: [DuplicateKey]
    }

    /// How deeply arrays and objects may nest before the parser gives up (a plan needs 4 levels).
    public static let maximumDepth = 128

    /// Parses `data` as one JSON value.
    public static func parse(_ data: Data) throws(SyntaxError) -> Document {
        var parser = JSONParser(bytes: Array(data))
        return try parser.parseDocument()
    }

    private let bytes: [UInt8]
    private var index = 0
    private var duplicates: [DuplicateKey] = []

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private mutating func parseDocument() throws(SyntaxError) -> Document {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { index = 3 }
        skipWhitespace()
        guard index < bytes.count else { throw error("the file is empty; a plan is a JSON object", at: index) }
        let value = try parseValue(path: .root, depth: 0)
        skipWhitespace()
        guard index == bytes.count else {
            throw error("unexpected \(found()) after the end of the top-level value; remove it", at: index)
        }
        return Document(value: value, duplicateKeys: duplicates)
    }

    private mutating func parseValue(path: JSONPath, depth: Int) throws(SyntaxError) -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of the file; expected a value", at: index) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(path: path, depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(path: path, depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        case UInt8(ascii: "t"): return try parseLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try parseLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try parseLiteral("null", .null)
        default: throw unexpected(expecting: "a value")
        }
    }

    private mutating func parseObject(path: JSONPath, depth: Int) throws(SyntaxError) -> JSONValue {
        let open = index
        try checkDepth(depth)
        index += 1
        var members: [JSONValue.Member] = []
        var firstSeen: [String: Int] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object([])
        }
        while true {
            skipWhitespace()
            try checkNotAtEnd(opened: open, what: "object")
            let keyStart = index
            guard bytes[index] == UInt8(ascii: "\"") else {
                throw unexpected(expecting: "a key in double quotes")
            }
            let key = try parseString()
            skipWhitespace()
            try checkNotAtEnd(opened: open, what: "object")
            guard bytes[index] == UInt8(ascii: ":") else { throw unexpected(expecting: "':' after the key \"\(key)\"") }
            index += 1
            let value = try parseValue(path: path.appending(key), depth: depth)
            if let first = firstSeen[key] {
                let (line, column) = position(of: keyStart)
                let (firstLine, firstColumn) = position(of: first)
                duplicates.append(
                    .init(path: path.appending(key), line: line, column: column, firstLine: firstLine, firstColumn: firstColumn))
            } else {
                firstSeen[key] = keyStart
                members.append(.init(key: key, value: value))
            }
            skipWhitespace()
            try checkNotAtEnd(opened: open, what: "object")
            switch bytes[index] {
            case UInt8(ascii: ","):
                let comma = index
                index += 1
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                    throw error("trailing comma before '}'; remove it", at: comma)
                }
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default:
                throw unexpected(expecting: "',' or '}' after the value of \"\(key)\" (is a comma missing?)")
            }
        }
    }

    private mutating func parseArray(path: JSONPath, depth: Int) throws(SyntaxError) -> JSONValue {
        let open = index
        try checkDepth(depth)
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array([])
        }
        while true {
            try checkNotAtEnd(opened: open, what: "array")
            elements.append(try parseValue(path: path.appending(elements.count), depth: depth))
            skipWhitespace()
            try checkNotAtEnd(opened: open, what: "array")
            switch bytes[index] {
            case UInt8(ascii: ","):
                let comma = index
                index += 1
                skipWhitespace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                    throw error("trailing comma before ']'; remove it", at: comma)
                }
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default:
                throw unexpected(expecting: "',' or ']' after an array element (is a comma missing?)")
            }
        }
    }

    /// Parses a string whose opening quote is at `index`.
    private mutating func parseString() throws(SyntaxError) -> String {
        let open = index
        index += 1
        var buffer: [UInt8] = []
        while true {
            guard index < bytes.count else { throw error("the string starting here is never closed", at: open) }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                buffer.append(contentsOf: try parseEscape())
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw error(
                    "the string starting here runs past the end of the line; close it with '\"' or write a line break as \\n",
                    at: open)
            case 0..<0x20:
                throw error(
                    "control character U+\(hex4(UInt32(byte))) inside a string; escape it as \\u\(hex4(UInt32(byte)))", at: index)
            case 0x80...:
                let length = Self.utf8Length(lead: byte)
                guard length > 1, index + length <= bytes.count,
                    String(validating: bytes[index..<index + length], as: UTF8.self) != nil
                else {
                    throw error(
                        "invalid UTF-8 byte 0x\(String(byte, radix: 16, uppercase: true)); save the file as UTF-8", at: index)
                }
                buffer.append(contentsOf: bytes[index..<index + length])
                index += length
            default:
                buffer.append(byte)
                index += 1
            }
        }
    }

    /// Parses the escape whose backslash is at `index` and returns its UTF-8 bytes.
    private mutating func parseEscape() throws(SyntaxError) -> [UInt8] {
        let backslash = index
        index += 1
        guard index < bytes.count else { throw error("the string starting here is never closed", at: backslash) }
        let letter = bytes[index]
        index += 1
        switch letter {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return [letter]
        case UInt8(ascii: "b"): return [0x08]
        case UInt8(ascii: "f"): return [0x0C]
        case UInt8(ascii: "n"): return [0x0A]
        case UInt8(ascii: "r"): return [0x0D]
        case UInt8(ascii: "t"): return [0x09]
        case UInt8(ascii: "u"):
            var code = try parseHex4(escapeAt: backslash)
            if (0xDC00...0xDFFF).contains(code) {
                throw error(
                    "\\u\(hex4(code)) is a lone low surrogate; escape a character outside the BMP as a surrogate pair",
                    at: backslash)
            }
            if (0xD800...0xDBFF).contains(code) {
                guard bytes[index...].starts(with: [UInt8(ascii: "\\"), UInt8(ascii: "u")]) else {
                    throw error(
                        "\\u\(hex4(code)) is a high surrogate without the low surrogate that must follow it", at: backslash)
                }
                index += 2
                let low = try parseHex4(escapeAt: index - 2)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw error(
                        "\\u\(hex4(code)) must be followed by a low surrogate (\\uDC00 to \\uDFFF), found \\u\(hex4(low))",
                        at: backslash)
                }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let scalar = Unicode.Scalar(code) else {
                throw error("\\u\(hex4(code)) is not a Unicode scalar", at: backslash)
            }
            return Array(String(Character(scalar)).utf8)
        default:
            let shown = letter < 0x80 ? String(UnicodeScalar(letter)) : "…"
            throw error(
                "invalid escape '\\\(shown)' in a string; JSON allows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX (write a backslash as \\\\)",
                at: backslash)
        }
    }

    private mutating func parseHex4(escapeAt start: Int) throws(SyntaxError) -> UInt32 {
        guard index + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[index..<index + 4], as: UTF8.self), radix: 16),
            bytes[index..<index + 4].allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "-") })
        else { throw error("\\u must be followed by four hexadecimal digits", at: start) }
        index += 4
        return code
    }

    private mutating func parseNumber() throws(SyntaxError) -> String {
        let start = index
        func isDigit(_ i: Int) -> Bool { i < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard isDigit(index) else { throw error("expected a digit after '-'", at: index) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if isDigit(index) { throw error("numbers cannot have leading zeros", at: start) }
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { throw error("expected a digit after the decimal point", at: index) }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { throw error("expected a digit in the exponent", at: index) }
            while isDigit(index) { index += 1 }
        }
        let literal = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(literal), value.isFinite else {
            throw error("the number \(literal) is too large to represent", at: start)
        }
        return literal
    }

    private mutating func parseLiteral(_ word: String, _ value: JSONValue) throws(SyntaxError) -> JSONValue {
        guard bytes[index...].starts(with: word.utf8) else { throw unexpected(expecting: "a value") }
        index += word.utf8.count
        return value
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private func checkDepth(_ depth: Int) throws(SyntaxError) {
        guard depth <= Self.maximumDepth else {
            throw error("arrays and objects nest deeper than \(Self.maximumDepth) levels", at: index)
        }
    }

    private func checkNotAtEnd(opened open: Int, what: String) throws(SyntaxError) {
        guard index >= bytes.count else { return }
        let (line, column) = position(of: open)
        throw error("unexpected end of the file: the \(what) opened at line \(line), column \(column) is never closed", at: index)
    }

    /// The error for the token at `index`, which is not what the grammar expects there.
    private func unexpected(expecting expected: String) -> SyntaxError {
        guard index < bytes.count else { return error("unexpected end of the file; expected \(expected)", at: index) }
        switch bytes[index] {
        case UInt8(ascii: "/"): return error("comments are not allowed in JSON; remove it", at: index)
        case UInt8(ascii: "'"): return error("strings and keys need double quotes, not single quotes", at: index)
        case let b where Self.isWordByte(b):
            return error(
                "expected \(expected), found \(found()); strings and keys need double quotes, and the only bare words are true, false and null",
                at: index)
        default: return error("expected \(expected), found \(found())", at: index)
        }
    }

    /// The token at `index` for a message: `'}'`, `the word 'True'`, `the end of the file`.
    private func found() -> String {
        guard index < bytes.count else { return "the end of the file" }
        if Self.isWordByte(bytes[index]) {
            let word = bytes[index...].prefix { Self.isWordByte($0) }.prefix(24)
            return "the word '\(String(decoding: word, as: UTF8.self))'"
        }
        let length = bytes[index] < 0x80 ? 1 : Self.utf8Length(lead: bytes[index])
        if length > 0, index + length <= bytes.count, let text = String(validating: bytes[index..<index + length], as: UTF8.self) {
            return "'\(text)'"
        }
        return "the byte 0x\(String(bytes[index], radix: 16, uppercase: true))"
    }

    private func error(_ message: String, at offset: Int) -> SyntaxError {
        let (line, column) = position(of: offset)
        return SyntaxError(line: line, column: column, message: message)
    }

    /// The 1-based line and column (in characters) of byte `offset`.
    private func position(of offset: Int) -> (line: Int, column: Int) {
        let before = bytes[..<min(offset, bytes.count)]
        let lineStart = (before.lastIndex(of: 0x0A).map { $0 + 1 }) ?? 0
        let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
        let column = bytes[lineStart..<min(offset, bytes.count)].reduce(1) { ($1 & 0xC0) == 0x80 ? $0 : $0 + 1 }
        return (line, column)
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
    }

    /// The length of the UTF-8 sequence a lead byte starts, 0 when it cannot start one.
    private static func utf8Length(lead: UInt8) -> Int {
        switch lead {
        case 0xC2...0xDF: 2
        case 0xE0...0xEF: 3
        case 0xF0...0xF4: 4
        default: 0
        }
    }

    private func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
