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

    public var expansion: StepExpansion { .siteSteps }

    // MARK: Access

    func api(_ site: Site) throws -> PatroniREST {
        guard let cluster = site.patroni else {
            throw FailoverError.invalid(
                "site \"\(site.name)\" uses driver patroni but names no Patroni cluster (\"patroni\": {\"scope\": …}).")
        }
        return PatroniREST(cluster: cluster, runner: runner)
    }

    func url(_ instance: Instance) throws -> String {
        guard let url = instance.patroni?.url else {
            throw FailoverError.invalid("instance \(instance.name) names no Patroni REST API (\"patroni\": {\"url\": …}).")
        }
        return url
    }

    func site(of instance: Instance) -> Site? { plan.sites.first { $0.instances.contains(instance) } }

    /// How failoverd connects to a member's PostgreSQL (``Plan/adminConnInfo(_:)``).
    func adminConnInfo(_ instance: Instance) -> ConnInfo { plan.adminConnInfo(instance) }

    /// `GET /patroni` of a member: its role, state, timeline and Patroni's version.
    func memberInfo(_ site: Site, _ instance: Instance) async throws -> [String: Any] {
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
    /// stopped only when its PostgreSQL refuses connections and Patroni says it is stopped (or refuses too):
    /// a timeout, a missing route or a Patroni that says `running` leave it unknown (running, unreachable).
    func memberStatus(_ site: Site, _ instance: Instance) async throws -> InstanceStatus {
        do {
            return try await PGConnection.with(adminConnInfo(instance)) { try StatusProbe.run($0) }
        } catch let error as PGError where error.isConnectionFailure && !LocalPostgresDriver.isLoginRefusal(error) {
            let pgLine = error.message.split(separator: "\n").first.map(String.init) ?? "no answer"
            let pgRefused = pgLine.lowercased().contains("connection refused")
            var patroni: String
            var patroniSaysDown = false
            do {
                let info = try await memberInfo(site, instance)
                let state = info["state"] as? String ?? "?"
                patroniSaysDown = ["stopped", "crashed"].contains(state)
                patroni = "Patroni says \(state)"
            } catch let failure as PatroniREST.Failure {
                if case .refused = failure { patroniSaysDown = true }
                patroni = "Patroni: \(failure)"
            }
            if pgRefused && patroniSaysDown { return .stopped }
            var status = InstanceStatus.stopped
            status.running = true
            status.unreachableReason = "PostgreSQL: \(pgLine); \(patroni)"
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
        let parts = version.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        guard parts.count >= 2 else { return false }
        return parts.lexicographicallyPrecedes(minimumVersion) == false
    }

    // MARK: Site operations

    /// The `standby_cluster` section for following `upstream`'s leader, with the repository as the second
    /// WAL source.
    func standbyCluster(following upstream: Instance?, slot: String? = nil, fenced: Bool = false) -> [String: Any] {
        var section: [String: Any] = [
            // Fenced: no WAL source at all. A fenced primary may hold WAL past the new primary's fork; with
            // the repository as a source it would find the new timeline's history and refuse to start
            // ("could not locate a valid checkpoint record"). With none it stays read-only on its own WAL
            // until a rejoin points it at the new primary and Patroni rewinds it.
            "restore_command": fenced ? "/bin/false" : PgBackRest(plan: plan).restoreCommand,
            "create_replica_methods": ["pgbackrest", "basebackup"],
        ]
        if let upstream {
            section["host"] = upstream.host
            section["port"] = upstream.port
            // The follower's slot on the upstream's leader (a permanent slot the upstream cluster declares).
            section["primary_slot_name"] = slot ?? NSNull()
        } else {
            section["host"] = NSNull()
            section["port"] = NSNull()
            section["primary_slot_name"] = NSNull()
        }
        return section
    }

    func patchConfig(_ site: Site, _ body: [String: Any], what: String) async throws {
        var lastError = ""
        for i in [site.leader] + site.followers {
            do {
                let response = try await api(site).patch(try url(i), "/config", json: body)
                guard response.status == 200 else {
                    throw FailoverError.failed(
                        "\(what): \(i.name)'s Patroni answered PATCH /config with HTTP \(response.status): \(response.body.prefix(300))")
                }
                logger.info("PATCH /config", metadata: ["site": "\(site.name)", "member": "\(i.name)", "what": "\(what)"])
                return
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
            try await patchConfig(
                site, ["standby_cluster": standbyCluster(following: upstream.leader, slot: site.patroni?.slot)],
                what: "demote site \(site.name)")
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
        try await patchConfig(
            site, ["standby_cluster": standbyCluster(following: upstream?.leader, slot: site.patroni?.slot)],
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

    /// Makes the site a standby cluster that replays from the repository only: Patroni stops its primary
    /// fast and starts it read-only, and keeps every member read-only until `standby_cluster` is removed.
    /// A site whose members all refuse connections (PostgreSQL and Patroni both down) is recorded fenced
    /// as it is; a member that cannot be seen makes the fence refuse.
    public func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence] {
        var before: [Instance: InstanceStatus] = [:]
        for i in site.instances { before[i] = try await memberStatus(site, i) }
        let apiAnswers = await withTaskGroup(of: Bool.self) { group in
            for i in site.instances {
                group.addTask { (try? await memberInfo(site, i)) != nil }
            }
            return await group.reduce(false) { $0 || $1 }
        }
        if apiAnswers {
            try await patchConfig(site, ["standby_cluster": standbyCluster(following: nil, fenced: true)], what: "fence site \(site.name)")
            // Patroni stops the leader and starts it again as the standby leader: wait for that, not for the
            // moment in between when it is down (and about to come back).
            _ = try await Poll.until(
                "site \(site.name)'s leader to run as a read-only standby leader and no member to accept writes", timeout: timeout,
                interval: pollInterval, advice: "Look at the Patroni logs of site \(site.name)."
            ) { () async throws -> Bool? in
                let leader = try await memberStatus(site, site.leader)
                guard leader.reachable, leader.inRecovery,
                    try await memberInfo(site, site.leader)["role"] as? String == "standby_leader"
                else { return nil }
                for i in site.followers where try await !memberStatus(site, i).isProvenNotWritable { return nil }
                return true
            }
        } else if let unknown = before.first(where: { !$0.value.isProvenNotWritable }) {
            throw FailoverError.refused(
                "fence of site \(site.name) refused: no member's Patroni answers, and \(unknown.key.name) is \(unknown.value.seen). failoverd cannot tell whether it accepts writes; restore access to it, or stop it, then resume."
            )
        }
        // Nothing of the site runs: write standby_cluster into its configuration in the DCS, as
        // `patronictl edit-config` does, so that its Patroni starts it as a standby whenever it comes back.
        var dcsNote = "set standby_cluster in its DCS before its Patroni runs again"
        if !apiAnswers, let etcd = site.patroni?.etcd {
            do {
                try await PatroniDCS(endpoint: etcd, scope: site.patroni?.scope ?? site.name, runner: runner).setStandbyCluster(
                    standbyCluster(following: nil, fenced: true))
                dcsNote = "standby_cluster written to its configuration in etcd \(etcd)"
            } catch {
                dcsNote = "its etcd \(etcd) did not take standby_cluster (\(error)); set it before its Patroni runs again"
                logger.warning(
                    "fence of a stopped Patroni site could not write its DCS", metadata: ["site": "\(site.name)", "error": "\(error)"])
            }
        }
        var out: [String: FenceEvidence] = [:]
        for i in site.instances {
            let s = before[i] ?? .stopped
            out[i.name] = FenceEvidence(
                lastKnownLSN: s.position, reachable: s.reachable, wasRunning: s.running,
                lastKnownFrom: s.reachable
                    ? (s.inRecovery ? "pg_last_wal_replay_lsn()" : "pg_current_wal_lsn()")
                    : apiAnswers
                        ? "not answering; made a standby cluster through Patroni"
                        : "PostgreSQL and Patroni refused connections: recorded fenced; \(dcsNote)")
        }
        return out
    }

    /// Points the diverged site at `source`'s leader and repairs it. By rewind: Patroni runs pg_rewind
    /// itself (use_pg_rewind) when the standby leader's timeline forked off the source's. By rebuild: see
    /// ``rebuild(_:from:)``.
    public func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws {
        if method == .rebuild {
            try await rebuild(site, from: source)
            return
        }
        try await patchConfig(
            site, ["standby_cluster": standbyCluster(following: source.leader, slot: site.patroni?.slot)],
            what: "re-point site \(site.name)")
        try await awaitFollowing(site, source: source)
    }

    /// Rebuilds the site from the repository under Patroni's maintenance mode. Patroni refuses
    /// `POST /reinitialize` on its lock holder (a standby cluster's leader holds it) and removes a diverged
    /// data directory only outside standby clusters, so no API call alone can do it: failoverd pauses the
    /// cluster (`PATCH /config {"pause": true}`, Patroni's own way of letting an operator work), points
    /// `standby_cluster` at the source, stops each member and delta-restores it with pgBackRest
    /// (`--type=preserve`: Patroni writes the recovery settings), then resumes the cluster, and Patroni
    /// starts each member as a standby of the source. Needs the members' data directories: members on this
    /// host only; a member elsewhere makes the rebuild refuse before anything changes. A failure leaves the
    /// cluster paused (Patroni promotes nothing while paused) and the step resumable.
    func rebuild(_ site: Site, from source: Site) async throws {
        if let remote = site.instances.first(where: { !LocalHost.isLocal($0.host) }) {
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
        try await patchConfig(site, ["pause": true], what: "pause site \(site.name) for its rebuild")
        for i in site.instances {
            _ = try await Poll.until("\(i.name)'s Patroni to be paused", timeout: timeout, interval: pollInterval) {
                () async throws -> Bool? in
                try await memberInfo(site, i)["pause"] as? Bool == true ? true : nil
            }
        }
        let section = standbyCluster(following: source.leader, slot: site.patroni?.slot)
        try await patchConfig(site, ["standby_cluster": section], what: "re-point site \(site.name)")
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
        try await patchConfig(site, ["pause": false], what: "resume site \(site.name) after its rebuild")
        try await awaitFollowing(site, source: source)
    }

    func awaitFollowing(_ site: Site, source: Site) async throws {
        let leader = site.leader
        let sourceTimeline = try await memberStatus(source, source.leader).timeline
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
