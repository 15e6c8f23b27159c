/// The proof a planned switchover rests on: the cleanly stopped old primary's shutdown checkpoint
/// (system identifier, timeline, checkpoint location), read from its pg_control.
///
/// Journaled as the evidence of the read-shutdown-checkpoint step and proved again, against pg_control,
/// before the target is awaited and before it is promoted, so that a resume never trusts a token the old
/// primary has since outlived.
struct DemotionToken: Equatable, Sendable {
    /// "Database system identifier".
    var systemIdentifier: String
    /// "Latest checkpoint's TimeLineID".
    var timeline: Int
    /// "Latest checkpoint location": the shutdown checkpoint record.
    var checkpointLSN: LSN

    /// The token of a data directory's control data.
    init(_ controlData: ControlData) {
        systemIdentifier = controlData.systemIdentifier
        timeline = controlData.timeline
        checkpointLSN = controlData.checkpointLSN
    }

    /// The token journaled as evidence; throws when a field is missing or malformed.
    init(evidence: [String: String], instance: String) throws {
        guard let system = evidence["systemIdentifier"], !system.isEmpty, let timeline = evidence["timeline"].flatMap(Int.init),
            let checkpoint = evidence["checkpointLSN"].flatMap(LSN.init)
        else {
            throw FailoverError.refused(
                "the journaled demotion token of \(instance) is incomplete (\(evidence.keys.sorted().joined(separator: ", "))); abandon this run and start a new one."
            )
        }
        self.systemIdentifier = system
        self.timeline = timeline
        self.checkpointLSN = checkpoint
    }

    /// `system/timeline/checkpoint`, as shown in evidence and messages.
    var text: String { "\(systemIdentifier)/\(timeline)/\(checkpointLSN)" }

    /// The evidence journaled for the token.
    var evidence: [String: String] {
        [
            "systemIdentifier": systemIdentifier, "timeline": String(timeline), "checkpointLSN": checkpointLSN.description,
            "demotionToken": text,
        ]
    }
}
