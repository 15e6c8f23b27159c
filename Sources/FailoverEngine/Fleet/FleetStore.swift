import Foundation
import GRDB

extension RunState {
    /// For a fleet run: true while `fleet resume` continues it (running, or failed: not every member succeeded
    /// and some member changed a server). A fleet run is `refused` when every member that ran was refused
    /// before changing anything and none succeeded: closed, a new fleet run may start.
    public var isUnfinished: Bool { self == .running || self == .failed }
}

/// How one member of a fleet run stands.
public enum MemberState: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// Not started: waiting for a free slot or for the members it waits for.
    case waiting
    /// Its run is being started (recorded before the run begins, so a crash here is found by resume).
    case starting
    /// Its run is executing.
    case running
    /// Its run succeeded.
    case succeeded
    /// Its run failed after changing a server; resumable alone or by `fleet resume`.
    case failed
    /// Its run was refused before changing anything.
    case refused
    /// Never started: the brake engaged, or a member it waits for did not succeed.
    case skipped
    /// Its run was abandoned (by `fleet abandon`, or alone by `failoverd abandon`).
    case abandoned

    public var description: String { rawValue }
    /// Counted by the brake.
    public var isFailure: Bool { self == .failed || self == .refused }
}

/// A fleet run as the fleet record holds it (table `fleet_runs`).
public struct FleetRunRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// The fleet run id, e.g. `f-20261127-041502-7f3a`.
    public var id: String
    /// The fleet's name.
    public var fleetName: String
    /// The fleet file, as given on the command line.
    public var fleetFile: String
    /// The fleet as canonical JSON, member plans included: resume never reads the files again.
    public var fleetJSON: String
    /// SHA-256 of fleetJSON.
    public var fleetSHA256: String
    /// How many members act at once.
    public var concurrency: Int
    /// Failed or refused members that stop new starts.
    public var brake: Int
    /// How it stands.
    public var outcome: RunState
    /// Why it ended as it did, if not succeeded.
    public var error: String?
    /// user@host of the process that started it.
    public var actor: String
    /// True when `fleet drill` started it.
    public var isDrill: Bool
    /// True for a rehearsal against the simulated driver (`--simulate`).
    public var simulate: Bool
    /// When it started.
    public var startedAt: String
    /// When it ended.
    public var endedAt: String?

    /// The table.
    public static let databaseTableName = "fleet_runs"

    public enum CodingKeys: String, CodingKey {
        case id
        case fleetName = "fleet_name"
        case fleetFile = "fleet_file"
        case fleetJSON = "fleet_json"
        case fleetSHA256 = "fleet_sha256"
        case concurrency, brake, outcome, error, actor
        case isDrill = "is_drill"
        case simulate
        case startedAt = "started_at"
        case endedAt = "ended_at"
    }

    /// The fleet, decoded.
    public func fleet() throws -> Fleet { try JSONDecoder().decode(Fleet.self, from: Data(fleetJSON.utf8)) }
}

/// A member of a fleet run as the fleet record holds it (table `fleet_members`).
public struct FleetMemberRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    /// The fleet run.
    public var fleetRun: String
    /// The member's name.
    public var member: String
    /// Its position in the fleet file, from 0.
    public var position: Int
    /// Its plan's name.
    public var planName: String
    /// Its state directory.
    public var stateDirectory: String
    /// How it stands.
    public var status: MemberState
    /// Its run in its own journal, once known.
    public var runID: String?
    /// The last run its journal held before the fleet started it: a run after that one is the fleet's.
    public var previousRunID: String?
    /// How many times the fleet started or resumed it.
    public var attempts: Int
    /// When the fleet first started it.
    public var startedAt: String?
    /// When it last ended.
    public var endedAt: String?
    /// Why it failed, was refused or skipped.
    public var error: String?

    /// The table.
    public static let databaseTableName = "fleet_members"

    public enum CodingKeys: String, CodingKey {
        case fleetRun = "fleet_run"
        case member, position
        case planName = "plan_name"
        case stateDirectory = "state_directory"
        case status
        case runID = "run_id"
        case previousRunID = "previous_run_id"
        case attempts
        case startedAt = "started_at"
        case endedAt = "ended_at"
        case error
    }
}

/// One event of a fleet run (table `fleet_events`): a member started or ended, the brake engaged, a resume.
public struct FleetEventRecord: Codable, Sendable, Equatable, FetchableRecord {
    /// Its order.
    public var seq: Int64
    /// The fleet run.
    public var fleetRun: String
    /// When.
    public var at: String
    /// The member, if about one.
    public var member: String?
    /// What: `fleet-start`, `member-start`, `member-end`, `brake`, `fleet-resume`, `fleet-end`, `fleet-abandon`.
    public var kind: String
    /// The details, for people.
    public var detail: String

    public enum CodingKeys: String, CodingKey {
        case seq
        case fleetRun = "fleet_run"
        case at, member, kind, detail
    }
}

/// The fleet record: `STATE/fleets/<fleet>/fleet.sqlite`, with the fleet lock.
///
/// SQLite in WAL mode with synchronous=FULL, like the journal: a member recorded `starting` is on disk
/// before its run begins. The record ties the members' runs together; what each member did is in its own
/// journal, which stays the truth (a fleet process killed between a member's end and its record is found
/// out by reading that journal).
public final class FleetStore: Sendable {
    let db: DatabaseQueue
    /// The fleet's paths.
    public let paths: FleetPaths
    /// How long a holder on another host is presumed alive without renewing.
    public static let leaseSeconds = 30.0

    /// Opens (creating the directories and the file when `create`) the record of `paths`.
    ///
    /// - Throws: ``FailoverError`` (invalid input) when the record does not exist and `create` is false.
    public init(paths: FleetPaths, create: Bool) throws {
        self.paths = paths
        if !create && !Files.exists(paths.record) {
            throw FailoverError.invalid(
                "no fleet \(PlanValues.quoted(paths.fleet)) in state directory \(paths.stateDirectory) (\(paths.record) does not exist): nothing has run there; check the fleet's name and --state"
            )
        }
        try StateDirectory.prepare(paths.stateDirectory)
        try StateDirectory.prepare(FleetPaths.root(paths.stateDirectory))
        try StateDirectory.prepare(paths.directory)
        try StateDirectory.prepare(paths.directory + "/members")
        db = try Journal.openDurable(directory: paths.directory, file: "fleet.sqlite", label: "failoverd.fleet")
        try Journal.migrate(db, with: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("fleet-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE fleet_runs (
                        id TEXT PRIMARY KEY,
                        fleet_name TEXT NOT NULL,
                        fleet_file TEXT NOT NULL,
                        fleet_json TEXT NOT NULL,
                        fleet_sha256 TEXT NOT NULL,
                        concurrency INTEGER NOT NULL,
                        brake INTEGER NOT NULL,
                        outcome TEXT NOT NULL CHECK (outcome IN ('running','succeeded','failed','refused','abandoned')),
                        error TEXT,
                        actor TEXT NOT NULL,
                        is_drill INTEGER NOT NULL DEFAULT 0,
                        simulate INTEGER NOT NULL DEFAULT 0,
                        started_at TEXT NOT NULL,
                        ended_at TEXT
                    );
                    CREATE TABLE fleet_members (
                        fleet_run TEXT NOT NULL REFERENCES fleet_runs(id),
                        member TEXT NOT NULL,
                        position INTEGER NOT NULL,
                        plan_name TEXT NOT NULL,
                        state_directory TEXT NOT NULL,
                        status TEXT NOT NULL CHECK (status IN ('waiting','starting','running','succeeded','failed','refused','skipped','abandoned')),
                        run_id TEXT,
                        previous_run_id TEXT,
                        attempts INTEGER NOT NULL DEFAULT 0,
                        started_at TEXT,
                        ended_at TEXT,
                        error TEXT,
                        PRIMARY KEY (fleet_run, member)
                    );
                    CREATE TABLE fleet_events (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        fleet_run TEXT NOT NULL,
                        at TEXT NOT NULL,
                        member TEXT,
                        kind TEXT NOT NULL,
                        detail TEXT NOT NULL
                    );
                    CREATE TABLE fleet_lock (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        fleet_run TEXT,
                        pid INTEGER,
                        host TEXT,
                        pid_start_time REAL,
                        acquired_at TEXT,
                        renewed_at TEXT,
                        lease_seconds REAL,
                        epoch INTEGER NOT NULL DEFAULT 0
                    );
                    INSERT INTO fleet_lock (id, epoch) VALUES (1, 0);
                    """)
        }
        return m
    }

    // MARK: Lock

    /// The fleet lock's holder.
    public struct LockHolder: Sendable, Codable, Equatable {
        /// The fleet run holding it.
        public var fleetRun: String?
        /// Its process.
        public var pid: Int32
        /// Its host.
        public var host: String
        /// Since when.
        public var acquiredAt: String?
        /// Incremented at every takeover from a dead holder.
        public var epoch: Int64
        /// False when the holder is gone: the next fleet run or resume takes the lock over.
        public var alive: Bool
    }

    /// Takes the fleet lock for `fleetRun`, or throws exit 4 naming the live holder.
    public func acquireLock(fleetRun: String) throws -> Int64 {
        try db.write { db in
            let row = try Row.fetchOne(db, sql: "SELECT * FROM fleet_lock WHERE id = 1")!
            var epoch: Int64 = row["epoch"]
            if let pid: Int32 = row["pid"], let host: String = row["host"] {
                if RunLock.isAlive(
                    pid: pid, host: host, startTime: row["pid_start_time"], renewedAt: row["renewed_at"],
                    lease: row["lease_seconds"] ?? Self.leaseSeconds)
                {
                    let run: String = row["fleet_run"] ?? "?"
                    let since: String = row["acquired_at"] ?? "?"
                    throw FailoverError(
                        .lockHeld,
                        "fleet \(PlanValues.quoted(paths.fleet)) is already running: fleet run \(run), pid \(pid) on \(host), since \(since). Watch it with: failoverd fleet status \(paths.fleet) --state \(paths.stateDirectory)"
                    )
                }
                epoch += 1
            }
            let now = Journal.now()
            try db.execute(
                sql: """
                    UPDATE fleet_lock SET fleet_run = ?, pid = ?, host = ?, pid_start_time = ?, acquired_at = ?, renewed_at = ?,
                        lease_seconds = ?, epoch = ?
                    WHERE id = 1
                    """,
                arguments: [fleetRun, getpid(), RunLock.host, ProcessIdentity.current?.startTime, now, now, Self.leaseSeconds, epoch])
            return epoch
        }
    }

    /// Hands the lock to another fleet run id (a resume that found its run while holding it).
    func reassignLock(to fleetRun: String) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE fleet_lock SET fleet_run = ? WHERE id = 1 AND pid = ?", arguments: [fleetRun, getpid()])
        }
    }

    /// Renews the lease of the lock this process holds.
    func renewLock() throws {
        try db.write { db in
            try db.execute(sql: "UPDATE fleet_lock SET renewed_at = ? WHERE id = 1 AND pid = ?", arguments: [Journal.now(), getpid()])
        }
    }

    /// Releases the lock if this process holds it.
    public func releaseLock() throws {
        try db.write { db in
            try db.execute(
                sql: """
                    UPDATE fleet_lock SET fleet_run = NULL, pid = NULL, host = NULL, pid_start_time = NULL, acquired_at = NULL,
                        renewed_at = NULL
                    WHERE id = 1 AND pid = ?
                    """, arguments: [getpid()])
        }
    }

    /// The lock's holder, alive or not; nil when no one holds it.
    public func lockHolder() throws -> LockHolder? {
        try db.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT * FROM fleet_lock WHERE id = 1")!
            guard let pid: Int32 = row["pid"], let host: String = row["host"] else { return nil }
            let alive = RunLock.isAlive(
                pid: pid, host: host, startTime: row["pid_start_time"], renewedAt: row["renewed_at"],
                lease: row["lease_seconds"] ?? Self.leaseSeconds)
            return LockHolder(
                fleetRun: row["fleet_run"], pid: pid, host: host, acquiredAt: row["acquired_at"], epoch: row["epoch"], alive: alive)
        }
    }

    // MARK: Runs and members

    /// Records a new fleet run and its members (all `waiting`), with a `fleet-start` event.
    func createRun(_ run: FleetRunRecord, members: [FleetMemberRecord]) throws {
        try db.write { db in
            try run.insert(db)
            for m in members { try m.insert(db) }
            try Self.event(db, run.id, nil, "fleet-start", "concurrency \(run.concurrency), brake \(run.brake), \(members.count) members")
        }
    }

    /// Replaces a member's row.
    func update(_ member: FleetMemberRecord) throws {
        try db.write { db in try member.update(db) }
    }

    /// Replaces a member's row and records an event about it in one transaction.
    func update(_ member: FleetMemberRecord, event kind: String, _ detail: String) throws {
        try db.write { db in
            try member.update(db)
            try Self.event(db, member.fleetRun, member.member, kind, detail)
        }
    }

    /// Records an event.
    func event(_ fleetRun: String, member: String? = nil, _ kind: String, _ detail: String) throws {
        try db.write { db in try Self.event(db, fleetRun, member, kind, detail) }
    }

    static func event(_ db: Database, _ fleetRun: String, _ member: String?, _ kind: String, _ detail: String) throws {
        try db.execute(
            sql: "INSERT INTO fleet_events (fleet_run, at, member, kind, detail) VALUES (?, ?, ?, ?, ?)",
            arguments: [fleetRun, Journal.now(), member, kind, detail])
    }

    /// Sets a fleet run's outcome (and its end, unless it is running again).
    func finishRun(_ id: String, outcome: RunState, error: String?) throws {
        try db.write { db in
            try db.execute(
                sql: "UPDATE fleet_runs SET outcome = ?, error = ?, ended_at = ? WHERE id = ?",
                arguments: [outcome.rawValue, error, outcome == .running ? nil : Journal.now(), id])
            try Self.event(
                db, id, nil, outcome == .running ? "fleet-resume" : "fleet-end",
                outcome == .running ? "resumed" : "\(outcome)" + (error.map { ": \($0)" } ?? ""))
        }
    }

    /// The latest fleet run, if any.
    public func latestRun() throws -> FleetRunRecord? {
        try db.read { db in try FleetRunRecord.fetchOne(db, sql: "SELECT * FROM fleet_runs ORDER BY started_at DESC, rowid DESC LIMIT 1") }
    }

    /// The fleet run `id`.
    public func run(_ id: String) throws -> FleetRunRecord? {
        try db.read { db in try FleetRunRecord.fetchOne(db, key: id) }
    }

    /// The members of a fleet run, in the fleet file's order.
    public func members(of fleetRun: String) throws -> [FleetMemberRecord] {
        try db.read { db in
            try FleetMemberRecord.fetchAll(
                db, sql: "SELECT * FROM fleet_members WHERE fleet_run = ? ORDER BY position", arguments: [fleetRun])
        }
    }

    /// The events of a fleet run, in order.
    public func events(of fleetRun: String) throws -> [FleetEventRecord] {
        try db.read { db in
            try FleetEventRecord.fetchAll(db, sql: "SELECT * FROM fleet_events WHERE fleet_run = ? ORDER BY seq", arguments: [fleetRun])
        }
    }

    /// A new fleet run id: `f-YYYYMMDD-HHMMSS-xxxx`.
    static func makeRunID() -> String { "f-" + Executor.makeRunID().dropFirst(2) }
}
