import Foundation
import GRDB

/// The coordinator a journal writes through, if any (set for the length of a coordinated run).
final class ReplicaSlot: @unchecked Sendable {
    private let mutex = NSLock()
    private var current: Coordinator?
    private var runs: Set<String> = []

    /// The attached coordinator and the runs it mirrors.
    var attached: (Coordinator, Set<String>)? { mutex.withLock { current.map { ($0, runs) } } }

    func attach(_ c: Coordinator) { mutex.withLock { current = c } }
    func add(run: String) { mutex.withLock { _ = runs.insert(run) } }
    func detach() {
        mutex.withLock {
            current = nil
            runs = []
        }
    }
}

/// A coordinated run's record waiting to ride with the journal's next write (``Journal/recordStep(run:step:status:epoch:evidence:error:riding:)``).
final class RidingRecords: @unchecked Sendable {
    private let mutex = NSLock()
    private var held: [(Database) throws -> Void] = []

    /// Holds `record` for the next write.
    func hold(_ record: @escaping (Database) throws -> Void) { mutex.withLock { held.append(record) } }

    /// Takes what is held, in order.
    func take() -> [(Database) throws -> Void] {
        mutex.withLock {
            defer { held = [] }
            return held
        }
    }

    /// Whether a record is held.
    var isEmpty: Bool { mutex.withLock { held.isEmpty } }
}

/// Which rows of `runs` and `steps` changed since the coordinator last mirrored them, from SQLite's own change
/// notifications (GRDB's transaction observer): a record then costs what it changed, not what the run holds.
/// A deletion, a failed mirror, and every attach ask for the full comparison instead.
final class MirrorTracker: TransactionObserver, @unchecked Sendable {
    private let mutex = NSLock()
    private var enabled = false
    private var full = true
    private var rows: [String: Set<Int64>] = [:]

    func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool {
        eventKind.tableName == "runs" || eventKind.tableName == "steps"
    }

    func databaseDidChange(with event: DatabaseEvent) {
        let (table, rowID, deleted) = (event.tableName, event.rowID, event.kind == .delete)
        mutex.withLock {
            guard enabled else { return }
            if deleted { full = true } else { rows[table, default: []].insert(rowID) }
        }
    }

    func databaseDidCommit(_ db: Database) {}
    func databaseDidRollback(_ db: Database) {}

    /// Starts tracking (a coordinator attached, or a run added): the next mirror compares everything.
    func start() {
        mutex.withLock {
            enabled = true
            full = true
            rows = [:]
        }
    }

    /// Stops tracking (the journal is local again).
    func stop() {
        mutex.withLock {
            enabled = false
            rows = [:]
        }
    }

    /// The next mirror compares everything (the last one failed: what it took may not be in etcd).
    func invalidate() { mutex.withLock { full = true } }

    /// What changed since the last call, by table and rowid; nil when only a full comparison will do.
    func take() -> [String: Set<Int64>]? {
        mutex.withLock {
            defer {
                rows = [:]
                full = false
            }
            return full ? nil : rows
        }
    }
}

/// The journal of a coordinated run: every write committed in SQLite only after etcd acknowledged it in a
/// transaction fenced by the run lock's token; a takeover copies the cluster's records from etcd first.
///
/// etcd keys (under `<prefix>/clusters/<system identifier>/j/`): `runs/RUN`, `steps/RUN/NNNN`,
/// `events/RUN/TOKEN-ID`, `audit/SEQ`, `roles/SITE`, `fenced/INSTANCE`; each value a table row as JSON. Table
/// `coordination_mirror` remembers, key by key, what this journal holds of them. Signed checkpoints stay in
/// the journal that signed them (each names its journal): a coordinator's checkpoint covers the whole chain
/// up to its position, its predecessors' events included.
extension Journal {
    /// A write transaction; with a coordinator attached, what it changed is written to etcd (fenced) before
    /// it commits, and nothing is committed when etcd refuses or cannot be reached.
    ///
    /// Records held to ride (a coordinated step's `done`) are written first, in the same transaction: they
    /// reach etcd with this write, or not at all (then their steps are in doubt, as after a crash).
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        let riding = riders.take()
        return try db.write { db in
            for record in riding { try record(db) }
            let value = try body(db)
            if let (coordinator, runs) = replica.attached {
                do { try Self.mirror(db, via: coordinator, runs: runs, changed: mirrorTracker.take()) } catch {
                    mirrorTracker.invalidate()
                    throw error
                }
            }
            return value
        }
    }

    /// Attaches `coordinator` for `run`: from now on every write goes through etcd, and every audit event
    /// names the coordinator.
    func attach(_ coordinator: Coordinator, run: String) throws {
        replica.attach(coordinator)
        replica.add(run: run)
        mirrorTracker.start()
        try db.write { db in
            try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS coordinator (stamp TEXT NOT NULL)")
            try db.execute(sql: "DELETE FROM temp.coordinator")
            try db.execute(sql: "INSERT INTO temp.coordinator (stamp) VALUES (?)", arguments: [coordinator.stamp])
        }
    }

    /// Mirrors `run` too (a resume attached for "resume" finds its run after the copy from etcd).
    func mirror(run: String) {
        replica.add(run: run)
        mirrorTracker.invalidate()
    }

    /// Detaches the coordinator: the journal is local again.
    func detachCoordinator() {
        // A record still riding goes through etcd now, or is dropped (its step is then in doubt).
        if !riders.isEmpty && replica.attached != nil { try? write { _ in } }
        _ = riders.take()
        replica.detach()
        mirrorTracker.stop()
        try? db.write { db in try db.execute(sql: "DROP TABLE IF EXISTS temp.coordinator") }
    }

    /// A row as canonical JSON (sorted keys; blobs as base64).
    static func json(_ row: Row, dropping: Set<String> = []) -> String {
        var object: [String: Any] = [:]
        for (column, value) in row where !dropping.contains(column) {
            switch value.storage {
            case .null: object[column] = NSNull()
            case .int64(let i): object[column] = i
            case .double(let d): object[column] = d
            case .string(let s): object[column] = s
            case .blob(let b): object[column] = b.base64EncodedString()
            }
        }
        return String(decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), as: UTF8.self)
    }

    /// Writes to etcd (fenced) what this transaction's journal holds and etcd does not, then notes it.
    ///
    /// `changed` (rowids of `runs` and `steps` changed since the last mirror, from ``MirrorTracker``) limits
    /// the comparison of those two tables to those rows; nil compares every row of the mirrored runs. Roles,
    /// fences, events and audit events are compared in full (a few rows, or past a high-water mark).
    static func mirror(_ db: Database, via coordinator: Coordinator, runs: Set<String>, changed: [String: Set<Int64>]? = nil) throws {
        try coordinator.checkLive()
        var candidates: [(String, String)] = []
        if let changed {
            for rowID in (changed["runs"] ?? []).sorted() {
                if let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE rowid = ?", arguments: [rowID]), runs.contains(row["id"]) {
                    candidates.append(("j/runs/\(row["id"] as String)", json(row)))
                }
            }
            for rowID in (changed["steps"] ?? []).sorted() {
                if let row = try Row.fetchOne(db, sql: "SELECT * FROM steps WHERE rowid = ?", arguments: [rowID]),
                    runs.contains(row["run_id"])
                {
                    candidates.append(("j/steps/\(row["run_id"] as String)/\(String(format: "%04d", row["number"] as Int))", json(row)))
                }
            }
        } else {
            for run in runs.sorted() {
                if let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [run]) {
                    candidates.append(("j/runs/\(run)", json(row)))
                }
                for row in try Row.fetchAll(db, sql: "SELECT * FROM steps WHERE run_id = ? ORDER BY number", arguments: [run]) {
                    candidates.append(("j/steps/\(run)/\(String(format: "%04d", row["number"] as Int))", json(row)))
                }
            }
        }
        // What this journal notes it wrote: the candidates' keys, roles, fences and the high-water marks.
        var known: [String: String] = [:]
        let wanted = candidates.map(\.0) + ["hwm/events", "hwm/audit"]
        for chunk in stride(from: 0, to: wanted.count, by: 500).map({ Array(wanted[$0..<min(wanted.count, $0 + 500)]) }) {
            let marks = chunk.map { _ in "?" }.joined(separator: ", ")
            for row in try Row.fetchAll(
                db, sql: "SELECT key, value FROM coordination_mirror WHERE key IN (\(marks))", arguments: StatementArguments(chunk))
            {
                known[row["key"]] = row["value"]
            }
        }
        for row in try Row.fetchAll(
            db,
            sql:
                "SELECT key, value FROM coordination_mirror WHERE (key >= 'j/fenced/' AND key < 'j/fenced0') OR (key >= 'j/roles/' AND key < 'j/roles0')"
        ) {
            known[row["key"]] = row["value"]
        }
        var puts: [(String, String)] = []
        var deletes: [String] = []
        func offer(_ key: String, _ value: String) { if known[key] != value { puts.append((key, value)) } }
        for (key, value) in candidates { offer(key, value) }
        var present = Set<String>()
        for row in try Row.fetchAll(db, sql: "SELECT * FROM site_roles ORDER BY site") {
            let key = "j/roles/\(row["site"] as String)"
            present.insert(key)
            offer(key, json(row))
        }
        for row in try Row.fetchAll(db, sql: "SELECT * FROM fenced_instances ORDER BY instance") {
            let key = "j/fenced/\(row["instance"] as String)"
            present.insert(key)
            offer(key, json(row))
        }
        deletes = known.keys.filter { ($0.hasPrefix("j/fenced/") || $0.hasPrefix("j/roles/")) && !present.contains($0) }.sorted()
        var marks: [String: Int64] = [:]
        let eventMark = Int64(known["hwm/events"] ?? "0") ?? 0
        for row in try Row.fetchAll(db, sql: "SELECT * FROM step_events WHERE id > ? ORDER BY id", arguments: [eventMark]) {
            let id: Int64 = row["id"]
            marks["hwm/events"] = id
            let run: String = row["run_id"]
            guard runs.contains(run) else { continue }
            puts.append(
                (
                    "j/events/\(run)/\(String(format: "%012lld", coordinator.token))-\(String(format: "%012lld", id))",
                    json(row, dropping: ["id"])
                ))
        }
        let auditMark = Int64(known["hwm/audit"] ?? "0") ?? 0
        for row in try Row.fetchAll(db, sql: "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq", arguments: [auditMark]) {
            let seq: Int64 = row["seq"]
            marks["hwm/audit"] = seq
            puts.append(("j/audit/\(String(format: "%012lld", seq))", json(row)))
        }
        if !puts.isEmpty || !deletes.isEmpty { try coordinator.fencedWrite(puts: puts, deletes: deletes) }
        for (key, value) in puts where !key.hasPrefix("j/events/") && !key.hasPrefix("j/audit/") {
            try db.execute(sql: "INSERT OR REPLACE INTO coordination_mirror (key, value) VALUES (?, ?)", arguments: [key, value])
        }
        for key in deletes { try db.execute(sql: "DELETE FROM coordination_mirror WHERE key = ?", arguments: [key]) }
        for (key, mark) in marks {
            try db.execute(sql: "INSERT OR REPLACE INTO coordination_mirror (key, value) VALUES (?, ?)", arguments: [key, String(mark)])
        }
    }

    /// Copies into this journal what etcd holds of the cluster and this journal lacks (a takeover from
    /// another machine, or a return after one), then sets the fencing epoch to the coordinator's token.
    ///
    /// The audit chain must agree: an event this journal holds at a position etcd holds too must be the same
    /// event, else the state directory belongs to another history and is refused (use a fresh one).
    func importCoordinated(from coordinator: Coordinator) async throws {
        let kvs: [Coordinator.KeyValue]
        do { kvs = try await coordinator.range("j/") } catch {
            throw coordinator.unreachable(error, doing: "reading the cluster's journal")
        }
        try applyImport(kvs, from: coordinator)
    }

    /// The copy of ``importCoordinated(from:)``, in one transaction.
    private func applyImport(_ kvs: [Coordinator.KeyValue], from coordinator: Coordinator) throws {
        let token = coordinator.token
        try db.write { db in
            var known: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, value FROM coordination_mirror") { known[row["key"]] = row["value"] }
            let order = ["j/runs/", "j/steps/", "j/roles/", "j/fenced/", "j/events/", "j/audit/"]
            let sorted = kvs.sorted { a, b in
                let ia = order.firstIndex { a.key.hasPrefix($0) } ?? order.count
                let ib = order.firstIndex { b.key.hasPrefix($0) } ?? order.count
                return ia != ib ? ia < ib : a.key < b.key
            }
            var etcdHead: Int64 = 0
            for kv in sorted {
                guard known[kv.key] != kv.value else { continue }
                guard let object = (try? JSONSerialization.jsonObject(with: Data(kv.value.utf8))) as? [String: Any] else {
                    throw FailoverError.refused(
                        "etcd key \(coordinator.base)/\(kv.key) holds no journal row; the coordination store is damaged")
                }
                func insert(_ table: String, _ verb: String = "INSERT OR REPLACE") throws {
                    let columns = object.keys.sorted()
                    let values: [(any DatabaseValueConvertible)?] = columns.map { Self.databaseValue(object[$0]) }
                    try db.execute(
                        sql:
                            "\(verb) INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))",
                        arguments: StatementArguments(values))
                }
                func underEpoch(_ body: () throws -> Void) throws {
                    if let epoch = object["epoch"] as? NSNumber {
                        try db.execute(sql: "UPDATE run_lock SET epoch = ? WHERE id = 1", arguments: [epoch.int64Value])
                    }
                    try body()
                }
                switch kv.key {
                case let k where k.hasPrefix("j/runs/"): try insert("runs")
                case let k where k.hasPrefix("j/steps/"): try insert("steps")
                case let k where k.hasPrefix("j/roles/"): try underEpoch { try insert("site_roles") }
                case let k where k.hasPrefix("j/fenced/"): try underEpoch { try insert("fenced_instances") }
                case let k where k.hasPrefix("j/events/"): try underEpoch { try insert("step_events", "INSERT") }
                case let k where k.hasPrefix("j/audit/"):
                    let seq = (object["seq"] as? NSNumber)?.int64Value ?? 0
                    etcdHead = max(etcdHead, seq)
                    let hash = object["hash"] as? String ?? ""
                    if let local = try String.fetchOne(db, sql: "SELECT hash FROM audit_events WHERE seq = ?", arguments: [seq]) {
                        guard local == hash else {
                            throw FailoverError.invalid(
                                "this state directory's audit chain differs from PostgreSQL cluster \(coordinator.systemIdentifier)'s chain in etcd at event \(seq): it holds another history. Use a fresh state directory (--state) for this cluster's coordinated runs; nothing was changed."
                            )
                        }
                    } else {
                        let head = try Row.fetchOne(db, sql: "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                        guard (head?["seq"] as Int64? ?? 0) + 1 == seq,
                            (head?["hash"] as String? ?? AuditLog.genesis) == object["prev_hash"] as? String
                        else {
                            throw FailoverError.invalid(
                                "this state directory's audit chain does not continue into PostgreSQL cluster \(coordinator.systemIdentifier)'s chain in etcd at event \(seq). Use a fresh state directory (--state) for this cluster's coordinated runs; nothing was changed."
                            )
                        }
                        try insert("audit_events", "INSERT")
                    }
                default: continue
                }
                if !kv.key.hasPrefix("j/events/") && !kv.key.hasPrefix("j/audit/") {
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO coordination_mirror (key, value) VALUES (?, ?)", arguments: [kv.key, kv.value])
                }
            }
            // What etcd no longer holds (an instance no longer fenced) goes here too.
            let present = Set(kvs.map(\.key))
            for key in known.keys where key.hasPrefix("j/fenced/") && !present.contains(key) {
                try db.execute(
                    sql: "DELETE FROM fenced_instances WHERE instance = ?", arguments: [String(key.dropFirst("j/fenced/".count))])
                try db.execute(sql: "DELETE FROM coordination_mirror WHERE key = ?", arguments: [key])
            }
            // Local events past etcd's head are written to etcd by the next record (the first coordinated run
            // of a journal with history brings that history into the cluster's chain).
            let localHead = try Int64.fetchOne(db, sql: "SELECT max(seq) FROM audit_events") ?? 0
            let marks = [
                "hwm/audit": min(etcdHead, localHead),
                "hwm/events": try Int64.fetchOne(db, sql: "SELECT max(id) FROM step_events") ?? 0,
            ]
            for (key, mark) in marks {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO coordination_mirror (key, value) VALUES (?, ?)", arguments: [key, String(mark)])
            }
            try db.execute(sql: "UPDATE run_lock SET epoch = ? WHERE id = 1", arguments: [token])
        }
    }

    static func databaseValue(_ value: Any?) -> (any DatabaseValueConvertible)? {
        switch value {
        case let s as String: return s
        // Every mirrored column is text or an integer.
        case let n as NSNumber: return n.int64Value
        default: return nil
        }
    }
}

extension Journal {
    /// Takes `coordinator`'s cluster records into this journal and writes through it from now on, for `run`:
    /// what a coordinated run does before its first record (for the benchmark that prices it).
    @_spi(Benchmarks) public func coordinate(through coordinator: Coordinator, run: String) async throws {
        try await importCoordinated(from: coordinator)
        try attach(coordinator, run: run)
    }
}
