import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The files and the primary that `Sandbox.up()` creates.
extension Sandbox {
    /// The functions pg_rewind calls on its source: with EXECUTE on these, the rewind role needs no superuser.
    static let rewindFunctions = [
        "pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)", "pg_read_binary_file(text)",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
    ]

    /// Creates the repository, pgBackRest's lock, log and spool directories, the data directories' parents, the
    /// passfile and the pgBackRest configuration, recording in `manifest` what did not exist. Returns the passwords.
    func prepareFiles(driver: LocalPostgresDriver, user: OSUser, manifest: inout SandboxManifest) throws -> [String: String] {
        let backrest = driver.backrest
        let objectStore = plan.repository.type != "posix"
        // A posix repository is a directory here; an object store's path lives in its bucket.
        let workParent =
            objectStore
            ? (backrest.configPath as NSString).deletingLastPathComponent : (backrest.repositoryPath as NSString).deletingLastPathComponent
        if !objectStore {
            try manifest.record(try Files.makeDirectory(workParent, mode: 0o755, owner: user), for: plan, in: stateDirectory)
            try manifest.record(try Files.makeDirectory(backrest.repositoryPath, mode: 0o750, owner: user), for: plan, in: stateDirectory)
        }
        for (_, instance) in plan.allInstances {
            let paths = InstancePaths(instance)
            let parent = (paths.dataDirectory as NSString).deletingLastPathComponent
            try manifest.record(try Files.makeDirectory(parent, mode: 0o755, owner: user), for: plan, in: stateDirectory)
            // Recorded before they exist: initdb, restore and start create them, perhaps in a later drill.
            try manifest.record([paths.dataDirectory, paths.stateDirectory].filter { !Files.exists($0) }, for: plan, in: stateDirectory)
        }
        let passfile = Passfile(path: plan.replication.passfile)
        try manifest.record(
            try Files.makeDirectory((passfile.path as NSString).deletingLastPathComponent, mode: 0o700, owner: user), for: plan,
            in: stateDirectory)
        let roles = [plan.replication.effectiveAdminUser, plan.replication.user, plan.replication.effectiveRewindUser]
        let (passwords, createdPassfile) = try passfile.ensure(roles: roles, owner: user)
        if createdPassfile { try manifest.record([passfile.path], for: plan, in: stateDirectory) }
        if !Files.exists(backrest.configPath) {
            // pgBackRest's lock, log and spool paths default to /tmp/pgbackrest, /var/log/pgbackrest and
            // /var/spool/pgbackrest, which the OS user cannot write: give it its own.
            let work = workParent + "/pgbackrest-\(backrest.stanza).d"
            try manifest.record(
                try Files.makeDirectory((backrest.configPath as NSString).deletingLastPathComponent, mode: 0o755, owner: user), for: plan,
                in: stateDirectory)
            try manifest.record(try Files.makeDirectory(work, mode: 0o750, owner: user), for: plan, in: stateDirectory)
            for sub in ["lock", "log", "spool"] { try Files.makeDirectory(work + "/" + sub, mode: 0o750, owner: user) }
            // The sandbox's S3 endpoint accepts any key: a random one stands in for real credentials, kept
            // in this file (0600, the OS user's) as a real deployment keeps them, never in the plan.
            let credentials =
                plan.repository.type == "s3"
                ? "repo1-type=s3\nrepo1-s3-key=failoverd-sandbox\nrepo1-s3-key-secret=\(Self.randomSecret())\n" : ""
            let config = """
                # Written by failoverd sandbox for plan "\(plan.name)"; `sandbox down` removes it.
                # Instance options (pg1-path, port, socket) are passed on each command line.
                [global]
                \(credentials)repo1-path=\(backrest.repositoryPath)
                repo1-retention-full=2
                lock-path=\(work)/lock
                log-path=\(work)/log
                spool-path=\(work)/spool
                log-level-console=warn
                log-level-file=info
                compress-type=lz4
                process-max=2
                start-fast=y

                """
            try manifest.record([backrest.configPath], for: plan, in: stateDirectory)
            try Files.write(config, to: backrest.configPath, mode: objectStore ? 0o600 : 0o644, owner: user)
        }
        if let s3 = plan.repository.s3, plan.repository.type == "s3" {
            let endpoint = S3Endpoint(settings: s3, directory: workParent + "/s3-endpoint", runner: driver.runner)
            try manifest.record(try Files.makeDirectory(endpoint.directory, mode: 0o700, owner: user), for: plan, in: stateDirectory)
        }
        return passwords
    }

    /// The sandbox's S3 endpoint, for a plan with an s3 repository.
    func s3Endpoint(_ driver: LocalPostgresDriver) -> S3Endpoint? {
        guard plan.repository.type == "s3", let s3 = plan.repository.s3 else { return nil }
        let dir = (driver.backrest.configPath as NSString).deletingLastPathComponent + "/s3-endpoint"
        return S3Endpoint(settings: s3, directory: dir, runner: driver.runner)
    }

    /// 32 random hexadecimal digits.
    static func randomSecret() -> String {
        (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    /// initdb's the primary's leader when it has no data, starts it, and (when it is a primary) creates the
    /// roles, the stanza and a first full backup, each only when missing.
    func bootstrapPrimary(_ leader: Instance, driver: LocalPostgresDriver, user: OSUser, passwords: [String: String]) async throws {
        let paths = InstancePaths(leader)
        let admin = plan.replication.effectiveAdminUser
        if try await !driver.hasData(leader) {
            guard let adminPassword = passwords[admin] else {
                throw FailoverError.failed("sandbox: the passfile \(plan.replication.passfile) has no entry for \(admin)")
            }
            try Files.makeDirectory(paths.dataDirectory, mode: 0o700, owner: user)
            try Files.makeDirectory(paths.stateDirectory, mode: 0o700, owner: user)
            let passwordFile = paths.stateDirectory + "/initdb.pwfile"
            try Files.write(adminPassword + "\n", to: passwordFile, mode: 0o600, owner: user)
            defer { try? Files.removeFile(passwordFile, owner: user) }
            let clock = ContinuousClock.now
            try await driver.runner.run(
                driver.bin("initdb"),
                [
                    "-D", paths.dataDirectory, "-U", admin, "--pwfile=" + passwordFile, "-E", "UTF8", "--locale=C.UTF-8",
                    "--auth-local=peer", "--auth-host=scram-sha-256",
                ],
                // initdb ends by syncing its files to disk: over 60 s seen beside a busy test suite's fsyncs.
                // A bulk operation, given the base backup's bound.
                timeout: max(driver.timeout, 300)
            ).checked("Check that \(user.name) owns \(paths.dataDirectory) and that it is empty.")
            logger.info(
                "initdb",
                metadata: ["instance": "\(leader.name)", "seconds": "\(String(format: "%.2f", CommandRunner.seconds(since: clock)))"])
            try writeServerConfiguration(paths, driver: driver, user: user)
        }
        try await start(leader, driver: driver)
        guard try await !driver.status(of: leader).inRecovery else {
            logger.info(
                "sandbox: the leader runs as a standby now; leaving roles, stanza and backups as they are",
                metadata: ["instance": "\(leader.name)"])
            return
        }
        try await ensureRoles(on: leader, driver: driver, passwords: passwords)
        try await ensureStanzaAndBackup(leader, driver: driver, user: user)
        // policy.captureLostRows: failoverd's logical slots exist before anything can fail over.
        if plan.policy.captureLostRows == true { _ = try await driver.lostSlots(on: leader, .ensure(plugin: LostSlots.plugin)) }
    }

    /// Creates the stanza and a first full backup from `leader`, each only when missing.
    func ensureStanzaAndBackup(_ leader: Instance, driver: LocalPostgresDriver, user: OSUser) async throws {
        let admin = plan.replication.effectiveAdminUser
        let options = driver.backrest.instanceOptions(leader, user: admin) + ["--log-level-console=warn"]
        try await driver.runner.run(driver.backrest.executable, driver.backrest.arguments("stanza-create", options)).checked(
            "Check \(driver.backrest.configPath) and that \(user.name) can write \(driver.backrest.repositoryPath).")
        if try await !hasBackup(driver) {
            let seconds = try await driver.backUp(leader, user: admin, type: "full")
            logger.info("full backup", metadata: ["instance": "\(leader.name)", "seconds": "\(String(format: "%.2f", seconds))"])
        }
    }

    /// Appends replication and archiving settings to postgresql.conf and replaces pg_hba.conf and pg_ident.conf.
    ///
    /// Port, listen address and socket directory stay out of postgresql.conf (pg_ctl -o passes them):
    /// pg_rewind and restores copy this file between instances.
    func writeServerConfiguration(_ paths: InstancePaths, driver: LocalPostgresDriver, user: OSUser) throws {
        let gucString = PostgresConf.quoted
        let settings = """

            # failoverd sandbox (plan "\(plan.name)"): replication and archiving through pgBackRest.
            # Port, listen address and socket directory come from pg_ctl -o, never from this file.
            wal_level = \(plan.policy.captureLostRows == true ? "logical" : "replica")
            archive_mode = on
            archive_command = \(gucString(driver.backrest.archiveCommand))
            archive_timeout = \(Int(plan.policy.archiveTimeoutSeconds.rounded(.up)))
            wal_log_hints = on
            max_wal_senders = 10
            max_replication_slots = 10
            wal_keep_size = '128MB'
            hot_standby = on
            wal_retrieve_retry_interval = '500ms'
            shared_buffers = '32MB'
            max_connections = 40
            log_line_prefix = '%m [%p] %q%a@%d '

            # failoverd: standby settings (restore_command, primary_conninfo) live in this file.
            \(InstancePaths.includeLine)

            """
        let conf = (try Files.readText(paths.postgresqlConf, owner: user) ?? "") + settings
        try Files.write(conf, to: paths.postgresqlConf, owner: user)
        let (admin, replication, rewind) = (
            plan.replication.effectiveAdminUser, plan.replication.user, plan.replication.effectiveRewindUser
        )
        let hba = """
            # Written by failoverd sandbox. Every instance runs on this host, so TCP clients come from samehost.
            # TYPE  DATABASE     USER                ADDRESS    METHOD
            local   all          \(admin)            peer map=failoverd
            host    replication  \(replication)      \(clientAddresses)   scram-sha-256
            host    postgres     \(rewind)           \(clientAddresses)   scram-sha-256
            host    all          \(admin)            \(clientAddresses)   scram-sha-256

            """
        try Files.write(hba, to: paths.dataDirectory + "/pg_hba.conf", owner: user)
        // pgBackRest reaches the server over its unix socket as the OS user: let that user log in as the admin role.
        let ident = "# Written by failoverd sandbox.\n# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\nfailoverd  \(user.name)  \(admin)\n"
        try Files.write(ident, to: paths.dataDirectory + "/pg_ident.conf", owner: user)
    }

    /// Creates (or re-passwords) the replication role (LOGIN REPLICATION) and the rewind role (LOGIN, with
    /// EXECUTE on exactly the functions pg_rewind needs). Passwords are sent as SCRAM verifiers computed here.
    func ensureRoles(on leader: Instance, driver: LocalPostgresDriver, passwords: [String: String]) async throws {
        let replication = plan.replication.user
        let rewind = plan.replication.effectiveRewindUser
        guard let replicationPassword = passwords[replication], let rewindPassword = passwords[rewind] else {
            throw FailoverError.failed("sandbox: the passfile \(plan.replication.passfile) lacks \(replication) or \(rewind)")
        }
        try await driver.withConnection(leader) { connection in
            for (role, password, attributes) in [
                (replication, replicationPassword, "LOGIN REPLICATION"), (rewind, rewindPassword, "LOGIN NOREPLICATION"),
            ] {
                let verifier = try connection.encryptPassword(password, role: role)
                let exists = try connection.scalar("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]) != nil
                try connection.query(
                    "\(exists ? "ALTER" : "CREATE") ROLE \(PGConnection.quoteIdentifier(role)) WITH \(attributes) PASSWORD \(PGConnection.quoteLiteral(verifier))",
                    name: "\(exists ? "alter" : "create") role \(role)")
            }
            for function in Self.rewindFunctions {
                try connection.query(
                    "GRANT EXECUTE ON FUNCTION pg_catalog.\(function) TO \(PGConnection.quoteIdentifier(rewind))", name: "grant \(function)"
                )
            }
        }
    }

    /// True when the repository holds at least one backup of the stanza (`pgbackrest info --output=json`).
    func hasBackup(_ driver: LocalPostgresDriver) async throws -> Bool {
        let result = try await driver.runner.run(driver.backrest.executable, driver.backrest.arguments("info", ["--output=json"])).checked()
        guard let stanzas = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] else { return false }
        return stanzas.contains { ($0["backup"] as? [Any])?.isEmpty == false }
    }
}
