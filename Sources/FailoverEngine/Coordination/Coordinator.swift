import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The run lock of one replicated cluster, held in etcd: a key created only if absent, attached to a lease
/// this coordinator keeps alive. The fencing token is the key's create revision; every journal record of
/// the run is written in an etcd transaction that compares it (``fencedWrite(puts:deletes:)``).
///
/// The key is `<prefix>/clusters/<system identifier>/lock`, so every plan over the same PostgreSQL cluster,
/// whatever its name, file or machine, contends for it. etcd out of reach is a refusal, never a fallback to
/// the state directory's own lock.
public final class Coordinator: @unchecked Sendable {
    /// Who holds the lock: the value of the lock key.
    public struct Holder: Codable, Sendable, Equatable {
        /// The run (or `resume`, `abandon`) holding it.
        public var run: String
        /// The plan's name.
        public var plan: String
        /// SHA-256 of the plan's canonical JSON.
        public var planSHA256: String
        /// The coordinator's host.
        public var host: String
        /// Its pid.
        public var pid: Int32
        /// When its process started (seconds since boot, from /proc), so a reused pid is not taken for it.
        public var startTime: Double?
        /// When it took the lock (ISO 8601).
        public var since: String
        /// Its state directory.
        public var stateDirectory: String

        /// This process as the holder of `run` of `plan` from `stateDirectory`, since now.
        public static func thisProcess(run: String, plan: Plan, stateDirectory: String) -> Holder {
            let json = String(decoding: plan.canonicalJSON(), as: UTF8.self)
            return Holder(
                run: run, plan: plan.name, planSHA256: AuditLog.sha256(json), host: AuditLog.identity.host, pid: getpid(),
                startTime: ProcessIdentity.current?.startTime, since: Journal.now(), stateDirectory: stateDirectory)
        }

        /// `run R of plan P, pid N on HOST (state directory D), since T`.
        public var description: String {
            "run \(run) of plan \"\(plan)\", pid \(pid) on \(host) (state directory \(stateDirectory)), since \(since)"
        }
    }

    /// The plan's settings.
    public let settings: EtcdCoordination
    /// The cluster's PostgreSQL system identifier.
    public let systemIdentifier: String
    /// `<prefix>/clusters/<system identifier>`.
    public let base: String
    let gateway: EtcdGateway

    private let mutex = NSLock()
    private var leaseID: String?
    private var fencingToken: Int64 = 0
    private var lastAck: Double = 0
    private var lostReason: String?
    private var keepalive: Task<Void, Never>?
    private(set) var holder: Holder?

    /// A coordinator for the cluster `systemIdentifier` through `settings`.
    public init(settings: EtcdCoordination, systemIdentifier: String) {
        self.settings = settings
        self.systemIdentifier = systemIdentifier
        var prefix = settings.effectivePrefix
        while prefix.hasSuffix("/") && prefix.count > 1 { prefix.removeLast() }
        base = (prefix == "/" ? "" : prefix) + "/clusters/" + systemIdentifier
        gateway = EtcdGateway(
            endpoints: settings.endpoints, caFile: settings.caFile, certFile: settings.certFile, keyFile: settings.keyFile,
            settingsHint: "coordination.etcd", timeout: max(2, min(5, Double(settings.effectiveLeaseSeconds) / 2)))
    }

    /// The lock key.
    public var lockKey: String { base + "/lock" }
    /// The fencing token (the lock key's create revision); 0 before the lock is taken.
    public var token: Int64 { mutex.withLock { fencingToken } }
    /// The lease in seconds.
    public var leaseSeconds: Double { Double(settings.effectiveLeaseSeconds) }
    /// `host pid token`: which coordinator wrote a record, as every audit event of a coordinated run says.
    public var stamp: String { "\(AuditLog.identity.host) pid \(getpid()) token \(token)" }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    func unreachable(_ error: Error, doing what: String) -> FailoverError {
        .refused(
            "etcd cannot be reached (\(what)): \(error). A coordinated run takes no step without its etcd quorum, and never falls back to the local lock. Restore etcd (coordination.etcd.endpoints: \(settings.endpoints.joined(separator: ", "))), then run or resume again."
        )
    }

    // MARK: the lock

    /// Takes the lock for `holder`; with `wait`, waits up to the lease (plus etcd's expiry granularity) for a
    /// dead holder's lease to expire. Throws exit 4 naming the holder when it stays held, exit 3 when etcd
    /// cannot be reached or answers with another cluster's data.
    public func acquire(_ holder: Holder, wait: Bool) async throws {
        let value = String(decoding: try JSONEncoder.sorted.encode(holder), as: UTF8.self)
        do { try await checkIdentity() } catch let e as FailoverError { throw e } catch {
            throw unreachable(error, doing: "reading the cluster's identity")
        }
        let deadline = Self.now() + (wait ? leaseSeconds + 3 : 0)
        while true {
            // A lease per attempt, granted just before it: one granted before a wait would expire unrenewed.
            let current: KeyValue?
            do { current = try await currentKey() } catch { throw unreachable(error, doing: "reading the run lock") }
            if current == nil {
                let lease: String
                let answer: [String: Any]
                do {
                    let grant = try await gateway.post("/v3/lease/grant", ["TTL": settings.effectiveLeaseSeconds])
                    guard let id = grant["ID"] as? String ?? (EtcdGateway.int(grant["ID"]).map { String($0) }) else {
                        throw FailoverError.refused("etcd granted no lease: \(grant)")
                    }
                    lease = id
                    answer = try await gateway.post(
                        "/v3/kv/txn",
                        [
                            "compare": [["key": EtcdGateway.b64(lockKey), "target": "CREATE", "result": "EQUAL", "create_revision": "0"]],
                            "success": [
                                ["request_put": ["key": EtcdGateway.b64(lockKey), "value": EtcdGateway.b64(value), "lease": lease]]
                            ],
                            "failure": [["request_range": ["key": EtcdGateway.b64(lockKey)]]],
                        ])
                } catch let e as FailoverError {
                    throw e
                } catch {
                    throw unreachable(error, doing: "taking the run lock")
                }
                if let revision = Self.acquiredRevision(answer, lease: lease) {
                    mutex.withLock {
                        leaseID = lease
                        fencingToken = revision
                        lastAck = Self.now()
                        lostReason = nil
                        self.holder = holder
                    }
                    startKeepalive()
                    return
                }
                _ = try? await gateway.post("/v3/lease/revoke", ["ID": lease])
            }
            if Self.now() >= deadline {
                let held = try? await currentKey()
                let other = held.flatMap { try? JSONDecoder().decode(Holder.self, from: Data($0.value.utf8)) }
                throw FailoverError(
                    .lockHeld,
                    "another coordinator holds the run lock of PostgreSQL cluster \(systemIdentifier) (etcd key \(lockKey), token \(held?.createRevision ?? 0)): \(other?.description ?? "holder unreadable"). "
                        + (wait
                            ? "Its lease was kept alive for \(Int(leaseSeconds) + 3) s: that coordinator is alive. Let it finish; inspect it with `failoverd status --plan PLAN`."
                            : "Wait for it to finish (`failoverd status --plan PLAN` shows it); if its machine is lost, `failoverd resume --plan PLAN` here takes over once its lease (\(Int(leaseSeconds)) s) expired.")
                )
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The fencing token an acquiring transaction's answer gives this coordinator, nil when the lock is
    /// another's. Succeeded: the answer's revision, the key's create revision. Failed, but the key the
    /// failure branch read is attached to `lease`: this coordinator's own earlier try landed (its answer was
    /// lost and the gateway sent the transaction to the next member), so the key is its own, and its create
    /// revision the token. Only the lease granted for this attempt can make it so.
    static func acquiredRevision(_ answer: [String: Any], lease: String) -> Int64? {
        if answer["succeeded"] as? Bool == true {
            return EtcdGateway.int((answer["header"] as? [String: Any])?["revision"])
        }
        let range = ((answer["responses"] as? [[String: Any]])?.first?["response_range"] as? [String: Any])
        guard let raw = (range?["kvs"] as? [[String: Any]])?.first, let kv = keyValue(raw), let held = kv.lease.flatMap({ Int64($0) }),
            held == Int64(lease), kv.createRevision > 0
        else { return nil }
        return kv.createRevision
    }

    /// The lock key as etcd holds it now (linearizable read), nil when free.
    func currentKey() async throws -> KeyValue? {
        let answer = try await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64(lockKey)])
        return (answer["kvs"] as? [[String: Any]])?.first.flatMap(Self.keyValue)
    }

    /// Refuses an etcd whose key for this cluster names another system identifier.
    func checkIdentity() async throws {
        let key = base + "/identity"
        let range = try await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64(key)])
        if let kv = (range["kvs"] as? [[String: Any]])?.first, let text = EtcdGateway.text(kv["value"]) {
            guard text == systemIdentifier else {
                throw FailoverError.refused(
                    "etcd holds another cluster's data under \(base): \(key) says \(text), the plan's servers \(systemIdentifier). Check coordination.etcd.prefix and endpoints; nothing was changed."
                )
            }
            return
        }
        _ = try await gateway.post(
            "/v3/kv/txn",
            [
                "compare": [["key": EtcdGateway.b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"]],
                "success": [["request_put": ["key": EtcdGateway.b64(key), "value": EtcdGateway.b64(systemIdentifier)]]],
            ])
    }

    /// Keeps the lease alive every sixth of it; a keepalive answered without a TTL means the lease is gone.
    func startKeepalive() {
        let interval = max(0.2, leaseSeconds / 6)
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
                guard let self, let lease = self.mutex.withLock({ self.leaseID }) else { return }
                do {
                    let answer = try await self.gateway.post("/v3/lease/keepalive", ["ID": lease])
                    let result = answer["result"] as? [String: Any] ?? answer
                    if EtcdGateway.int(result["TTL"]) ?? 0 > 0 {
                        self.mutex.withLock { self.lastAck = Self.now() }
                    } else {
                        self.mutex.withLock {
                            if self.lostReason == nil { self.lostReason = "its lease \(lease) expired" }
                        }
                        return
                    }
                } catch {
                    // Not acknowledged: ``checkLive()`` measures how long ago the last one was.
                }
            }
        }
        mutex.withLock { keepalive = task }
    }

    /// Throws (exit 4) unless this coordinator's last keepalive was acknowledged within a third of the lease:
    /// called before every step and every act, and before every journal record.
    public func checkLive() throws {
        let (lost, ack, held) = mutex.withLock { (lostReason, lastAck, leaseID != nil) }
        guard held else {
            throw FailoverError(.lockHeld, "this coordinator does not hold the run lock of cluster \(systemIdentifier)")
        }
        if let lost {
            throw FailoverError(
                .lockHeld,
                "this coordinator lost the run lock of cluster \(systemIdentifier) (\(lost)); another coordinator may hold it now. It stops before any further side effect; see `failoverd status --plan PLAN`."
            )
        }
        let age = Self.now() - ack
        if age > leaseSeconds / 3 {
            throw FailoverError(
                .lockHeld,
                "etcd cannot be reached: this coordinator's last keepalive was acknowledged \(String(format: "%.1f", age)) s ago (more than a third of the \(Int(leaseSeconds)) s lease), so it may no longer hold the run lock of cluster \(systemIdentifier). It stops before any further side effect; resume once etcd answers (`failoverd resume --plan PLAN`)."
            )
        }
    }

    /// Marks the lock lost (a fenced write was refused).
    func markLost(_ reason: String) { mutex.withLock { if lostReason == nil { lostReason = reason } } }

    /// Stops the keepalive and revokes the lease (the lock key goes with it). Harmless when the lease is gone.
    public func release() async {
        let (task, lease) = mutex.withLock { () -> (Task<Void, Never>?, String?) in
            let t = (keepalive, leaseID)
            keepalive = nil
            leaseID = nil
            return t
        }
        task?.cancel()
        if let lease { _ = try? await gateway.post("/v3/lease/revoke", ["ID": lease]) }
    }

    /// Stops keeping the lease alive without revoking it: what a SIGKILL leaves (for the benchmark of takeover).
    @_spi(Benchmarks) public func abandonLease() {
        let task = mutex.withLock { () -> Task<Void, Never>? in
            let t = keepalive
            keepalive = nil
            return t
        }
        task?.cancel()
    }

    // MARK: fenced writes and reads

    /// Writes `puts` and `deletes` (keys relative to ``base``) in etcd transactions that each compare the lock
    /// key's create revision with this coordinator's token, at most 100 operations per transaction, in order.
    /// Blocking: the journal calls it inside its SQLite transaction, which commits only after etcd acknowledged.
    @_spi(Benchmarks) public func fencedWrite(puts: [(String, String)], deletes: [String]) throws {
        try checkLive()
        let token = self.token
        var ops: [[String: Any]] = puts.map {
            ["request_put": ["key": EtcdGateway.b64(base + "/" + $0.0), "value": EtcdGateway.b64($0.1)]]
        }
        ops += deletes.map { ["request_delete_range": ["key": EtcdGateway.b64(base + "/" + $0)]] }
        var index = 0
        while index < ops.count {
            let chunk = Array(ops[index..<min(ops.count, index + 100)])
            index += chunk.count
            let answer: [String: Any]
            do {
                answer = try gateway.postBlocking(
                    "/v3/kv/txn",
                    [
                        "compare": [
                            ["key": EtcdGateway.b64(lockKey), "target": "CREATE", "result": "EQUAL", "create_revision": String(token)]
                        ],
                        "success": chunk,
                    ])
            } catch {
                throw FailoverError(
                    .lockHeld,
                    "etcd cannot be reached: a journal record of cluster \(systemIdentifier) could not be written (\(error)); nothing was recorded, here or in etcd, and the run stops before any further side effect. Resume once etcd answers (`failoverd resume --plan PLAN`)."
                )
            }
            guard answer["succeeded"] as? Bool == true else {
                markLost("etcd refused a record fenced by token \(token): the lock key is gone or another coordinator's")
                throw FailoverError(
                    .lockHeld,
                    "this coordinator lost the run lock of cluster \(systemIdentifier): etcd refused a journal record fenced by token \(token) (the lock key \(lockKey) expired or belongs to another coordinator). Nothing was recorded; it stops here."
                )
            }
        }
    }

    /// One key and value as read from etcd.
    struct KeyValue: Sendable {
        var key: String
        var value: String
        var createRevision: Int64
        var lease: String?
    }

    static func keyValue(_ kv: [String: Any]) -> KeyValue? {
        guard let key = EtcdGateway.text(kv["key"]) else { return nil }
        return KeyValue(
            key: key, value: EtcdGateway.text(kv["value"]) ?? "", createRevision: EtcdGateway.int(kv["create_revision"]) ?? 0,
            lease: (kv["lease"] as? String) ?? EtcdGateway.int(kv["lease"]).map { String($0) })
    }

    /// Every key under `base/sub` (linearizable read), with keys relative to ``base``.
    func range(_ sub: String) async throws -> [KeyValue] {
        let prefix = base + "/" + sub
        let answer = try await gateway.post(
            "/v3/kv/range", ["key": EtcdGateway.b64(prefix), "range_end": EtcdGateway.rangeEnd(prefix), "sort_order": "ASCEND"])
        return (answer["kvs"] as? [[String: Any]] ?? []).compactMap(Self.keyValue).map {
            var kv = $0
            kv.key = String(kv.key.dropFirst(base.count + 1))
            return kv
        }
    }

    /// The lock key as etcd has it now, with the seconds its lease has left (nil when none).
    func currentLock() async throws -> (value: KeyValue, holder: Holder?, ttl: Int64?)? {
        let answer = try await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64(lockKey)])
        guard let raw = (answer["kvs"] as? [[String: Any]])?.first, let kv = Self.keyValue(raw) else { return nil }
        var ttl: Int64?
        if let lease = kv.lease {
            let t = try? await gateway.post("/v3/lease/timetolive", ["ID": lease])
            ttl = EtcdGateway.int(t?["TTL"])
        }
        return (kv, try? JSONDecoder().decode(Holder.self, from: Data(kv.value.utf8)), ttl)
    }
}

extension JSONEncoder {
    /// An encoder with sorted keys.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return e
    }
}
