/// What was checked before a data directory was overwritten (restore, pg_rewind, or the stop before them).
public struct OverwriteCheck: StepEvidence {
    /// Why nothing needed proving ("no cluster in the data directory", an interrupted restore), if so.
    public var overwriteCheck: String?
    /// The system identifier of the cluster found in the directory, proved to be the plan's.
    public var targetSystemIdentifier: String?
    /// Its pg_control state.
    public var targetState: String?

    /// No check was needed (a stop that no overwrite follows).
    public init() {}

    /// Nothing to protect, and why.
    public init(nothingToProve reason: String) { overwriteCheck = reason }

    /// The cluster found and proved.
    public init(systemIdentifier: String, state: String) {
        targetSystemIdentifier = systemIdentifier
        targetState = state
    }
}
