import Foundation

/// A value journaled as its text (`"2"`, `"true"`, `"0/3000060"`): evidence is stored as a JSON object of
/// strings, the form of every journal since v1, and decoded back into its type.
@propertyWrapper
public struct TextCoded<Value: LosslessStringConvertible & Sendable & Equatable>: Codable, Sendable, Equatable {
    /// The typed value.
    public var wrappedValue: Value

    /// Wraps a value.
    public init(wrappedValue: Value) { self.wrappedValue = wrappedValue }

    /// Decodes the value from its text; throws when the text is not one.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let v = Value(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "\"\(text)\" is not a \(Value.self)")
        }
        wrappedValue = v
    }

    /// Encodes the value as its text.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(wrappedValue.description)
    }
}

/// An optional value journaled as its text; absent from the JSON object when nil.
@propertyWrapper
public struct OptionalTextCoded<Value: LosslessStringConvertible & Sendable & Equatable>: Codable, Sendable, Equatable {
    /// The typed value, or nil.
    public var wrappedValue: Value?

    /// Wraps a value.
    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    /// Decodes the value from its text.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            wrappedValue = nil
            return
        }
        let text = try c.decode(String.self)
        guard let v = Value(text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "\"\(text)\" is not a \(Value.self)")
        }
        wrappedValue = v
    }

    /// Encodes the value as its text.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue.description) } else { try c.encodeNil() }
    }
}

extension KeyedDecodingContainer {
    /// A missing key decodes as nil.
    public func decode<T>(_ type: OptionalTextCoded<T>.Type, forKey key: Key) throws -> OptionalTextCoded<T> {
        try decodeIfPresent(type, forKey: key) ?? OptionalTextCoded(wrappedValue: nil)
    }
}

extension KeyedEncodingContainer {
    /// A nil value leaves the key out.
    public mutating func encode<T>(_ value: OptionalTextCoded<T>, forKey key: Key) throws {
        if value.wrappedValue != nil { try encodeIfPresent(value, forKey: key) }
    }
}

extension LSN: LosslessStringConvertible {}
