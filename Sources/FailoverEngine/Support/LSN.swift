import Foundation

/// A PostgreSQL write-ahead log location, written `X/Y` as PostgreSQL prints it.
public struct LSN: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The 64-bit byte position in the WAL stream.
    public var value: UInt64

    /// Creates a location from its byte position.
    public init(_ value: UInt64) { self.value = value }

    /// Parses PostgreSQL's `X/Y` notation (`0/3000060`); nil when the text is not an LSN.
    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16),
            hi <= 0xFFFF_FFFF, lo <= 0xFFFF_FFFF
        else { return nil }
        value = hi << 32 | lo
    }

    /// The location in PostgreSQL's `X/Y` notation.
    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    /// Bytes from `other` to this location, zero when `other` is ahead.
    public func bytes(after other: LSN) -> UInt64 { value > other.value ? value - other.value : 0 }

    public static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }
    public static let zero = LSN(0)

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let lsn = LSN(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an LSN: \(text)"))
        }
        self = lsn
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
