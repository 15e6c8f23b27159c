/// What drives a site's servers, as its plan names it (`"driver"`); the `Codable` name is the plan's word.
/// What a kind means for a run (the steps its transitions become, where its members' status is read, what
/// failoverd's host needs) is said once, in ``DriverRegistry``.
public enum DriverKind: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// PostgreSQL on this host: pg_ctl, pgBackRest, pg_rewind and libpq (``LocalPostgresDriver``).
    case local
    /// A Patroni cluster, through its REST API and libpq (``PatroniSite``).
    case patroni
    /// The simulated driver's model in the state directory (``SimulatedDriver``): rehearsals only.
    case simulated
    /// PostgreSQL on the instances' hosts, over OpenSSH (``SSHPostgresDriver``).
    case ssh

    /// The plan's word for it.
    public var description: String { rawValue }
}

/// How the planner expands a site's transitions, as its driver kind says (``DriverRegistry``).
public enum StepExpansion: Sendable, Equatable {
    /// The PostgreSQL primitives, one journaled step each (checkpoint, stop, read-shutdown-checkpoint, …),
    /// so a crash between two of them resumes at the right one: the drivers that own the servers.
    case instanceSteps
    /// One step per site-level request (demote, promote, follow, fence, rejoin): a managed site (Patroni,
    /// an operator on Kubernetes) where "demote to a standby of X" is one request.
    case siteSteps
}
