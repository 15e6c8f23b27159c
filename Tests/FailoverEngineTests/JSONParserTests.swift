import Foundation
import Testing

@testable import FailoverEngine

/// The strict JSON parser under PlanValidator: positions, key order, duplicates, strictness.
struct PlanValidatorJSONParserTests {
    private func syntaxError(_ text: String) -> JSONParser.SyntaxError? { syntaxError(Data(text.utf8)) }

    private func syntaxError(_ data: Data) -> JSONParser.SyntaxError? {
        do {
            _ = try JSONParser.parse(data)
            return nil
        } catch {
            return error
        }
    }

    @Test func keepsKeyOrderAndNumberLiterals() throws {
        let document = try JSONParser.parse(Data(#"{"b": 1, "a": [6432.0, -1e3, true, null], "c": "\u00e9\n"}"#.utf8))
        #expect(document.value.objectMembers?.map(\.key) == ["b", "a", "c"])
        #expect(document.value["a"] == .array([.number("6432.0"), .number("-1e3"), .bool(true), .null]))
        #expect(document.value["c"] == .string("é\n"))
        #expect(document.value["a"]?.arrayValue?.first?.integerValue == nil)
        #expect(document.value["b"]?.integerValue == 1)
        #expect(document.duplicateKeys.isEmpty)
    }

    @Test func decodesSurrogatePairsAndSkipsAByteOrderMark() throws {
        let document = try JSONParser.parse(Data([0xEF, 0xBB, 0xBF]) + Data(#"{"k": "\ud83d\ude00"}"#.utf8))
        #expect(document.value["k"] == .string("😀"))
    }

    @Test func reportsDuplicateKeysWithTheirPathAndBothPositions() throws {
        let text = "{\n  \"sites\": [ { \"name\": \"a\",\n    \"name\": \"b\" } ]\n}"
        let document = try JSONParser.parse(Data(text.utf8))
        let duplicate = try #require(document.duplicateKeys.first)
        #expect(document.duplicateKeys.count == 1)
        #expect(duplicate.path.description == "$.sites[0].name")
        #expect((duplicate.firstLine, duplicate.firstColumn) == (2, 16))
        #expect((duplicate.line, duplicate.column) == (3, 5))
        #expect(document.value["sites"]?.arrayValue?.first?["name"] == .string("a"))
    }

    /// Each malformed document, the line and column the error must point at, and a fragment of its message.
    static let malformed: [(text: String, line: Int, column: Int, fragment: String)] = [
        ("", 1, 1, "the file is empty"),
        ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3, "expected ',' or '}' after the value of \"a\" (is a comma missing?)"),
        ("{\n  \"a\": [1,\n    2,\n  ]\n}", 3, 6, "trailing comma before ']'"),
        ("{\"a\": 1,}", 1, 8, "trailing comma before '}'"),
        ("{'a': 1}", 1, 2, "double quotes, not single quotes"),
        ("{a: 1}", 1, 2, "found the word 'a'"),
        ("{\"a\": True}", 1, 7, "found the word 'True'"),
        ("{\"a\": // note\n 1}", 1, 7, "comments are not allowed"),
        ("{\"a\": \"open\n}", 1, 7, "runs past the end of the line"),
        ("{\"a\": \"tab\there\"}", 1, 11, "control character U+0009"),
        ("{\"a\": \"C:\\data\"}", 1, 10, "invalid escape '\\d'"),
        ("{\"a\": \"\\ud800\"}", 1, 8, "high surrogate"),
        ("{\"a\": 012}", 1, 7, "leading zeros"),
        ("{\"a\": 1.}", 1, 9, "digit after the decimal point"),
        ("{\"a\": 1e999}", 1, 7, "too large"),
        ("{\"é\": \"ü\", \"b\": x}", 1, 17, "found the word 'x'"),
        ("[1, 2", 1, 6, "the array opened at line 1, column 1 is never closed"),
        ("{\"a\": {\"b\": 1}", 1, 15, "the object opened at line 1, column 1 is never closed"),
        ("{\"a\": 1}}", 1, 9, "after the end of the top-level value"),
        (String(repeating: "[", count: 200) + String(repeating: "]", count: 200), 1, 129, "nest deeper than 128"),
    ]

    @Test(arguments: 0..<malformed.count) func pointsAtTheLineAndColumnOfASyntaxError(_ i: Int) throws {
        let (text, line, column, fragment) = Self.malformed[i]
        let error = try #require(syntaxError(text), "\(text.debugDescription) should not parse")
        #expect((error.line, error.column) == (line, column), "\(text.debugDescription): \(error)")
        #expect(error.message.contains(fragment), "\(error.message)")
        #expect(error.description.hasPrefix("line \(line), column \(column): "))
    }

    @Test func rejectsInvalidUTF8WhereItIs() throws {
        let error = try #require(syntaxError(Data(#"{"a": "x"#.utf8) + Data([0xFF, 0x22, 0x7D])))
        #expect((error.line, error.column) == (1, 9))
        #expect(error.message.contains("invalid UTF-8 byte 0xFF"))
    }

    @Test func writesPathsWithBracketsForKeysThatAreNotIdentifiers() {
        let path = JSONPath.root.appending("sites").appending(1).appending("odd key").appending("a\"b")
        #expect(path.description == #"$.sites[1]["odd key"]["a\"b"]"#)
        #expect(JSONPath.root.description == "$")
    }
}
