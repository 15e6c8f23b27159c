import Foundation
import Logging

/// The driver for PostgreSQL 15 servers on other hosts, reached over OpenSSH: ``PostgresInstanceDriver``
/// over ``SSHHost``. Each instance's commands and files are handled on its own host as the plan's OS user;
/// SQL goes over libpq straight to the instance's host and port with the plan's passfile. Such instances may
/// be started by pg_ctl, Debian's pg_ctlcluster or a systemd unit.
public typealias SSHPostgresDriver = PostgresInstanceDriver<SSHHost>

extension PostgresInstanceDriver where Host == SSHHost {
    /// A driver for `plan`'s ssh sites, its multiplexed connections kept in `stateDirectory`'s control directory.
    ///
    /// - Throws: ``FailoverError`` (invalid) when an ssh site has no ssh settings, an instance's service
    ///   manager lacks its settings, or the control directory's path is too long for a unix socket.
    public init(
        plan: Plan, stateDirectory: String, binDirectory: String = "/usr/lib/postgresql/15/bin",
        logger: Logger = Logger(label: "failoverd.ssh-driver")
    ) throws {
        for site in plan.sites where site.driver == SSHHost.driverKind && site.ssh == nil {
            throw FailoverError.invalid(
                "site \"\(site.name)\": driver ssh needs its \"ssh\" settings (user, identityFile, knownHostsFile).")
        }
        let transport = SSHHost(
            plan: plan, controlDirectory: try RemoteShell.controlDirectoryPath(for: stateDirectory), binDirectory: binDirectory)
        try self.init(
            plan: plan, transport: transport, binDirectory: binDirectory,
            backrest: PgBackRest(plan: plan, executable: "/usr/bin/pgbackrest"),
            logger: logger)
    }

    /// The shell on `instance`'s host.
    public func shell(_ instance: Instance) throws -> RemoteShell { try transport.shell(for: instance) }

    /// Opens the multiplexed connection to every host of the plan in the background (``SSHHost/warmUp()``).
    public func warmUp() { transport.warmUp() }

    /// Closes the multiplexed connection to every host of the plan.
    public func closeConnections() async { await transport.closeConnections() }
}
