import Foundation
import Logging

/// A site run by Patroni, driven through Patroni's own mechanisms: `PATCH /config` with `standby_cluster`
/// to demote, fence or re-point the cluster, `standby_cluster: null` to promote it, `GET /patroni` for
/// each member's role, state and version; PostgreSQL facts (recovery state, LSNs, the demoted leader's
/// shutdown checkpoint) over libpq. failoverd never runs pg_ctl, edits a configuration file or touches the
/// DCS behind Patroni's back: Patroni would undo it.
///
/// The gates (switchover gate, demotion-token replay, no second writer, failover gate) run above this
/// type, in the steps, as for every driver.
public struct PatroniSite: SiteDriver {
    /// The oldest Patroni that demotes a cluster with a clean (fast) shutdown: 3.x stops it immediately.
    public static let minimumVersion = [4, 1, 0]

    /// The plan (sites, replication roles, passfile, repository).
    public let plan: Plan
    /// Seconds a wait may take.
    public var timeout: Double
    /// Seconds between two probes of a wait.
    public var pollInterval: Double
    let runner: CommandRunner
    let logger: Logger

    /// Creates the driver of the plan's Patroni sites.
    public init(plan: Plan, timeout: Double? = nil, pollInterval: Double = 0.05, logger: Logger = Logger(label: "failoverd.patroni")) {
        self.plan = plan
        self.timeout = timeout ?? max(plan.policy.stepTimeoutSeconds, 1)
        self.pollInterval = pollInterval
        self.runner = CommandRunner(defaultTimeout: 15)
        self.logger = logger
    }

    // MARK: Access

    /// The REST client of `site`'s members (its TLS and credentials settings).
    @_spi(Benchmarks) public func api(_ site: Site) throws -> PatroniREST {
        guard let cluster = site.patroni else {
            throw FailoverError.invalid(
                "site \"\(site.name)\" uses driver patroni but names no Patroni cluster (\"patroni\": {\"scope\": …}).")
        }
        return PatroniREST(cluster: cluster, runner: runner)
    }

    /// The REST API URL of the member `instance`.
    @_spi(Benchmarks) public func url(_ instance: Instance) throws -> String {
        guard let url = instance.patroni?.url else {
            throw FailoverError.invalid("instance \(instance.name) names no Patroni REST API (\"patroni\": {\"url\": …}).")
        }
        return url
    }

    func site(of instance: Instance) -> Site? { plan.sites.first { $0.instances.contains(instance) } }

    /// How failoverd connects to a member's PostgreSQL (``Plan/adminConnInfo(_:)``).
    @_spi(Benchmarks) public func adminConnInfo(_ instance: Instance) -> ConnInfo { plan.adminConnInfo(instance) }

    /// `GET /patroni` of a member: its role, state, timeline and Patroni's version.
    @_spi(Benchmarks) public func memberInfo(_ site: Site, _ instance: Instance) async throws -> [String: Any] {
        let response = try await api(site).get(try url(instance), "/patroni")
        guard let object = response.object else {
            throw FailoverError.failed("\(instance.name)'s Patroni answered GET /patroni with HTTP \(response.status) and no JSON object.")
        }
        return object
    }

    // MARK: Status

    public func status(of site: Site) async throws -> SiteStatus {
        var members: [SiteMember] = []
        for i in site.instances { members.append(SiteMember(instance: i, status: try await memberStatus(site, i))) }
        return SiteStatus(site: site.name, members: members)
    }

    /// What PostgreSQL says over libpq, with Patroni's word only where PostgreSQL cannot answer. A member is
    /// stopped only on positive evidence: its Patroni says `stopped` or `crashed` while its PostgreSQL refuses
    /// connections, or, for a member on this host, no postmaster works in its data directory (/proc, as the
    /// local driver proves it). A refused connection alone proves nothing: a firewall's REJECT rule (ICMP port
    /// unreachable) or a middlebox's reset gives the same error while the servers run. Anything else (a
    /// timeout, a missing route, a refusal, a Patroni that says `running`) leaves the member unknown: running,
    /// unreachable, with the reason.
    @_spi(Benchmarks) public func memberStatus(_ site: Site, _ instance: Instance) async throws -> InstanceStatus {
        do {
            return try await PGConnection.with(adminConnInfo(instance)) { try StatusProbe.run($0) }
        } catch let error as PGError where error.isConnectionFailure && !error.isLoginRefusal {
            let pgLine = error.message.split(separator: "\n").first.map(String.init) ?? "no answer"
            let pgRefused = pgLine.lowercased().contains("connection refused")
            var patroni: String
            do {
                let state = try await memberInfo(site, instance)["state"] as? String ?? "?"
                if pgRefused && ["stopped", "crashed"].contains(state) { return .stopped }
                patroni = "Patroni says \(state)"
            } catch let failure as PatroniREST.Failure {
                patroni = "Patroni: \(failure)"
            }
            let local = HostAddress.isLocal(instance.host)
            if local && Postmaster.livePID(in: InstancePaths(instance).dataDirectory) == nil { return .stopped }
            var status = InstanceStatus.stopped
            status.running = true
            status.unreachableReason =
                "PostgreSQL: \(pgLine); \(patroni)"
                + (local ? "" : " (a refused connection over the network proves nothing: a REJECT rule or a reset gives the same)")
            return status
        }
    }

    /// Refuses unless every reachable member runs Patroni 4.1 or later, and at least the leader answers:
    /// Patroni 3.x demotes a cluster with an immediate stop, which leaves no shutdown checkpoint.
    func checkVersions(_ site: Site, for what: String) async throws {
        for i in site.instances {
            let info: [String: Any]
            do {
                info = try await memberInfo(site, i)
            } catch let failure as PatroniREST.Failure {
                if i == site.leader {
                    throw FailoverError.refused(
                        "\(what) of site \(site.name) refused: \(i.name)'s Patroni REST API does not answer (\(failure)); failoverd cannot tell which Patroni would demote it."
                    )
                }
                continue
            }
            let version = (info["patroni"] as? [String: Any])?["version"] as? String ?? "unknown"
            guard Self.isSupported(version) else {
                throw FailoverError.refused(
                    "\(what) of site \(site.name) refused: \(i.name) runs Patroni \(version); Patroni before 4.1 demotes a cluster with an immediate stop (no shutdown checkpoint), so the target could miss acknowledged commits. Upgrade Patroni to 4.1 or later."
                )
            }
        }
    }

    /// True for a Patroni version of at least ``minimumVersion``.
    static func isSupported(_ version: String) -> Bool {
        guard let parts = versionParts(version) else { return false }
        return parts.lexicographicallyPrecedes(minimumVersion) == false
    }

    /// True for a Patroni on which failoverd's fence of a live site was verified: the 4.1 series, every
    /// release of it run (4.1.0 to 4.1.5: a live primary made a standby leader with no WAL source; 4.1.0 and
    /// 4.1.5 also through failover under load and failback) and read (ha.py get_remote_member,
    /// postgresql/config.py build_recovery_params, utils.py patch_config). Before 4.1 a demotion stops the
    /// primary immediately; later series are not verified.
    static func isFenceVerified(_ version: String) -> Bool {
        guard let parts = versionParts(version) else { return false }
        return parts[0] == 4 && parts[1] == 1
    }

    static func versionParts(_ version: String) -> [Int]? {
        let parts = version.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        return parts.count >= 2 ? parts : nil
    }

    // MARK: Site operations

    /// The `standby_cluster` section for following `upstream`'s leader, with the repository as the second
    /// WAL source; fenced: no WAL source at all. Keys that must be absent are simply left out (see
    /// ``setStandbyCluster(_:_:what:)``, which removes them from Patroni's configuration).
    func standbyCluster(following upstream: Instance?, slot: String? = nil, fenced: Bool = false) -> [String: Any] {
        var section: [String: Any] = [
            // Fenced: no WAL source at all. A fenced primary may hold WAL past the new primary's fork; with
            // the repository as a source it would find the new timeline's history and refuse to start
            // ("could not locate a valid checkpoint record"). With none it stays read-only on its own WAL
            // until a rejoin points it at the new primary and Patroni rewinds it.
            "restore_command": fenced ? Self.fencedRestoreCommand : PgBackRest(plan: plan).restoreCommand,
            "create_replica_methods": ["pgbackrest", "basebackup"],
        ]
        if let upstream, !fenced {
            section["host"] = upstream.host
            section["port"] = upstream.port
            // The follower's slot on the upstream's leader (a permanent slot the upstream cluster declares).
            if let slot { section["primary_slot_name"] = slot }
        }
        return section
    }

    /// The fenced standby leader's restore_command: it fails, so nothing is replayed from anywhere. Patroni
    /// counts a `standby_cluster` as one only with a host, a port or a restore_command (global_config.py
    /// is_standby_cluster), so the fence's section has exactly this one.
    static let fencedRestoreCommand = "/bin/false"

    /// Makes the cluster's `standby_cluster` exactly `wanted`. Patroni merges a PATCH into its configuration
    /// and drops a key sent as null, but only from a section that exists: sent to a cluster without
    /// `standby_cluster` (a primary), a null is stored as a value, and Patroni 4.1 then fails on it in a loop
    /// (`host: null` still makes a connection string, and `primary_slot_name: null` raises AttributeError in
    /// build_recovery_params), never starting the member again. So the section is read first, nulls are
    /// sent only for keys it holds, and the configuration Patroni answers with is checked.
    func setStandbyCluster(_ site: Site, _ wanted: [String: Any], what: String) async throws {
        let current = try await config(site)["standby_cluster"]
        var section = wanted
        if let current = current as? [String: Any] {
            for key in current.keys where section[key] == nil { section[key] = NSNull() }
        } else if let current, !(current is NSNull) {
            throw FailoverError.refused(
                "\(what) refused: site \(site.name)'s Patroni configuration has a standby_cluster that is not an object (\(current)); fix it with patronictl edit-config first."
            )
        }
        let after = try await patchConfig(site, ["standby_cluster": section], what: what)
        let now = after["standby_cluster"] as? [String: Any] ?? [:]
        guard Self.json(now) == Self.json(wanted) else {
            throw FailoverError.failed(
                "\(what): after the change, site \(site.name)'s Patroni configuration has standby_cluster \(Self.json(now)), not \(Self.json(wanted)); someone changed it meanwhile. Look at it (GET /config) before resuming."
            )
        }
    }

    static func json(_ value: Any) -> String {
        (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
            ?? "\(value)"
    }

    /// The cluster's dynamic configuration (`GET /config`), from the first member that answers.
    func config(_ site: Site) async throws -> [String: Any] {
        var lastError = ""
        for i in [site.leader] + site.followers {
            do {
                let response = try await api(site).get(try url(i), "/config")
                guard response.status == 200, let object = response.object else {
                    lastError = "\(i.name): HTTP \(response.status)"
                    continue
                }
                return object
            } catch let failure as PatroniREST.Failure {
                lastError = "\(i.name): \(failure)"
            }
        }
        throw FailoverError.failed("no member of site \(site.name) answered GET /config (\(lastError)).")
    }

    /// PATCHes the cluster's configuration through the first member that answers; returns the
    /// configuration Patroni stored.
    @discardableResult
    func patchConfig(_ site: Site, _ body: [String: Any], what: String) async throws -> [String: Any] {
        var lastError = ""
        for i in [site.leader] + site.followers {
            do {
                let response = try await api(site).patch(try url(i), "/config", json: body)
                guard response.status == 200 else {
                    throw FailoverError.failed(
                        "\(what): \(i.name)'s Patroni answered PATCH /config with HTTP \(response.status): \(response.body.prefix(300))")
                }
                logger.info("PATCH /config", metadata: ["site": "\(site.name)", "member": "\(i.name)", "what": "\(what)"])
                return response.object ?? [:]
            } catch let failure as PatroniREST.Failure {
                lastError = "\(i.name): \(failure)"
            }
        }
        throw FailoverError.failed("\(what): no member of site \(site.name) answered PATCH /config (\(lastError)).")
    }

    /// Sets `standby_cluster` (following `upstream`'s leader) on a site whose leader is a primary; Patroni
    /// 4.1 stops it fast, archives the segment with the shutdown checkpoint and starts it as the standby
    /// leader. Returns that checkpoint, read over libpq and proved to be a shutdown checkpoint.
    public func demote(_ site: Site, toStandbyOf upstream: Site) async throws -> DemotionToken {
        let leader = site.leader
        try await checkVersions(site, for: "demotion")
        let before = try await memberStatus(site, leader)
        if before.isWritablePrimary {
            let role = try await memberInfo(site, leader)["role"] as? String
            guard role == "primary" || role == "master" else {
                throw FailoverError.refused(
                    "demotion of site \(site.name) refused: \(leader.name) accepts writes but its Patroni says it is \(role ?? "nothing"); the plan names \(leader.name) first, as the site's leader. Make it Patroni's leader (patronictl switchover within the site) or list the leader first."
                )
            }
            try await setStandbyCluster(
                site, standbyCluster(following: upstream.leader, slot: site.patroni?.slot), what: "demote site \(site.name)")
        } else if !(before.reachable && before.inRecovery) {
            throw FailoverError.refused(
                "demotion of site \(site.name) refused: its leader \(leader.name) is \(before.seen); it must be a primary (or the standby leader it became)."
            )
        }
        _ = try await Poll.until(
            "\(leader.name) to come back as site \(site.name)'s standby leader", timeout: timeout, interval: pollInterval,
            advice: "Look at \(leader.name)'s Patroni log."
        ) { () async throws -> Bool? in
            let s = try await memberStatus(site, leader)
            guard s.reachable, s.inRecovery else { return nil }
            let info = try await memberInfo(site, leader)
            return info["role"] as? String == "standby_leader" && info["state"] as? String == "running" ? true : nil
        }
        return try await shutdownCheckpoint(of: leader)
    }

    /// Removes `standby_cluster`: Patroni promotes the standby leader. With a token, only once the leader has
    /// replayed past it on its timeline. Then proves a write.
    public func promote(_ site: Site, proving token: DemotionToken?) async throws -> Promotion {
        let leader = site.leader
        let before = try await memberStatus(site, leader)
        if !before.isWritablePrimary {
            if let token { try await awaitReplay(site, of: token) }
            try await patchConfig(site, ["standby_cluster": NSNull()], what: "promote site \(site.name)")
            _ = try await Poll.until(
                "\(leader.name) to accept writes after Patroni's promotion", timeout: timeout, interval: pollInterval,
                advice: "Look at \(leader.name)'s Patroni log."
            ) { () async throws -> Bool? in
                try await memberStatus(site, leader).isWritablePrimary ? true : nil
            }
        }
        let written = try await writeProbe(leader)
        let after = try await memberStatus(site, leader)
        return Promotion(
            promotedAtLSN: before.replayLSN ?? before.receiveLSN ?? before.currentLSN ?? .zero,
            previousTimeline: before.walReceiver?.receivedTimeline ?? before.timeline, timeline: after.timeline, firstWriteLSN: written)
    }

    func awaitReplay(_ site: Site, of token: DemotionToken) async throws {
        let leader = site.leader
        let replayed = try await Wait.until(timeout: timeout, interval: pollInterval) { () async throws -> LSN? in
            let s = try await memberStatus(site, leader)
            guard s.systemIdentifier == token.systemIdentifier, let r = s.replayLSN, r > token.checkpointLSN,
                (s.walReceiver?.receivedTimeline ?? s.timeline) == token.timeline
            else { return nil }
            return r
        }
        guard replayed != nil else {
            throw FailoverError.refused(
                "promotion of site \(site.name) refused: \(leader.name) has not replayed the demotion token \(token.text) within \(Int(timeout)) s; nothing was promoted."
            )
        }
    }

    /// Points the standby cluster at `upstream`'s leader (streaming, the repository as fallback), or at the
    /// repository alone, and waits until its leader does so.
    public func follow(_ site: Site, upstream: Site?) async throws {
        let leader = site.leader
        try await setStandbyCluster(
            site, standbyCluster(following: upstream?.leader, slot: site.patroni?.slot),
            what: upstream.map { "site \(site.name) to stream from \($0.name)" } ?? "site \(site.name) to replay from the repository")
        _ = try await Poll.until(
            upstream.map { "\(leader.name) to stream from \($0.leader.name)" } ?? "\(leader.name) to replay from the repository only",
            timeout: timeout, interval: pollInterval, advice: "Look at \(leader.name)'s Patroni and PostgreSQL logs."
        ) { () async throws -> Bool? in
            let s = try await memberStatus(site, leader)
            guard s.reachable, s.inRecovery else { return nil }
            if let upstream { return s.walReceiver?.isStreaming(from: upstream.leader) == true ? true : nil }
            return s.walReceiver?.status == "streaming" ? nil : true
        }
    }

    /// Fences the site: a standby cluster whose leader replays nothing and accepts no write, until a rejoin
    /// points it at the new primary. When a member's Patroni answers (a live site, the ordinary failover
    /// away from a degraded data center): `standby_cluster` set to `{restore_command: /bin/false,
    /// create_replica_methods}` only (no host, port or slot: see ``setStandbyCluster(_:_:what:)``); Patroni 4.1
    /// stops the primary fast, archives its last segment and starts it again as the standby leader, and the
    /// fence waits for that: a standby leader with no WAL source (empty primary_conninfo, restore_command
    /// /bin/false) and no member accepting writes. Refused (exit 3, nothing changed) on a Patroni outside
    /// the 4.1 series, where this was not verified.
    ///
    /// When no member's Patroni answers, every member must be proven stopped (on this host: no postmaster in
    /// its data directory) and `standby_cluster` is written into the cluster's configuration in its etcd,
    /// which is then mandatory: without it, its Patroni would start the old primary again when it returns.
    /// A member that cannot be seen (running but not answering, or refusing over the network) makes the
    /// fence throw ``UnseenMembers``: an outside fence may vouch for it.
    public func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence] {
        try await fence(site, vouchedBy: nil)
    }

    /// The fence, with the unseen members vouched for by an outside fence: `standby_cluster` is still set
    /// (through Patroni, else in etcd, mandatory) so that the site comes back read-only, but failoverd does
    /// not wait for members it cannot see.
    public func fence(_ site: Site, reason: String, vouchedBy outside: String) async throws -> [String: FenceEvidence] {
        try await fence(site, vouchedBy: outside)
    }

    func fence(_ site: Site, vouchedBy outside: String?) async throws -> [String: FenceEvidence] {
        var before: [Instance: InstanceStatus] = [:]
        var versions: [(instance: Instance, version: String)] = []
        for i in site.instances {
            before[i] = try await memberStatus(site, i)
            if let info = try? await memberInfo(site, i) {
                versions.append((i, (info["patroni"] as? [String: Any])?["version"] as? String ?? "unknown"))
            }
        }
        let unseen = site.instances.filter { before[$0]!.running && !before[$0]!.reachable }
        if !unseen.isEmpty && outside == nil {
            let what = unseen.map { "\($0.name) is \(before[$0]!.seen)" }.joined(separator: "; ")
            throw UnseenMembers(
                message:
                    "fence of site \(site.name) refused: \(what). failoverd can neither make it read-only through Patroni (a demotion needs its PostgreSQL to stop) nor prove that it does not accept writes. Restore access to it, or stop it, then resume; or fence site \(site.name) outside failoverd (power, network) and resume with --assume-fenced \(site.name), or give the plan a fencing hook ($.fencing.command).",
                members: unseen.map { SiteMember(instance: $0, status: before[$0]!) })
        }
        let section = standbyCluster(following: nil, fenced: true)
        let how: String
        if !versions.isEmpty {
            if let old = versions.first(where: { !Self.isFenceVerified($0.version) }) {
                throw FailoverError.refused(
                    "fence of site \(site.name) refused: \(old.instance.name) runs Patroni \(old.version), and failoverd fences a running Patroni site only on Patroni 4.1.x, where it was verified (before 4.1 Patroni stops a demoted primary immediately, losing its last WAL; later versions are not verified yet). Nothing was changed. Stop the site's Patroni and PostgreSQL (failoverd then fences it through etcd), or fence it outside failoverd and resume with --assume-fenced \(site.name)."
                )
            }
            try await setStandbyCluster(site, section, what: "fence site \(site.name)")
            how = "made a standby cluster with no WAL source through Patroni"
            // Patroni stops the primary and starts it again as the standby leader: wait for that, not for the
            // moment in between when it is down (and about to come back).
            let seen = site.instances.filter { !unseen.contains($0) }
            _ = try await Poll.until(
                "site \(site.name) to be a standby cluster whose leader replays nothing, with no member accepting writes", timeout: timeout,
                interval: pollInterval, advice: "Look at the Patroni logs of site \(site.name)."
            ) { () async throws -> Bool? in
                var standbyLeader = false
                for i in seen {
                    let s = try await memberStatus(site, i)
                    guard s.isProvenNotWritable else { return nil }
                    if s.reachable, try await memberInfo(site, i)["role"] as? String == "standby_leader" {
                        guard try await replaysNothing(i) else { return nil }
                        standbyLeader = true
                    }
                }
                // With no member running before (all stopped), or the unseen ones vouched for, the configuration
                // and no writable member are what counts.
                return standbyLeader || outside != nil || seen.allSatisfy({ before[$0]!.running == false }) ? true : nil
            }
        } else {
            // No member's Patroni answers: write standby_cluster into the configuration in its DCS, as
            // `patronictl edit-config` does, so that its Patroni starts it as a standby whenever it comes back.
            guard let etcd = site.patroni?.etcd, let cluster = site.patroni else {
                throw FailoverError.refused(
                    "fence of site \(site.name) refused: no member's Patroni answers, and the plan names no etcd for it (patroni.etcd): failoverd cannot set standby_cluster, so its Patroni would start the old primary again when it returns. Nothing was changed. Name the site's etcd in the plan ($.sites[].patroni.etcd, with its TLS and credential files if it needs them) and run the plan again."
                )
            }
            do {
                try await PatroniDCS(endpoint: etcd, cluster: cluster, runner: runner).setStandbyCluster(section)
            } catch let error as FailoverError {
                throw FailoverError.refused(
                    "fence of site \(site.name) refused: no member's Patroni answers, and failoverd could not write standby_cluster into its configuration in etcd \(etcd): \(error.message) Without it its Patroni would start the old primary again when it returns, whoever vouches that it is stopped now. Nothing was changed. Make that etcd answer failoverd (reachable, with the TLS and credential files the plan names), then run the plan again."
                )
            }
            how = "PostgreSQL and Patroni do not answer: recorded fenced; standby_cluster written to its configuration in etcd \(etcd)"
        }
        var out: [String: FenceEvidence] = [:]
        for i in site.instances {
            let s = before[i]!
            var e = FenceEvidence(
                lastKnownLSN: s.position, reachable: s.reachable, wasRunning: s.running,
                lastKnownFrom: s.reachable ? (s.inRecovery ? "pg_last_wal_replay_lsn()" : "pg_current_wal_lsn()") : how)
            e.fencedBy = outside
            out[i.name] = e
        }
        return out
    }

    /// True when `instance` has no WAL source: no primary_conninfo, the fence's restore_command, no WAL
    /// receiver.
    func replaysNothing(_ instance: Instance) async throws -> Bool {
        let row = try await PGConnection.with(adminConnInfo(instance)) {
            try $0.query(
                "SELECT current_setting('primary_conninfo'), current_setting('restore_command'), (SELECT count(*) FROM pg_stat_wal_receiver)::text",
                name: "read the WAL sources"
            ).first ?? []
        }
        return row.count == 3 && row[0] == "" && row[1] == Self.fencedRestoreCommand && row[2] == "0"
    }

    /// Points the diverged site at `source`'s leader and repairs it. By rewind: Patroni runs pg_rewind
    /// itself (use_pg_rewind) when the standby leader's timeline forked off the source's. By rebuild: see
    /// ``rebuild(_:from:)``.
    public func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws {
        if method == .rebuild {
            try await rebuild(site, from: source)
            return
        }
        try await setStandbyCluster(
            site, standbyCluster(following: source.leader, slot: site.patroni?.slot), what: "re-point site \(site.name)")
        try await awaitFollowing(site, source: source)
    }

    /// Rebuilds the site from the repository under Patroni's maintenance mode. Patroni refuses
    /// `POST /reinitialize` on its lock holder (a standby cluster's leader holds it) and removes a diverged
    /// data directory only outside standby clusters, so no API call alone can do it: failoverd first has the
    /// source's leader archive its current segment (``archiveCurrentSegment(of:with:)``) and takes a backup of it
    /// (``backUpBeforeRebuild(_:with:)``), then pauses the
    /// cluster (`PATCH /config {"pause": true}`, Patroni's own way of letting an operator work), points
    /// `standby_cluster` at the source, stops each member and delta-restores it with pgBackRest
    /// (`--type=preserve`: Patroni writes the recovery settings), then resumes the cluster, and Patroni
    /// starts each member as a standby of the source. Needs the members' data directories: members on this
    /// host only; a member elsewhere makes the rebuild refuse before anything changes. A failure leaves the
    /// cluster paused (Patroni promotes nothing while paused) and the step resumable.
    func rebuild(_ site: Site, from source: Site) async throws {
        if let remote = site.instances.first(where: { !HostAddress.isLocal($0.host) }) {
            throw FailoverError.refused(
                "rebuild of Patroni site \(site.name) refused: \(remote.name) is on \(remote.host), and a rebuild restores data directories under Patroni's maintenance mode, which failoverd does on this host only (Patroni cannot reinitialise a standby cluster's leader through its API). Rejoin by rewind, or rebuild it on its host."
            )
        }
        let local = try LocalPostgresDriver(plan: plan, logger: logger)
        let system = try await memberStatus(source, source.leader).systemIdentifier
        for i in site.instances {
            if let control = try await local.controlData(of: i), control.systemIdentifier != system {
                throw FailoverError.refused(
                    "rebuild of \(i.name) refused: its data directory belongs to cluster \(control.systemIdentifier), the source \(source.leader.name) to \(system); failoverd restores over a directory of the plan's cluster only. Move it aside first."
                )
            }
        }
        try await archiveCurrentSegment(of: source.leader, with: local)
        try await backUpBeforeRebuild(source.leader, with: local)
        try await patchConfig(site, ["pause": true], what: "pause site \(site.name) for its rebuild")
        for i in site.instances {
            _ = try await Poll.until("\(i.name)'s Patroni to be paused", timeout: timeout, interval: pollInterval) {
                () async throws -> Bool? in
                try await memberInfo(site, i)["pause"] as? Bool == true ? true : nil
            }
        }
        let section = standbyCluster(following: source.leader, slot: site.patroni?.slot)
        try await setStandbyCluster(site, section, what: "re-point site \(site.name)")
        // Paused, Patroni still writes the new recovery settings into each member's configuration, on its
        // next loop. The members are stopped only once their servers run with them: a member stopped
        // before that starts again, after the restore, with the fence's settings (no WAL source) and waits
        // forever for the backup's first segment.
        let wanted = section["restore_command"] as? String
        for i in site.instances where try await memberStatus(site, i).reachable {
            _ = try await Poll.until(
                "\(i.name) to run with the new standby settings", timeout: timeout, interval: pollInterval,
                advice: "Look at \(i.name)'s Patroni log."
            ) { () async throws -> Bool? in
                let now = try await PGConnection.with(adminConnInfo(i)) { try $0.scalar("SHOW restore_command") }
                return now == wanted ? true : nil
            }
        }
        for i in site.instances {
            try await local.stop(i, mode: .fast)
            let options = ["--pg1-path=" + InstancePaths(i).dataDirectory, "--delta", "--type=preserve", "--log-level-console=warn"]
            try await local.runner.run(local.backrest.executable, local.backrest.arguments("restore", options), timeout: local.bulkTimeout)
                .checked("Site \(site.name) stays paused; look at the pgBackRest log, then resume the run.")
            logger.info("rebuilt from the repository", metadata: ["site": "\(site.name)", "instance": "\(i.name)"])
        }
        let resumed = try await patchConfig(site, ["pause": false], what: "resume site \(site.name) after its rebuild")
        // The PATCH answers with the configuration Patroni wrote: a standby_cluster other than the one set
        // above means a member wrote from a stale copy, and the members would start with it.
        if Self.json(resumed["standby_cluster"] ?? NSNull()) != Self.json(section) {
            logger.warning(
                "standby_cluster changed while the site was paused; setting it again",
                metadata: ["site": "\(site.name)", "found": "\(Self.json(resumed["standby_cluster"] ?? NSNull()))"])
            try await setStandbyCluster(site, section, what: "re-point site \(site.name) after its rebuild")
        }
        try await awaitFollowing(site, source: source)
    }

    /// Switches WAL on the source's leader and waits until its archiver has archived the closed segment.
    /// A member restored from a backup older than a promotion follows the timelines it finds in the
    /// repository: without the new timeline's segment of the fork there, it can replay the old timeline's
    /// copy past the fork, or wait for a segment nobody archives (postgres-facts.md, 7).
    func archiveCurrentSegment(of leader: Instance, with local: LocalPostgresDriver) async throws {
        // The instance driver's switch-wal and archive check, as the instance-level rebuild's step uses them.
        let segment = try await local.switchWAL(leader)
        _ = try await Poll.until(
            "\(leader.name) to archive WAL segment \(segment)", timeout: timeout, interval: pollInterval,
            advice: "Look at \(leader.name)'s archive_command and the pgBackRest log; a rebuild needs it in the repository."
        ) { () async throws -> Bool? in
            try await local.isArchived(leader, segment: segment) ? true : nil
        }
    }

    /// Takes a backup of the source's leader (pgBackRest's default type: incremental on the last one) so that
    /// the members are restored from after the promotion, on the new timeline, and never replay a backup
    /// older than the fork through the timeline switch in the repository: seen to leave a rebuilt member
    /// waiting at the old backup's first record, or following the old timeline past the fork. Done before
    /// the site is paused, so a failure changes nothing. A source on another host is backed up by whoever
    /// runs its backups; the rebuild then restores the latest backup there is.
    func backUpBeforeRebuild(_ leader: Instance, with local: LocalPostgresDriver) async throws {
        guard HostAddress.isLocal(leader.host) else {
            logger.info("the source is on another host: restoring the repository's latest backup", metadata: ["source": "\(leader.name)"])
            return
        }
        let seconds: Double
        do {
            seconds = try await local.backUp(leader, user: plan.replication.effectiveAdminUser)
        } catch let error as FailoverError {
            throw FailoverError(
                error.code, error.message + " Nothing was changed; the rebuild restores from a backup of \(leader.name) taken now.")
        }
        logger.info(
            "backed up the source before the rebuild",
            metadata: ["source": "\(leader.name)", "seconds": "\(String(format: "%.2f", seconds))"])
    }

    func awaitFollowing(_ site: Site, source: Site) async throws {
        let leader = site.leader
        let sourceTimeline = try await memberStatus(source, source.leader).timeline
        do {
            _ = try await Poll.until(
                "\(leader.name) to stream from \(source.leader.name) on timeline \(sourceTimeline)", timeout: max(timeout, 300),
                interval: pollInterval,
                advice: "Look at \(leader.name)'s Patroni log (pg_rewind needs use_pg_rewind and wal_log_hints or checksums)."
            ) { () async throws -> Bool? in
                let s = try await memberStatus(site, leader)
                guard s.reachable, s.inRecovery, let r = s.walReceiver, r.isStreaming(from: source.leader),
                    (r.receivedTimeline ?? 0) >= sourceTimeline
                else { return nil }
                return true
            }
        } catch let error as FailoverError {
            throw FailoverError(error.code, error.message + " " + (await seenWALSources(site, leader)))
        }
    }

    /// What `instance` replays from, as its server and its site's Patroni say, for an error that has to
    /// explain why it does not follow: the running restore_command and primary_conninfo (passwords
    /// redacted), its Patroni role and state, and the site's `standby_cluster`.
    func seenWALSources(_ site: Site, _ instance: Instance) async -> String {
        var seen: [String] = []
        do {
            let row = try await PGConnection.with(adminConnInfo(instance)) {
                try $0.query(
                    "SELECT current_setting('restore_command'), current_setting('primary_conninfo'), pg_is_in_recovery()::text",
                    name: "read the WAL sources"
                ).first ?? []
            }
            let settings = AuditLog.redact([
                "restore_command": row.first.flatMap { $0 } ?? "?", "primary_conninfo": row.dropFirst().first.flatMap { $0 } ?? "?",
            ])
            seen.append(
                "its server runs with restore_command '\(settings["restore_command"] ?? "?")', primary_conninfo '\(settings["primary_conninfo"] ?? "?")', in recovery \(row.last.flatMap { $0 } ?? "?")"
            )
        } catch {
            seen.append("its server does not answer (\(error))")
        }
        if let info = try? await memberInfo(site, instance) {
            seen.append("its Patroni says role \(info["role"] ?? "?"), state \(info["state"] ?? "?")")
        }
        if let config = try? await config(site) {
            seen.append("the site's standby_cluster is \(Self.json(config["standby_cluster"] ?? NSNull()))")
        }
        return "Seen at the deadline on \(instance.name): " + seen.joined(separator: "; ") + "."
    }

    /// The demoted leader's shutdown checkpoint, read again: the token still holds while the leader is a
    /// standby whose latest checkpoint is that record (it has neither written nor been rewound since).
    public func demotionTokenNow(of site: Site) async throws -> DemotionToken? {
        try await shutdownCheckpoint(of: site.leader)
    }

    // MARK: PostgreSQL facts over libpq

    /// The demoted leader's latest checkpoint, proved a clean shutdown's: pg_control_checkpoint() on the
    /// running standby leader (its redo at the record itself) and the record's header, read from its pg_wal,
    /// of type CHECKPOINT_SHUTDOWN. Needs a superuser (or pg_read_server_files) as the plan's admin role.
    public func shutdownCheckpoint(of leader: Instance) async throws -> DemotionToken {
        let sql = """
            SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system()), c.checkpoint_lsn::text,
                   c.redo_lsn::text, c.timeline_id::text, (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')
              FROM pg_control_checkpoint() AS c
            """
        let row = try await PGConnection.with(adminConnInfo(leader)) { try $0.query(sql, name: "read the checkpoint").first ?? [] }
        guard row.count == 6, row[0] == "t", let system = row[1], let lsn = row[2].flatMap(LSN.init), let redo = row[3].flatMap(LSN.init),
            let tli = row[4].flatMap({ Int($0) }), let segmentSize = row[5].flatMap({ UInt64($0) }), segmentSize > 0
        else {
            throw FailoverError.refused(
                "\(leader.name) is not a standby with a readable pg_control (\(row.map { $0 ?? "null" })); there is no demotion token to prove."
            )
        }
        guard redo == lsn else {
            throw FailoverError.refused(
                "\(leader.name)'s latest checkpoint \(lsn) has its redo at \(redo): it is not the shutdown checkpoint of a clean demotion (an immediate stop or a crash leaves an earlier, online checkpoint). The target may lack commits; do not promote it without checking."
            )
        }
        let type = try await recordType(of: leader, at: lsn, timeline: tli, segmentSize: segmentSize)
        guard type == .shutdownCheckpoint else {
            throw FailoverError.refused(
                "\(leader.name)'s latest checkpoint \(lsn) is \(type.description), not a shutdown checkpoint: its demotion was not clean. The target may lack commits; do not promote it without checking."
            )
        }
        return DemotionToken(systemIdentifier: system, timeline: tli, checkpointLSN: lsn)
    }

    /// What the WAL record at `lsn` is, from its header (xl_info, xl_rmid), read with pg_read_binary_file.
    func recordType(of instance: Instance, at lsn: LSN, timeline: Int, segmentSize: UInt64) async throws -> WALRecordType {
        let pageSize: UInt64 = 8192
        let segment = lsn.value / segmentSize
        let perID = 0x1_0000_0000 / segmentSize
        let name = String(format: "%08X%08X%08X", timeline, Int(segment / perID), Int(segment % perID))
        let offset = lsn.value % segmentSize
        // The 24-byte header may cross into the next page, after that page's 24-byte header; never into the
        // next segment for a record that starts at least 24 bytes before the segment's end.
        let crosses = offset % pageSize + 24 > pageSize
        if crosses && (offset / pageSize + 1) * pageSize >= segmentSize {
            throw FailoverError.refused(
                "\(instance.name)'s checkpoint record at \(lsn) starts at the very end of WAL segment \(name); failoverd cannot read its header in one segment. Check it with pg_waldump and decide by hand."
            )
        }
        let length: UInt64 = crosses ? (pageSize - offset % pageSize) + 24 + 24 : 24
        let hex = try await PGConnection.with(adminConnInfo(instance)) {
            try $0.scalar(
                "SELECT encode(pg_read_binary_file($1, $2, $3, false), 'hex')", ["pg_wal/" + name, String(offset), String(length)],
                name: "read the checkpoint record")
        }
        guard let hex, var bytes = Self.bytes(hex: hex), bytes.count == Int(length) else {
            throw FailoverError.refused("could not read \(instance.name)'s WAL segment \(name) at offset \(offset) over libpq.")
        }
        if crosses {
            let first = Int(pageSize - offset % pageSize)
            bytes = Array(bytes[0..<first] + bytes[(first + 24)...])
        }
        return WALRecordType(info: bytes[16], resourceManager: bytes[17])
    }

    static func bytes(hex: String) -> [UInt8]? {
        var out: [UInt8] = []
        var chars = hex.makeIterator()
        while let a = chars.next() {
            guard let b = chars.next(), let v = UInt8(String([a, b]), radix: 16) else { return nil }
            out.append(v)
        }
        return out
    }

    /// Commits a write on `instance`, proving it accepts writes; returns the commit's LSN.
    func writeProbe(_ instance: Instance) async throws -> LSN {
        try await PGConnection.writeProbe(adminConnInfo(instance), instance: instance.name)
    }
}

/// The kind of a WAL record, as far as a demotion token cares.
enum WALRecordType: Equatable, CustomStringConvertible {
    case shutdownCheckpoint
    case onlineCheckpoint
    case other(resourceManager: UInt8, info: UInt8)

    init(info: UInt8, resourceManager: UInt8) {
        switch (resourceManager, info & 0xF0) {
        case (0, 0x00): self = .shutdownCheckpoint
        case (0, 0x10): self = .onlineCheckpoint
        default: self = .other(resourceManager: resourceManager, info: info)
        }
    }

    var description: String {
        switch self {
        case .shutdownCheckpoint: "a shutdown checkpoint"
        case .onlineCheckpoint: "an online checkpoint"
        case .other(let rm, let info): "a record of resource manager \(rm) (info 0x\(String(info, radix: 16)))"
        }
    }
}
