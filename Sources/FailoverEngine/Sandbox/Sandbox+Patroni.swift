import Foundation

/// Patroni sites in the sandbox: one etcd per endpoint the plan's sites name (one member, on loopback),
/// one Patroni 4.1 per instance with its own generated configuration, PostgreSQL run by Patroni, and the
/// shared pgBackRest repository. The primary site bootstraps with initdb; the other sites bootstrap as
/// Patroni standby clusters (`standby_cluster` in the bootstrap configuration) restored from the repository.
extension Sandbox {
    /// Patroni, installed by scripts/setup.sh into its own virtual environment; `FAILOVERD_SANDBOX_PATRONI`
    /// names another one (another Patroni version, to verify the driver against it).
    static var patroniExecutable: String {
        ProcessInfo.processInfo.environment["FAILOVERD_SANDBOX_PATRONI"] ?? "/opt/failoverd-patroni/bin/patroni"
    }
    /// etcd, from Debian's etcd-server.
    @_spi(Benchmarks) public static let etcdExecutable = "/usr/bin/etcd"

    /// True when the plan's sites are Patroni clusters.
    var isPatroni: Bool { plan.sites.contains { $0.driver == .patroni } }

    /// Refuses Patroni plans the sandbox cannot build.
    func validatePatroni() throws {
        for site in plan.sites {
            guard site.driver == .patroni else {
                throw FailoverError.invalid(
                    "sandbox: site \"\(site.name)\" uses driver \"\(site.driver)\" next to Patroni sites; the sandbox builds plans whose sites are all local or all Patroni."
                )
            }
            guard let etcd = site.patroni?.etcd else {
                throw FailoverError.invalid(
                    "sandbox: Patroni site \"\(site.name)\" names no etcd (\"patroni\": {\"etcd\": \"127.0.0.1:2379\"}); the sandbox starts it there."
                )
            }
            let endpoint = PlanValues.parseEndpoint(etcd)
            guard endpoint.problem == nil, HostAddress.isLoopback(endpoint.host) else {
                throw FailoverError.invalid("sandbox: site \"\(site.name)\": patroni.etcd must be a loopback HOST:PORT for the sandbox.")
            }
            for i in site.instances {
                guard let url = i.patroni?.url, url.hasPrefix("http://"), HostAddress.isLoopback(patroniListen(i).host) else {
                    throw FailoverError.invalid(
                        "sandbox: instance \(i.name): patroni.url must be http:// on loopback for the sandbox (it runs Patroni without TLS)."
                    )
                }
            }
        }
        for path in [Self.patroniExecutable, Self.etcdExecutable] where !FileManager.default.isExecutableFile(atPath: path) {
            throw FailoverError.invalid("sandbox: \(path) is missing; run scripts/setup.sh, which installs etcd-server and Patroni 4.1.")
        }
    }

    /// The REST API's host and port, from the instance's patroni.url.
    func patroniListen(_ instance: Instance) -> (host: String, port: Int) {
        let url = instance.patroni?.url ?? ""
        let rest = url.hasPrefix("https://") ? String(url.dropFirst(8)) : String(url.dropFirst(7))
        let endpoint = PlanValues.parseEndpoint(rest)
        return (endpoint.host, endpoint.port)
    }

    func etcdDaemon(_ endpoint: String, directory: String, user: OSUser) -> SandboxDaemon {
        SandboxDaemon(
            name: "etcd on \(endpoint)", identityFile: directory + "/etcd.identity", logFile: directory + "/etcd.log",
            runner: CommandRunner(user: user, defaultTimeout: 30))
    }

    func patroniDaemon(_ instance: Instance, user: OSUser) -> SandboxDaemon {
        let dir = InstancePaths(instance).stateDirectory
        return SandboxDaemon(
            name: "Patroni of \(instance.name)", identityFile: dir + "/patroni.identity", logFile: dir + "/patroni.log",
            // Patroni starts PostgreSQL, whose archive_command and restore_command run pgBackRest.
            runner: CommandRunner(user: user, defaultTimeout: 30, forwardsRepositoryEnvironment: true))
    }

    /// Where the etcd of `endpoint` keeps its data: next to the repository.
    func etcdDirectory(_ endpoint: String, driver: LocalPostgresDriver) -> String {
        let parent =
            plan.repository.type == "posix"
            ? (driver.backrest.repositoryPath as NSString).deletingLastPathComponent
            : (driver.backrest.configPath as NSString).deletingLastPathComponent
        return parent + "/etcd-"
            + endpoint.replacingOccurrences(of: ":", with: "-").replacingOccurrences(of: "[", with: "")
            .replacingOccurrences(of: "]", with: "")
    }

    /// Builds (or restarts) the Patroni topology: etcd, the primary site, then every standby cluster.
    func upPatroni(
        primarySite: Site, driver: LocalPostgresDriver, user: OSUser, passwords: [String: String], manifest: inout SandboxManifest
    ) async throws {
        try validatePatroni()
        for endpoint in Set(plan.sites.compactMap { $0.patroni?.etcd }).sorted() {
            let dir = etcdDirectory(endpoint, driver: driver)
            try manifest.record([dir].filter { !Files.exists($0) }, for: plan, in: stateDirectory)
            try await startEtcd(endpoint, directory: dir, user: user)
        }
        let patroni = PatroniSite(plan: plan, timeout: max(plan.policy.stepTimeoutSeconds, 120), pollInterval: 0.2, logger: logger)
        try await startMember(primarySite.leader, of: primarySite, standbyOf: nil, user: user, passwords: passwords, driver: driver)
        _ = try await Poll.until(
            "\(primarySite.leader.name) to be Patroni's primary and accept writes", timeout: 180, interval: 0.2,
            advice: "See \(patroniDaemon(primarySite.leader, user: user).logFile)."
        ) { () async throws -> Bool? in
            try await patroni.memberStatus(primarySite, primarySite.leader).isWritablePrimary ? true : nil
        }
        try await ensureStanzaAndBackup(primarySite.leader, driver: driver, user: user)
        for f in primarySite.followers {
            try await startMember(f, of: primarySite, standbyOf: nil, user: user, passwords: passwords, driver: driver)
        }
        for site in plan.sites where site.name != primarySite.name {
            let upstream: Instance? = site.role == .streamingStandby ? primarySite.leader : nil
            guard site.role == .streamingStandby || site.role == .archiveStandby else { continue }
            for i in site.instances {
                try await startMember(i, of: site, standbyOf: (upstream, true), user: user, passwords: passwords, driver: driver)
            }
        }
        for site in plan.sites {
            for i in site.instances where site.role != .none {
                _ = try await Poll.until(
                    "\(i.name) to run under Patroni", timeout: 300, interval: 0.2, advice: "See \(patroniDaemon(i, user: user).logFile)."
                ) { () async throws -> Bool? in
                    let info = try await patroni.memberInfo(site, i)
                    guard info["state"] as? String == "running" else { return nil }
                    let s = try await patroni.memberStatus(site, i)
                    return s.reachable ? true : nil
                }
            }
        }
    }

    /// Starts etcd (one member) on `endpoint` unless it runs, and waits until it reports healthy.
    func startEtcd(_ endpoint: String, directory: String, user: OSUser) async throws {
        let daemon = etcdDaemon(endpoint, directory: directory, user: user)
        let client = "http://" + endpoint
        if daemon.live == nil {
            try Files.makeDirectory(directory, mode: 0o700, owner: user)
            let peer = "http://127.0.0.1:\(try FreePorts.take(1)[0])"
            try await daemon.start([
                Self.etcdExecutable, "--name", "failoverd-sandbox", "--data-dir", directory + "/data", "--listen-client-urls", client,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "failoverd-sandbox=" + peer, "--log-level", "warn",
            ])
        }
        _ = try await Poll.until("etcd to answer on \(endpoint)", timeout: 60, interval: 0.1, advice: "See \(daemon.logFile).") {
            let r = try await CommandRunner().run("/usr/bin/curl", ["-sf", "--max-time", "2", client + "/health"])
            return r.succeeded && r.stdout.contains("true") ? true : nil
        }
    }

    /// Writes the member's Patroni configuration and starts its Patroni unless it runs.
    func startMember(
        _ instance: Instance, of site: Site, standbyOf upstream: (Instance?, Bool)?, user: OSUser, passwords: [String: String],
        driver: LocalPostgresDriver
    ) async throws {
        let paths = InstancePaths(instance)
        try Files.makeDirectory(paths.stateDirectory, mode: 0o700, owner: user)
        let config = try patroniConfiguration(
            instance, of: site, standbyOf: upstream?.0, isStandbyCluster: upstream != nil, passwords: passwords, driver: driver)
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        // JSON is YAML: Patroni reads it as its configuration file. It holds the roles' passwords, as a
        // Patroni node's configuration does; 0600 in a 0700 directory of the OS user.
        let file = paths.stateDirectory + "/patroni.yml"
        try Files.write(String(decoding: data, as: UTF8.self) + "\n", to: file, mode: 0o600, owner: user)
        try await patroniDaemon(instance, user: user).start([Self.patroniExecutable, file])
    }

    /// The configuration of one Patroni member (JSON, which Patroni reads as YAML).
    func patroniConfiguration(
        _ instance: Instance, of site: Site, standbyOf upstream: Instance?, isStandbyCluster: Bool, passwords: [String: String],
        driver: LocalPostgresDriver
    ) throws -> [String: Any] {
        let paths = InstancePaths(instance)
        let backrest = driver.backrest
        let (admin, replication, rewind) = (
            plan.replication.effectiveAdminUser, plan.replication.user, plan.replication.effectiveRewindUser
        )
        let listen = patroniListen(instance)
        var dcs: [String: Any] = [
            "ttl": 20, "loop_wait": 1, "retry_timeout": 5,
            "postgresql": [
                "use_pg_rewind": true,
                "use_slots": true,
                "parameters": [
                    "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on", "archive_mode": "on",
                    "archive_timeout": Int(plan.policy.archiveTimeoutSeconds.rounded(.up)),
                    "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "128MB", "shared_buffers": "32MB",
                    "max_connections": 40, "wal_retrieve_retry_interval": "500ms",
                    "log_line_prefix": "%m [%p] %q%a@%d ",
                ] as [String: Any],
            ] as [String: Any],
        ]
        // Every other site's slot, kept by this cluster's leader (primary or standby leader) for the day that
        // site follows this one.
        let slots = plan.sites.filter { $0.name != site.name }.compactMap { $0.patroni?.slot }
        if !slots.isEmpty { dcs["slots"] = Dictionary(uniqueKeysWithValues: slots.map { ($0, ["type": "physical"]) }) }
        if isStandbyCluster {
            let patroni = PatroniSite(plan: plan, logger: logger)
            dcs["standby_cluster"] = patroni.standbyCluster(following: upstream, slot: site.patroni?.slot)
        }
        let restore =
            ([backrest.executable, "--config=" + backrest.configPath, "--stanza=" + backrest.stanza] + backrest.repositoryOptions + [
                "--pg1-path=" + paths.dataDirectory, "--log-level-console=warn", "--delta", "--type=preserve", "restore",
            ]).map(PgBackRest.shellWord).joined(separator: " ")
        guard let adminPassword = passwords[admin], let replicationPassword = passwords[replication],
            let rewindPassword = passwords[rewind]
        else {
            throw FailoverError.failed("sandbox: the passfile \(plan.replication.passfile) lacks \(admin), \(replication) or \(rewind)")
        }
        return [
            "scope": site.patroni?.scope ?? site.name,
            "namespace": "/\(site.patroni?.namespace ?? "service")/",
            "name": instance.name,
            "log": ["level": "INFO"],
            "restapi": ["listen": "\(listen.host):\(listen.port)", "connect_address": "\(listen.host):\(listen.port)"],
            "etcd3": ["hosts": [site.patroni?.etcd ?? ""]],
            "bootstrap": [
                "dcs": dcs,
                "initdb": [["encoding": "UTF8"], ["locale": "C.UTF-8"], ["auth-local": "peer"], ["auth-host": "scram-sha-256"]],
            ] as [String: Any],
            "postgresql": [
                "listen": "\(instance.host):\(instance.port)",
                "connect_address": "\(instance.host):\(instance.port)",
                "data_dir": paths.dataDirectory,
                "bin_dir": driver.binDirectory,
                "pgpass": paths.stateDirectory + "/patroni.pgpass",
                "authentication": [
                    "superuser": ["username": admin, "password": adminPassword],
                    "replication": ["username": replication, "password": replicationPassword],
                    "rewind": ["username": rewind, "password": rewindPassword],
                ],
                // archive_command names the data directory: Patroni runs it itself, from its own working
                // directory, to archive the shutdown checkpoint's segment when it demotes a cluster.
                "parameters": [
                    "unix_socket_directories": paths.socketDirectory,
                    "archive_command":
                        ([backrest.executable, "--config=" + backrest.configPath, "--stanza=" + backrest.stanza]
                        + backrest.repositoryOptions
                        + ["--pg1-path=" + paths.dataDirectory]).map(PgBackRest.shellWord).joined(separator: " ") + " archive-push \"%p\"",
                ],
                "pg_hba": [
                    "local all \(admin) peer map=failoverd",
                    "local all all peer",
                    "host replication \(replication) samehost scram-sha-256",
                    "host all \(rewind) samehost scram-sha-256",
                    "host all \(admin) samehost scram-sha-256",
                ],
                "pg_ident": ["failoverd \(user(driver)) \(admin)", "failoverd \(user(driver)) \(user(driver))"],
                "create_replica_methods": ["basebackup"],
                "basebackup": [["checkpoint": "fast"]],
                "pgbackrest": ["command": restore, "keep_data": true, "no_params": true],
            ] as [String: Any],
        ]
    }

    private func user(_ driver: LocalPostgresDriver) -> String { driver.osUser.name }

    /// Stops every Patroni (which stops its PostgreSQL fast) and etcd the sandbox started, each by its
    /// recorded pid and start time: a Patroni only when its instance's data directory is `listed` in the
    /// manifest, an etcd only when its directory is.
    func downPatroni(driver: LocalPostgresDriver?, user: OSUser?, listed: [String]) async {
        guard isPatroni, let user = user ?? (OSUser.isRoot ? nil : .current) else { return }
        await withTaskGroup(of: Void.self) { group in
            for (_, i) in plan.allInstances where listed.contains(InstancePaths(i).dataDirectory) {
                let daemon = patroniDaemon(i, user: user)
                group.addTask { await daemon.stop(grace: 60) }
            }
        }
        guard let driver else { return }
        for endpoint in Set(plan.sites.compactMap { $0.patroni?.etcd }) where listed.contains(etcdDirectory(endpoint, driver: driver)) {
            await etcdDaemon(endpoint, directory: etcdDirectory(endpoint, driver: driver), user: user).stop()
        }
    }
}
