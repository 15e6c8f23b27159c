/// A parsed JSON value that keeps what a validator needs and Foundation drops: object key order and
/// numbers exactly as written.
///
/// Produced by ``JSONParser``; ``PlanValidator`` walks it to report problems by JSON path.
public enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, as its literal text (`6432`, `-1.5e3`), so that `6432` and `6432.0` stay distinct.
    case number(String)
    /// A string, unescaped.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object, its members in document order; a duplicate key keeps its first value.
    case object([Member])

    /// One `"key": value` member of an object.
    public struct Member: Sendable, Equatable {
        /// The member's key.
        public var key: String
        /// The member's value.
        public var value: JSONValue

        /// Creates a member.
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// The value of member `key` when this is an object that has it.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// The text when this is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The elements when this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The members when this is an object.
    public var objectMembers: [Member]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The value when this is a number written as an integer (no fraction, no exponent) that fits in `Int`.
    public var integerValue: Int? {
        if case .number(let literal) = self { return Int(literal) }
        return nil
    }

    /// The value when this is a number.
    public var doubleValue: Double? {
        if case .number(let literal) = self { return Double(literal) }
        return nil
    }

    /// The kind of value with its article, for messages: `a string`, `an object`, `null`.
    public var kindDescription: String {
        switch self {
        case .null: "null"
        case .bool(let b): "a boolean (\(b))"
        case .number(let literal): "a number (\(literal))"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}
