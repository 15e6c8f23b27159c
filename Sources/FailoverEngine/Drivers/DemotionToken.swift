/// The proof a planned switchover rests on: the cleanly stopped old primary's shutdown checkpoint
/// (system identifier, timeline, checkpoint location), read from its pg_control.
///
/// Journaled as the evidence of the read-shutdown-checkpoint step and proved again, against pg_control,
/// before the target is awaited and before it is promoted, so that a resume never trusts a token the old
/// primary has since outlived. A site-level driver returns it from a demotion.
public struct DemotionToken: Codable, Sendable, Equatable {
    /// "Database system identifier".
    public var systemIdentifier: String
    /// "Latest checkpoint's TimeLineID".
    public var timeline: Int
    /// "Latest checkpoint location": the shutdown checkpoint record.
    public var checkpointLSN: LSN

    /// The token of a data directory's control data.
    public init(_ controlData: ControlData) {
        systemIdentifier = controlData.systemIdentifier
        timeline = controlData.timeline
        checkpointLSN = controlData.checkpointLSN
    }

    /// A token from its parts (a managed site reads them over libpq).
    public init(systemIdentifier: String, timeline: Int, checkpointLSN: LSN) {
        self.systemIdentifier = systemIdentifier
        self.timeline = timeline
        self.checkpointLSN = checkpointLSN
    }

    /// `system/timeline/checkpoint`, as shown in evidence and messages.
    public var text: String { "\(systemIdentifier)/\(timeline)/\(checkpointLSN)" }

    enum CodingKeys: String, CodingKey { case systemIdentifier, timeline, checkpointLSN, demotionToken }

    /// Decodes the journal's text form.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let system = try c.decode(String.self, forKey: .systemIdentifier)
        let tli = try c.decode(String.self, forKey: .timeline)
        let lsn = try c.decode(String.self, forKey: .checkpointLSN)
        guard !system.isEmpty, let t = Int(tli), let l = LSN(lsn) else {
            throw DecodingError.dataCorruptedError(
                forKey: .checkpointLSN, in: c, debugDescription: "demotion token \(system)/\(tli)/\(lsn)")
        }
        systemIdentifier = system
        timeline = t
        checkpointLSN = l
    }

    /// Encodes the journal's text form, with the token's text.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(systemIdentifier, forKey: .systemIdentifier)
        try c.encode(String(timeline), forKey: .timeline)
        try c.encode(checkpointLSN.description, forKey: .checkpointLSN)
        try c.encode(text, forKey: .demotionToken)
    }
}
