import Foundation

/// A WAL file name as PostgreSQL and pgBackRest write it: `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log, segment),
/// possibly followed by `.partial` or `.XXXXXXXX.backup`.
public struct WALSegmentName: Sendable, Equatable {
    /// The timeline.
    public var timeline: Int
    /// The log and segment part (`LLLLLLLLSSSSSSSS`), ordered like the WAL position it names.
    public var position: String
    /// What follows the 24 characters: empty, `.partial`, or a backup history suffix.
    public var suffix: String

    /// Parses `name`; nil for anything that is not a segment name (a `.history` file, say).
    public init?(_ name: String) {
        let hex = CharacterSet(charactersIn: "0123456789ABCDEF")
        let head = String(name.prefix(24))
        guard head.count == 24, head.unicodeScalars.allSatisfy(hex.contains), let tli = Int(head.prefix(8), radix: 16) else { return nil }
        timeline = tli
        position = String(head.suffix(16))
        suffix = String(name.dropFirst(24))
    }

    /// True when this archived file shows that `segment` (on its timeline or an earlier one) is archived:
    /// a complete segment at or after it, on the same or a later timeline.
    public func covers(_ segment: WALSegmentName) -> Bool {
        guard timeline >= segment.timeline else { return false }
        return suffix.isEmpty ? position >= segment.position : position > segment.position
    }
}
