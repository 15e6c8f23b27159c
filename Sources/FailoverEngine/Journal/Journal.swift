import Foundation
import GRDB
import Logging

/// The SQLite journal of a state directory: runs, steps, site roles, the run lock and the audit log.
///
/// WAL mode with synchronous=FULL, IMMEDIATE write transactions and a busy timeout: a step journaled
/// `started` is on disk before its side effect begins, whatever happens to the process afterwards.
public final class Journal: Sendable {
    /// The database, one connection per process. Not part of the library's interface: everything else
    /// reads and writes through the journal's methods (the benchmarks open the file with their own
    /// connection, as an operator's sqlite3 would).
    let db: DatabaseQueue
    /// The journal file.
    public let path: String
    /// Signs audit checkpoints when the operator configured a key (`--audit-key`, `$FAILOVERD_AUDIT_KEY`).
    public let auditSigner: AuditSigner?
    /// The coordinator a coordinated run attached: while one is, every write goes to etcd first.
    let replica = ReplicaSlot()
    /// Which rows changed since the coordinator last mirrored them.
    let mirrorTracker = MirrorTracker()
    /// A coordinated step's `done`, held to ride with the next record.
    let riders = RidingRecords()

    /// Opens (creating if needed) `DIR/journal.sqlite` and migrates it.
    public init(stateDirectory: String, auditSigner: AuditSigner? = nil) throws {
        self.auditSigner = auditSigner
        try StateDirectory.prepare(stateDirectory)
        path = (stateDirectory as NSString).appendingPathComponent("journal.sqlite")
        db = try Self.openDurable(directory: stateDirectory, file: "journal.sqlite", label: "failoverd.journal")
        try Self.migrate(db, with: JournalSchema.migrator)
        db.add(transactionObserver: mirrorTracker, extent: .observerLifetime)
    }

    /// Runs `migrator` on a database other processes may be opening at the same moment (`failoverd run` and
    /// `status`, two coordinators, a test beside the CLI). GRDB reads which migrations are applied before it
    /// runs any, each in its own transaction: the second process then runs a migration the first has just
    /// committed and fails on it ("duplicate column name"). Its transaction rolled back; reading the applied
    /// migrations again settles it. A migration that fails for any other reason fails again, and that error
    /// is thrown.
    static func migrate(_ db: DatabaseQueue, with migrator: DatabaseMigrator) throws {
        var attempt = 1
        while true {
            do {
                try migrator.migrate(db)
                return
            } catch let error as DatabaseError where attempt < 5 {
                let progressed = try db.read { try migrator.appliedIdentifiers($0) }
                Logger(label: "failoverd.journal").debug(
                    "migration raced another process; reading the applied migrations again",
                    metadata: ["error": "\(error)", "applied": "\(progressed.sorted())"])
                attempt += 1
            }
        }
    }

    /// Opens `directory`/`file` (created 0600, like its -wal and -shm files) as a durable SQLite database: WAL
    /// mode, synchronous=FULL, IMMEDIATE write transactions, a 15 s busy timeout. The journal's form, shared by
    /// the fleet record.
    static func openDurable(directory: String, file: String, label: String) throws -> DatabaseQueue {
        // Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the database's own mode.
        for name in [file, file + "-wal", file + "-shm"] where name == file || Files.exists(directory + "/" + name) {
            try StateDirectory.preparePrivateFile(name, in: directory)
        }
        var config = Configuration()
        config.journalMode = .wal
        config.busyMode = .timeout(15)
        // GRDB 7 opens every write transaction with BEGIN IMMEDIATE, so two processes never deadlock on upgrade.
        config.label = label
        // Switching a new database to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once,
        // without its busy handler, while another process opens the same new file: try again until the
        // busy timeout has passed.
        let deadline = ContinuousClock.now + .seconds(15)
        var db: DatabaseQueue
        while true {
            do {
                db = try DatabaseQueue(path: (directory as NSString).appendingPathComponent(file), configuration: config)
                break
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && ContinuousClock.now < deadline {
                usleep(10_000)
            }
        }
        // GRDB's WAL setup leaves synchronous=NORMAL; a database that must survive power loss needs FULL.
        try db.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        return db
    }

    /// A migrated journal in memory, for read-only evaluations (`failoverd check` runs the gates on it)
    /// that must leave no file behind.
    public init(inMemory: Void) throws {
        path = ":memory:"
        auditSigner = nil
        db = try DatabaseQueue()
        try JournalSchema.migrator.migrate(db)
        db.add(transactionObserver: mirrorTracker, extent: .observerLifetime)
    }

    /// Opens the journal of a state directory that must already hold one: a missing journal is an error
    /// (exit 2) and nothing is created.
    public convenience init(existingStateDirectory stateDirectory: String) throws {
        let file = (stateDirectory as NSString).appendingPathComponent("journal.sqlite")
        guard FileManager.default.fileExists(atPath: file) else {
            throw FailoverError.invalid(
                "no journal in state directory \(stateDirectory) (\(file) does not exist): check --state or $FAILOVERD_STATE")
        }
        try self.init(stateDirectory: stateDirectory)
    }

    /// The journal's random id, made when it was created (or upgraded): signed checkpoints name it.
    public static func id(_ db: Database) throws -> String? {
        guard try db.tableExists("journal_info") else { return nil }
        return try String.fetchOne(db, sql: "SELECT value FROM journal_info WHERE key = 'id'")
    }

    /// The value of PRAGMA synchronous (2 = FULL), for tests and `status`.
    public func synchronousMode() throws -> Int {
        try db.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }

    /// The current time as ISO 8601 with milliseconds, as every table stores it.
    public static func now() -> String { timestamp(Date()) }

    /// The one ISO 8601 form every table stores: milliseconds, UTC.
    static let timestampStyle = Date.ISO8601FormatStyle.iso8601.year().month().day().time(includingFractionalSeconds: true)
        .timeZone(separator: .omitted)

    /// Formats a date as ISO 8601 with milliseconds in UTC.
    public static func timestamp(_ date: Date) -> String { date.formatted(timestampStyle) }

    /// Reads a time the journal stored; nil when the text is not one.
    public static func date(_ timestamp: String) -> Date? { try? Date(timestamp, strategy: timestampStyle) }
}

extension Journal {
    /// Sets this connection's `PRAGMA synchronous` (FULL by default): for the benchmark that prices the
    /// journal's durability against `OFF`. Never for a journal a run relies on.
    @_spi(Benchmarks) public func setSynchronous(_ mode: String) throws {
        guard ["FULL", "NORMAL", "OFF"].contains(mode) else { throw FailoverError.invalid("synchronous must be FULL, NORMAL or OFF") }
        try db.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = \(mode)") }
    }
}
