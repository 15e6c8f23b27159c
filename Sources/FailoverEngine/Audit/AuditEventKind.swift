/// What an audit event records. The raw value is the `kind` text the event's hash covers, exactly as every
/// audit log has written it; an event read back keeps its text (``AuditEvent/kind``), so a log written by
/// another version, with a kind this one does not know, still verifies and shows.
public enum AuditEventKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// A run started (its plan, driver and step count).
    case runStart = "run-start"
    /// A run ended: succeeded, failed or refused.
    case runEnd = "run-end"
    /// An unfinished run was resumed.
    case runResume = "run-resume"
    /// A step's act started.
    case stepStart = "step-start"
    /// A step's act and verify finished, with its evidence.
    case stepEnd = "step-end"
    /// A step's check found its postcondition already held.
    case stepSkip = "step-skip"
    /// A step failed.
    case stepFail = "step-fail"
    /// A step was journaled pending again.
    case stepPending = "step-pending"
    /// A verb refused before acting.
    case refusal
    /// An operator override (--allow-data-loss, --skip-lost-capture) and its scope.
    case override
    /// The run lock was taken over from a dead holder.
    case lockTakeover = "lock-takeover"
    /// A run was given up by `failoverd abandon`.
    case abandon
    /// The plan's roles were adopted as the journal's.
    case adopt
    /// The operator declared a site fenced by other means (--assume-fenced).
    case assumedFenced = "assumed-fenced"
    /// The plan's fencing hook ran.
    case fencingHook = "fencing-hook"
    /// What a former primary committed past the fork was captured, or its capture was listed.
    case lostCapture = "lost-capture"
    /// A fleet member's run ended.
    case fleetMember = "fleet-member"

    /// The kind's text.
    public var description: String { rawValue }
}

extension AuditEvent {
    /// The event's kind, nil when its text names a kind this failoverd does not know (a log written by
    /// another version): the text itself stays in ``kind``, which the hash covers.
    public var knownKind: AuditEventKind? { AuditEventKind(rawValue: kind) }
}
