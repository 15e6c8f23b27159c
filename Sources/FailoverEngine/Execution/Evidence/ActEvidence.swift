/// A restore: what was checked before it, and whether it ran with --delta.
public struct RestoreEvidence: StepEvidence {
    /// The check of the directory it overwrote.
    public var check: OverwriteCheck
    /// It ran with --delta.
    @TextCoded public var delta: Bool
    /// Why a restore planned without --delta ran with it (finishing its own interrupted attempt).
    public var resumedWith: String?

    enum CodingKeys: String, CodingKey { case delta, resumedWith }

    /// Creates the evidence.
    public init(check: OverwriteCheck, delta: Bool, resumedWith: String? = nil) {
        self.check = check
        self.delta = delta
        self.resumedWith = resumedWith
    }

    /// Decodes the flat form (the check's keys beside the restore's).
    public init(from decoder: any Decoder) throws {
        check = try OverwriteCheck(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        _delta = try c.decode(TextCoded<Bool>.self, forKey: .delta)
        resumedWith = try c.decodeIfPresent(String.self, forKey: .resumedWith)
    }

    /// Encodes the flat form.
    public func encode(to encoder: any Encoder) throws {
        try check.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(_delta, forKey: .delta)
        try c.encodeIfPresent(resumedWith, forKey: .resumedWith)
    }
}

/// A pg_rewind: what was checked before it, its summary, and the fallback when it failed.
public struct RewindEvidence: StepEvidence {
    /// The check of the directory it overwrote.
    public var check: OverwriteCheck
    /// pg_rewind's one-line summary, or `failed: …`.
    public var pgRewind: String
    /// What repaired the divergence when pg_rewind could not.
    public var fallback: String?

    enum CodingKeys: String, CodingKey { case pgRewind, fallback }

    /// Creates the evidence.
    public init(check: OverwriteCheck, pgRewind: String, fallback: String? = nil) {
        self.check = check
        self.pgRewind = pgRewind
        self.fallback = fallback
    }

    /// Decodes the flat form.
    public init(from decoder: any Decoder) throws {
        check = try OverwriteCheck(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        pgRewind = try c.decode(String.self, forKey: .pgRewind)
        fallback = try c.decodeIfPresent(String.self, forKey: .fallback)
    }

    /// Encodes the flat form.
    public func encode(to encoder: any Encoder) throws {
        try check.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pgRewind, forKey: .pgRewind)
        try c.encodeIfPresent(fallback, forKey: .fallback)
    }
}

/// Standby settings written: the upstream, or "(repository only)".
public struct RecoveryEvidence: StepEvidence {
    /// The upstream instance's name, or "(repository only)".
    public var upstream: String
}

/// A managed site rejoined: how, from whom, on which timeline it now streams.
public struct RejoinEvidence: StepEvidence {
    /// `rewind` or `rebuild`.
    public var method: String
    /// The source site's leader.
    public var source: String
    /// The timeline it streams on.
    @TextCoded public var timeline: Int
}

/// A standby streams: on which timeline.
public struct StreamingEvidence: StepEvidence {
    /// The timeline of the WAL received.
    @TextCoded public var timeline: Int
}

/// A standby caught up: by how many bytes it lagged.
public struct CatchupEvidence: StepEvidence {
    /// Bytes behind its upstream when it was within policy.
    @TextCoded public var lagBytes: UInt64
}

/// A WAL switch: the segment that was closed and archived.
public struct SwitchWALEvidence: StepEvidence {
    /// The closed segment's file name.
    public var segment: String
}

/// The replay of the old primary's shutdown checkpoint.
public struct ReplayEvidence: StepEvidence {
    /// The demotion token proved (`system/timeline/checkpoint`).
    public var demotionToken: String
    /// Its checkpoint location.
    @TextCoded public var checkpointLSN: LSN
    /// Its timeline.
    @TextCoded public var timeline: Int
    /// The target's replay position when it passed the checkpoint, or "unknown" with an override.
    public var targetReplayLSN: String
    /// The override that let it pass, if any.
    public var override: String?
}

/// Roles recorded, and after a failover the WAL-loss estimate.
public struct RolesEvidence: StepEvidence {
    /// Site → the role recorded.
    public var roles: [String: Role]
    /// The fenced primary's last known position (failover).
    public var oldPrimaryLastKnownLSN: LSN?
    /// Where the promoted instance's recovery ended (failover).
    public var promotedAtLSN: LSN?
    /// Bytes the fenced primary may have had beyond the promoted position (failover).
    public var walLossEstimateBytes: UInt64?

    /// Creates the evidence.
    public init(roles: [String: Role], oldPrimaryLastKnownLSN: LSN? = nil, promotedAtLSN: LSN? = nil, walLossEstimateBytes: UInt64? = nil) {
        self.roles = roles
        self.oldPrimaryLastKnownLSN = oldPrimaryLastKnownLSN
        self.promotedAtLSN = promotedAtLSN
        self.walLossEstimateBytes = walLossEstimateBytes
    }

    /// Decodes `role.SITE` keys and the estimate.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: DynamicKey.self)
        roles = [:]
        for key in c.allKeys where key.stringValue.hasPrefix("role.") {
            let text = try c.decode(String.self, forKey: key)
            guard let role = Role(rawValue: text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\"\(text)\" is not a role")
            }
            roles[String(key.stringValue.dropFirst("role.".count))] = role
        }
        func text(_ name: String) throws -> String? { try c.decodeIfPresent(String.self, forKey: DynamicKey(stringValue: name)) }
        oldPrimaryLastKnownLSN = try text("oldPrimaryLastKnownLSN").flatMap(LSN.init)
        promotedAtLSN = try text("promotedAtLSN").flatMap(LSN.init)
        walLossEstimateBytes = try text("walLossEstimateBytes").flatMap { UInt64($0) }
    }

    /// Encodes the flat form.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: DynamicKey.self)
        for (site, role) in roles { try c.encode(role.rawValue, forKey: DynamicKey(stringValue: "role." + site)) }
        try c.encodeIfPresent(oldPrimaryLastKnownLSN?.description, forKey: DynamicKey(stringValue: "oldPrimaryLastKnownLSN"))
        try c.encodeIfPresent(promotedAtLSN?.description, forKey: DynamicKey(stringValue: "promotedAtLSN"))
        try c.encodeIfPresent(walLossEstimateBytes.map { String($0) }, forKey: DynamicKey(stringValue: "walLossEstimateBytes"))
    }
}
