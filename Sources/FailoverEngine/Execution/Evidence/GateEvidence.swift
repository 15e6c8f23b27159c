/// What the switchover gate saw: the primary's position, the target's replay, the lag and the timeline.
public struct SwitchoverGateEvidence: StepEvidence {
    /// pg_current_wal_lsn() of the primary.
    @TextCoded public var primaryLSN: LSN
    /// The target's replay position.
    @TextCoded public var targetReplayLSN: LSN
    /// Bytes between them.
    @TextCoded public var lagBytes: UInt64
    /// The primary's timeline, on which the target streams.
    @TextCoded public var timeline: Int
    /// The override that let it pass, if any.
    public var override: String?

    /// Creates the evidence.
    public init(primaryLSN: LSN, targetReplayLSN: LSN, lagBytes: UInt64, timeline: Int, override: String? = nil) {
        self.primaryLSN = primaryLSN
        self.targetReplayLSN = targetReplayLSN
        self.lagBytes = lagBytes
        self.timeline = timeline
        self.override = override
    }
}

/// What the failover gate saw: the target's WAL and timeline, and every other candidate in words.
public struct FailoverGateEvidence: StepEvidence {
    /// The WAL the target holds.
    public var targetLSN: LSN
    /// The timeline it is on.
    public var targetTimeline: Int
    /// Each other candidate instance → what was seen of it ("0/3000060 on timeline 1", "stopped", …).
    public var candidates: [String: String]

    /// Creates the evidence.
    public init(targetLSN: LSN, targetTimeline: Int, candidates: [String: String] = [:]) {
        self.targetLSN = targetLSN
        self.targetTimeline = targetTimeline
        self.candidates = candidates
    }

    /// Decodes `targetLSN`, `targetTimeline` and the `candidate.NAME` keys.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: DynamicKey.self)
        let lsn = try c.decode(String.self, forKey: DynamicKey(stringValue: "targetLSN"))
        let tli = try c.decode(String.self, forKey: DynamicKey(stringValue: "targetTimeline"))
        guard let l = LSN(lsn), let t = Int(tli) else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "failover gate evidence: \(lsn) \(tli)"))
        }
        targetLSN = l
        targetTimeline = t
        candidates = [:]
        for key in c.allKeys where key.stringValue.hasPrefix("candidate.") {
            candidates[String(key.stringValue.dropFirst("candidate.".count))] = try c.decode(String.self, forKey: key)
        }
    }

    /// Encodes the flat form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: DynamicKey.self)
        try c.encode(targetLSN.description, forKey: DynamicKey(stringValue: "targetLSN"))
        try c.encode(String(targetTimeline), forKey: DynamicKey(stringValue: "targetTimeline"))
        for (name, seen) in candidates { try c.encode(seen, forKey: DynamicKey(stringValue: "candidate." + name)) }
    }
}
