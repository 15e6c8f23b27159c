import Foundation

/// A timeline's ancestry as its history file (`0000000N.history`) records it: for each ancestor timeline,
/// the WAL position where this timeline's history left it.
public struct TimelineHistory: Sendable, Equatable, Codable {
    /// One line of a history file: `parentTLI switchpoint reason`.
    public struct Entry: Sendable, Equatable, Codable {
        /// The ancestor timeline.
        public var timeline: Int
        /// Where the history left it: WAL before this position is that timeline's.
        public var end: LSN
    }

    /// The timeline this history describes.
    public var timeline: Int
    /// Its ancestors, oldest first.
    public var entries: [Entry]

    /// The history of `timeline` with these ancestors (none for timeline 1).
    public init(timeline: Int, entries: [Entry] = []) {
        self.timeline = timeline
        self.entries = entries
    }

    /// Parses a history file's text; nil when a line is not `TLI LSN …`.
    public init?(timeline: Int, text: String) {
        var entries: [Entry] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count >= 2, let tli = Int(fields[0]), let end = LSN(String(fields[1])), tli < timeline else { return nil }
            entries.append(Entry(timeline: tli, end: end))
        }
        self.timeline = timeline
        self.entries = entries
    }

    /// The history file's name for timeline `tli`: `00000002.history`.
    public static func fileName(_ tli: Int) -> String { String(format: "%08X.history", tli) }

    /// The timeline WAL at `lsn` belongs to in this history.
    public func timeline(at lsn: LSN) -> Int {
        entries.first { lsn < $0.end }?.timeline ?? timeline
    }

    /// Where timeline `tli` begins in this history (0 for the first).
    func begin(of tli: Int) -> LSN {
        guard let i = entries.firstIndex(where: { $0.timeline == tli }) else {
            return entries.last?.end ?? .zero
        }
        return i == 0 ? .zero : entries[i - 1].end
    }

    /// The timeline of the file that holds segment `segment` (of `segmentSize` bytes): the newest timeline of
    /// this history that began at or before the segment's start, as recovery reads it (a timeline's first
    /// segment holds its parent's WAL up to the switch).
    public func timeline(ofSegment segment: UInt64, segmentSize: UInt64) -> Int {
        let lineage = entries.map(\.timeline) + [timeline]
        for tli in lineage.reversed() where begin(of: tli).value / segmentSize <= segment { return tli }
        return lineage.first ?? timeline
    }

    /// Where this history and `other` part: the first position whose WAL belongs to a different timeline in
    /// each, with both timelines there; nil when one history contains the other up to its own end (the same
    /// timeline, or `other` descends from this one without this one having left the common timeline).
    public func fork(from other: TimelineHistory) -> Fork? {
        if timeline == other.timeline { return nil }
        var points = Set(entries.map(\.end) + other.entries.map(\.end))
        points.insert(.zero)
        for p in points.sorted() where timeline(at: p) != other.timeline(at: p) {
            return Fork(lsn: p, timeline: timeline(at: p), otherTimeline: other.timeline(at: p))
        }
        return nil
    }

    /// Where two histories part.
    public struct Fork: Sendable, Equatable, Codable {
        /// The first position not shared.
        public var lsn: LSN
        /// This history's timeline at that position.
        public var timeline: Int
        /// The other history's timeline there.
        public var otherTimeline: Int
    }
}

/// WAL segment file names on a history.
public enum WALSegments {
    /// The file name of segment `segment` on `timeline`: `TTTTTTTTLLLLLLLLSSSSSSSS`.
    public static func name(timeline: Int, segment: UInt64, segmentSize: UInt64) -> String {
        let perLog = 0x1_0000_0000 / segmentSize
        return String(format: "%08X%08X%08X", timeline, UInt32(segment / perLog), UInt32(segment % perLog))
    }

    /// The segment number a file name names; nil when it is not a segment name.
    public static func segment(of name: String, segmentSize: UInt64) -> (timeline: Int, segment: UInt64)? {
        guard name.count == 24, let tli = Int(name.prefix(8), radix: 16),
            let log = UInt64(name.dropFirst(8).prefix(8), radix: 16), let seg = UInt64(name.suffix(8), radix: 16)
        else { return nil }
        return (tli, log * (0x1_0000_0000 / segmentSize) + seg)
    }

    /// The first position of segment `segment`.
    public static func start(of segment: UInt64, segmentSize: UInt64) -> LSN { LSN(segment * segmentSize) }
}
