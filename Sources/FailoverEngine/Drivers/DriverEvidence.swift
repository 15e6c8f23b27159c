import Foundation

/// A promotion: where recovery ended, the timelines, and the first write.
public struct Promotion: Codable, Sendable, Equatable {
    /// Where recovery ended (pg_last_wal_replay_lsn() after promotion).
    @TextCoded public var promotedAtLSN: LSN
    /// The timeline it was on.
    @TextCoded public var previousTimeline: Int
    /// The timeline it is on now.
    @TextCoded public var timeline: Int
    /// The LSN of the write that proved it accepts writes.
    @TextCoded public var firstWriteLSN: LSN
    /// What the target had received (pg_last_wal_receive_lsn()) just before the promotion.
    @OptionalTextCoded public var receiveLSNBeforePromotion: LSN? = nil
    /// What the target had replayed (pg_last_wal_replay_lsn()) just before the promotion.
    @OptionalTextCoded public var replayLSNBeforePromotion: LSN? = nil
    /// A failover's fork: where the new timeline's history file says it left the previous timeline.
    @OptionalTextCoded public var switchLSN: LSN? = nil
    /// Why a failover's fork could not be read from the history file.
    public var forkNote: String? = nil
}

/// A fence: how far the fenced primary's WAL got, and whether it answered.
public struct FenceEvidence: Codable, Sendable, Equatable {
    /// Its last known WAL position; nil when unknown.
    public var lastKnownLSN: LSN?
    /// It answered SQL when fenced.
    public var reachable: Bool
    /// It ran when fenced.
    public var wasRunning: Bool
    /// Where the last position came from.
    public var lastKnownFrom: String
    /// How an instance failoverd could not reach was fenced (the plan's hook, or --assume-fenced); nil
    /// when failoverd stopped it itself.
    public var fencedBy: String? = nil

    enum CodingKeys: String, CodingKey { case lastKnownLSN, reachable, wasRunning, lastKnownFrom, fencedBy }

    /// Creates the evidence.
    public init(lastKnownLSN: LSN?, reachable: Bool, wasRunning: Bool, lastKnownFrom: String) {
        self.lastKnownLSN = lastKnownLSN
        self.reachable = reachable
        self.wasRunning = wasRunning
        self.lastKnownFrom = lastKnownFrom
    }

    /// Decodes the journal's text form; `unknown` is a nil position.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let last = try c.decode(String.self, forKey: .lastKnownLSN)
        lastKnownLSN = last == "unknown" ? nil : LSN(last)
        guard last == "unknown" || lastKnownLSN != nil else {
            throw DecodingError.dataCorruptedError(forKey: .lastKnownLSN, in: c, debugDescription: "\"\(last)\" is not an LSN")
        }
        reachable = try c.decode(String.self, forKey: .reachable) == "true"
        wasRunning = try c.decode(String.self, forKey: .wasRunning) == "true"
        lastKnownFrom = try c.decode(String.self, forKey: .lastKnownFrom)
        fencedBy = try c.decodeIfPresent(String.self, forKey: .fencedBy)
    }

    /// Encodes the journal's text form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(lastKnownLSN?.description ?? "unknown", forKey: .lastKnownLSN)
        try c.encode(String(reachable), forKey: .reachable)
        try c.encode(String(wasRunning), forKey: .wasRunning)
        try c.encode(lastKnownFrom, forKey: .lastKnownFrom)
        try c.encodeIfPresent(fencedBy, forKey: .fencedBy)
    }
}
