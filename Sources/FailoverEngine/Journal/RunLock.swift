import Foundation
import GRDB

/// One run per state directory at a time, with a fencing epoch that increases at every takeover.
///
/// The lock is a row in the journal: holder run, pid, host, acquisition and renewal times, lease.
/// A holder on this host is alive while its pid is; a holder elsewhere while its lease is fresh.
public struct RunLock: Sendable {
    /// The holder this process became.
    public struct Holder: Sendable, Equatable {
        /// The run holding the lock.
        public var runID: String
        /// The fencing epoch, recorded on every journal row written under this lock.
        public var epoch: Int64
        /// True when the lock was taken over from a dead holder.
        public var tookOver: Bool
    }

    let journal: Journal
    /// How long a holder on another host is presumed alive without renewing.
    public var leaseSeconds: Double

    /// A lock over `journal`'s state directory.
    public init(journal: Journal, leaseSeconds: Double = 30) {
        self.journal = journal
        self.leaseSeconds = leaseSeconds
    }

    static var host: String { ProcessInfo.processInfo.hostName }
    static var pid: Int32 { getpid() }

    /// Takes the lock for `runID`, or throws ``FailoverError/Code/lockHeld`` naming the live holder.
    public func acquire(runID: String) throws -> Holder {
        try journal.db.write { db in
            let row = try Row.fetchOne(db, sql: "SELECT * FROM run_lock WHERE id = 1")!
            var epoch: Int64 = row["epoch"]
            var tookOver = false
            if let pid: Int32 = row["pid"], let host: String = row["host"] {
                let acquired: String = row["acquired_at"] ?? "?"
                let holderRun: String = row["run_id"] ?? "?"
                if Self.isAlive(
                    pid: pid, host: host, startTime: row["pid_start_time"], renewedAt: row["renewed_at"],
                    lease: row["lease_seconds"] ?? leaseSeconds)
                {
                    throw FailoverError(
                        .lockHeld,
                        "another failoverd run holds this state directory: run \(holderRun), pid \(pid) on \(host), since \(acquired). Wait for it to finish, or stop that process; a dead holder's lock is taken over automatically."
                    )
                }
                epoch += 1
                tookOver = true
                try AuditLog.append(
                    db, kind: .lockTakeover, run: runID,
                    details: [
                        "previousRun": holderRun, "previousPid": String(pid), "previousHost": host, "previousAcquiredAt": acquired,
                        "epoch": String(epoch),
                    ])
            }
            let now = Journal.now()
            try db.execute(
                sql: """
                    UPDATE run_lock SET run_id = ?, pid = ?, host = ?, acquired_at = ?, renewed_at = ?, lease_seconds = ?, epoch = ?,
                        pid_start_time = ?
                    WHERE id = 1
                    """, arguments: [runID, Self.pid, Self.host, now, now, leaseSeconds, epoch, ProcessIdentity.current?.startTime])
            return Holder(runID: runID, epoch: epoch, tookOver: tookOver)
        }
    }

    /// Hands the lock to another run id (resume of a run found while holding it), keeping the epoch.
    public func reassign(_ holder: Holder, to runID: String) throws -> Holder {
        try journal.db.write { db in
            try db.execute(
                sql: "UPDATE run_lock SET run_id = ? WHERE id = 1 AND pid = ? AND epoch = ?", arguments: [runID, Self.pid, holder.epoch])
        }
        return Holder(runID: runID, epoch: holder.epoch, tookOver: holder.tookOver)
    }

    /// Sets the fencing epoch of the lock `holder` holds to `epoch` (a coordinated run's token in etcd).
    public func adopt(_ holder: Holder, epoch: Int64) throws -> Holder {
        try journal.db.write { db in
            try db.execute(
                sql: "UPDATE run_lock SET epoch = ? WHERE id = 1 AND pid = ? AND epoch = ?", arguments: [epoch, Self.pid, holder.epoch])
            if db.changesCount == 0 { throw lost(holder) }
        }
        return Holder(runID: holder.runID, epoch: epoch, tookOver: holder.tookOver)
    }

    /// Renews the lease; throws when the lock was taken over meanwhile.
    public func renew(_ holder: Holder) throws {
        try journal.db.write { db in
            try db.execute(
                sql: "UPDATE run_lock SET renewed_at = ? WHERE id = 1 AND pid = ? AND host = ? AND epoch = ?",
                arguments: [Journal.now(), Self.pid, Self.host, holder.epoch])
            if db.changesCount == 0 { throw lost(holder) }
        }
    }

    /// Throws unless this process still holds the lock at its epoch: destructive steps call it first.
    public func verify(_ holder: Holder) throws {
        try journal.db.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT pid, host, epoch FROM run_lock WHERE id = 1")!
            guard row["pid"] as Int32? == Self.pid, row["host"] as String? == Self.host, row["epoch"] as Int64 == holder.epoch else {
                throw lost(holder)
            }
        }
    }

    /// Releases the lock if this process holds it.
    public func release(_ holder: Holder) throws {
        try journal.db.write { db in
            try db.execute(
                sql: """
                    UPDATE run_lock SET run_id = NULL, pid = NULL, host = NULL, acquired_at = NULL, renewed_at = NULL
                    WHERE id = 1 AND pid = ? AND epoch = ?
                    """, arguments: [Self.pid, holder.epoch])
        }
    }

    func lost(_ holder: Holder) -> FailoverError {
        .refused(
            "run \(holder.runID) lost the run lock (epoch \(holder.epoch)): another failoverd process took it over. Stop here; inspect `failoverd status`."
        )
    }

    /// Liveness of a holder: on this host its pid, and only while that pid is still the process that took
    /// the lock (same start time: a pid reused after a crash or a reboot does not hold it); elsewhere its lease.
    static func isAlive(pid: Int32, host: String, startTime: Double?, renewedAt: String?, lease: Double) -> Bool {
        if host == Self.host {
            if pid == Self.pid { return false }
            if let startTime { return ProcessIdentity.matches(pid: pid, startTime: startTime) }
            return kill(pid, 0) == 0 || errno == EPERM
        }
        guard let renewedAt, let date = Journal.date(renewedAt) else {
            return false
        }
        return Date().timeIntervalSince(date) < lease
    }
}
