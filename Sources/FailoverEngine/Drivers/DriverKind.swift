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
