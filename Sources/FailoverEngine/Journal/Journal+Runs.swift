import Foundation
import GRDB

/// How a run stands; stored as its raw text in `runs.outcome`.
public enum RunState: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// Started, not ended (or killed while running).
    case running
    /// Every step done or satisfied.
    case succeeded
    /// A step failed after one acted on a server: resumable.
    case failed
    /// Refused before any step acted on a server: nothing changed.
    case refused
    /// Given up by `failoverd abandon`.
    case abandoned

    public var description: String { rawValue }

    /// The state journaled as `text` (for run `run`, when known); throws naming the text and the states this
    /// failoverd knows when it is none of them, never taking it for another.
    public init(journaled text: String, run: String? = nil) throws {
        guard let state = RunState(rawValue: text) else {
            throw FailoverError.invalid(
                "\(run.map { "run \($0)" } ?? "a run") in the journal has outcome \"\(text)\", which this failoverd does not know (it knows \(RunState.allCases.map(\.rawValue).joined(separator: ", "))): the journal was written by another version of failoverd or changed outside it. Read it with the failoverd that wrote it."
            )
        }
        self = state
    }

    /// Decodes the journal's text; an outcome this failoverd does not know is an error that says so.
    public init(from decoder: any Decoder) throws {
        self = try RunState(journaled: try decoder.singleValueContainer().decode(String.self))
    }
}

/// A run as the journal records it (table `runs`).
public struct RunRecord: Sendable, Codable, Equatable, FetchableRecord, PersistableRecord {
    /// The run id, e.g. `r-20261127-041502-7f3a`.
    public var id: String
    /// The plan's name.
    public var planName: String
    /// The plan as canonical JSON (plans hold no secrets).
    public var planJSON: String
    /// SHA-256 of planJSON.
    public var planSHA256: String
    /// `local` or `simulated`.
    public var driver: String
    /// True when a drill started it.
    public var isDrill: Bool
    /// True when --allow-data-loss was given.
    public var allowDataLoss: Bool
    /// user@host of the process that started it.
    public var actor: String
    /// How many steps it has.
    public var stepCount: Int
    /// How it stands.
    public var outcome: RunState
    /// The error that ended it, if any.
    public var error: String?
    /// When it started.
    public var startedAt: String
    /// When it ended.
    public var endedAt: String?

    /// The table.
    public static let databaseTableName = "runs"

    /// The table's columns.
    public enum Columns {
        static let id = Column(CodingKeys.id)
        static let outcome = Column(CodingKeys.outcome)
        static let startedAt = Column(CodingKeys.startedAt)
    }

    public enum CodingKeys: String, CodingKey {
        case id
        case planName = "plan_name"
        case planJSON = "plan_json"
        case planSHA256 = "plan_sha256"
        case driver
        case isDrill = "is_drill"
        case allowDataLoss = "allow_data_loss"
        case actor
        case stepCount = "step_count"
        case outcome, error
        case startedAt = "started_at"
        case endedAt = "ended_at"
    }

    /// Creates a run record.
    public init(
        id: String, planName: String, planJSON: String, planSHA256: String, driver: String, isDrill: Bool, allowDataLoss: Bool,
        actor: String, stepCount: Int, outcome: RunState, error: String?, startedAt: String, endedAt: String?
    ) {
        self.id = id
        self.planName = planName
        self.planJSON = planJSON
        self.planSHA256 = planSHA256
        self.driver = driver
        self.isDrill = isDrill
        self.allowDataLoss = allowDataLoss
        self.actor = actor
        self.stepCount = stepCount
        self.outcome = outcome
        self.error = error
        self.startedAt = startedAt
        self.endedAt = endedAt
    }

    /// A run that is neither succeeded nor abandoned nor refused before any change: it can be resumed.
    public var isUnfinished: Bool { outcome == .running || outcome == .failed }

    /// The plan, decoded.
    public func plan() throws -> Plan { try Plan.decode(Data(planJSON.utf8)) }
}

/// A row of table `steps`, as stored: the planned step as JSON, its status and its evidence as JSON.
struct StepRow: Codable, FetchableRecord, PersistableRecord {
    var runID: String
    var number: Int
    var transition: Int
    var action: String
    var kind: String
    var site: String
    var instance: String?
    var destructive: Bool
    var summary: String
    var stepJSON: String
    var status: StepStatus
    var attempts: Int
    var startedAt: String?
    var endedAt: String?
    var evidence: String?
    var error: String?
    var epoch: Int64?

    static let databaseTableName = "steps"

    enum Columns {
        static let runID = Column(CodingKeys.runID)
        static let number = Column(CodingKeys.number)
        static let status = Column(CodingKeys.status)
    }

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case number, transition, action, kind, site, instance, destructive, summary
        case stepJSON = "step_json"
        case status, attempts
        case startedAt = "started_at"
        case endedAt = "ended_at"
        case evidence, error, epoch
    }

    /// A pending row for a planned step.
    init(run: String, step: Step) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        runID = run
        number = step.number
        transition = step.transition
        action = step.action.rawValue
        kind = step.kind.rawValue
        site = step.site
        instance = step.instance
        destructive = step.destructive
        summary = step.summary
        stepJSON = String(decoding: try encoder.encode(step), as: UTF8.self)
        status = .pending
        attempts = 0
    }

    /// The journal's view of the row; throws when its step JSON is not a step.
    func record() throws -> StepRecord {
        let step = try JSONDecoder().decode(Step.self, from: Data(stepJSON.utf8))
        var fields: [String: String] = [:]
        if let evidence {
            do {
                fields = try JSONDecoder().decode([String: String].self, from: Data(evidence.utf8))
            } catch {
                throw FailoverError.failed(
                    "run \(runID) step \(number) (\(kind)): its journaled evidence is not a JSON object of strings (\(EvidenceCoding.describe(error))). failoverd does not take evidence it cannot read for none; the journal was changed outside failoverd. Give the run up (failoverd abandon \(runID)) if it cannot be repaired."
                )
            }
        }
        return StepRecord(
            runID: runID, step: step, status: status, attempts: attempts, startedAt: startedAt, endedAt: endedAt, evidence: fields,
            error: error)
    }
}

/// A row of table `step_events`: one state change of a step, with the epoch and pid that wrote it.
struct StepEventRecord: Codable, FetchableRecord, PersistableRecord {
    var runID: String
    var step: Int
    var status: StepStatus
    var at: String
    var epoch: Int64
    var pid: Int32
    var detail: String?

    static let databaseTableName = "step_events"

    enum CodingKeys: String, CodingKey {
        case runID = "run_id"
        case step, status, at, epoch, pid, detail
    }
}

/// A row of table `site_roles`: the role recorded for a site.
struct SiteRoleRecord: Codable, FetchableRecord, PersistableRecord {
    var site: String
    var role: String
    var runID: String?
    var epoch: Int64
    var updatedAt: String

    static let databaseTableName = "site_roles"

    enum Columns {
        static let site = Column(CodingKeys.site)
        static let role = Column(CodingKeys.role)
    }

    enum CodingKeys: String, CodingKey {
        case site, role
        case runID = "run_id"
        case epoch
        case updatedAt = "updated_at"
    }
}

/// A step as the journal records it.
public struct StepRecord: Sendable, Equatable {
    /// The run it belongs to.
    public var runID: String
    /// The planned step.
    public var step: Step
    /// Where it stands.
    public var status: StepStatus
    /// How many times its act started.
    public var attempts: Int
    /// When its act started.
    public var startedAt: String?
    /// When it ended.
    public var endedAt: String?
    /// Evidence it gathered, in the journal's text form (field → text).
    public var evidence: [String: String]
    /// Why it failed.
    public var error: String?

    /// The evidence decoded as `type`; nil when the step journaled none. Throws a failure naming the run,
    /// the step and the field when the journaled text is not one.
    public func evidence<E: StepEvidence>(as type: E.Type) throws -> E? {
        evidence.isEmpty ? nil : try E(journaled: evidence, run: runID, step: step)
    }
}

extension StepStatus: DatabaseValueConvertible {}

extension Journal {
    /// Records a new run and its pending steps, with the run-start audit event, in one transaction.
    public func createRun(_ run: RunRecord, steps: [Step], epoch: Int64) throws {
        var run = run
        run.outcome = .running
        run.stepCount = steps.count
        let rows = try steps.map { try StepRow(run: run.id, step: $0) }
        try write { db in
            try run.insert(db)
            for row in rows { try row.insert(db) }
            try AuditLog.append(
                db, kind: .runStart, run: run.id,
                details: [
                    "plan": run.planName, "planSHA256": run.planSHA256, "driver": run.driver, "steps": String(steps.count),
                    "drill": String(run.isDrill), "allowDataLoss": String(run.allowDataLoss), "epoch": String(epoch),
                ], signer: auditSigner)
            if run.allowDataLoss {
                try AuditLog.append(
                    db, kind: .override, run: run.id,
                    details: ["override": "allow-data-loss", "scope": "this run only", "epoch": String(epoch)], signer: auditSigner)
            }
        }
    }

    /// Journals a step's state change with its typed evidence.
    public func recordStep(run: String, step: Step, status: StepStatus, epoch: Int64, evidence: any StepEvidence) throws {
        try recordStep(run: run, step: step, status: status, epoch: epoch, evidence: try evidence.journalFields(run: run, step: step))
    }

    /// Journals a step's state change, with its step event and audit event, in one committed transaction.
    ///
    /// `riding`: in a coordinated run, a `done` record may ride with the journal's next record (the next step's
    /// `started` or `satisfied`, a failure, the run's end) in the same etcd transaction, instead of paying
    /// its own. Nothing acts between a step's end and the next record, so every side effect is still
    /// journaled first; a crash in between leaves the step in doubt, and a resume runs its check first, as
    /// after a crash right after its act. Without a coordinator it is written at once.
    public func recordStep(
        run: String, step: Step, status: StepStatus, epoch: Int64, evidence: [String: String] = [:], error: String? = nil,
        riding: Bool = false
    ) throws {
        let now = Journal.now()
        let evidenceJSON = evidence.isEmpty ? nil : AuditLog.canonicalJSON(AuditLog.redact(evidence))
        let record = { [auditSigner] (db: Database) throws in
            try Self.stepRecord(
                db, run: run, step: step, status: status, epoch: epoch, evidence: evidence, evidenceJSON: evidenceJSON, error: error,
                at: now, signer: auditSigner)
        }
        if riding && status == .done && replica.attached != nil {
            riders.hold(record)
            return
        }
        try write(record)
    }

    /// The rows of one step record: the step's status, its step event and its audit event.
    static func stepRecord(
        _ db: Database, run: String, step: Step, status: StepStatus, epoch: Int64, evidence: [String: String], evidenceJSON: String?,
        error: String?, at now: String, signer auditSigner: AuditSigner?
    ) throws {
        do {
            switch status {
            case .started:
                try db.execute(
                    sql:
                        "UPDATE steps SET status = ?, attempts = attempts + 1, started_at = ?, ended_at = NULL, error = NULL, epoch = ? WHERE run_id = ? AND number = ?",
                    arguments: [status, now, epoch, run, step.number])
            default:
                try db.execute(
                    sql:
                        "UPDATE steps SET status = ?, started_at = coalesce(started_at, ?), ended_at = ?, evidence = coalesce(?, evidence), error = ?, epoch = ? WHERE run_id = ? AND number = ?",
                    arguments: [status, now, now, evidenceJSON, error, epoch, run, step.number])
            }
            try StepEventRecord(
                runID: run, step: step.number, status: status, at: now, epoch: epoch, pid: getpid(), detail: error ?? evidenceJSON
            )
            .insert(db)
            var details = ["step": String(step.number), "kind": step.kind.rawValue, "summary": step.summary, "epoch": String(epoch)]
            if let i = step.instance { details["instance"] = i }
            if let error { details["error"] = error }
            for (k, v) in evidence { details["evidence." + k] = v }
            let kind: AuditEventKind
            switch status {
            case .started: kind = .stepStart
            case .done: kind = .stepEnd
            case .satisfied: kind = .stepSkip
            case .failed: kind = .stepFail
            case .pending: kind = .stepPending
            }
            try AuditLog.append(db, kind: kind, run: run, site: step.site, details: details, signer: auditSigner)
        }
    }

    /// Ends a run with its outcome and the run-end audit event.
    public func finishRun(_ run: String, outcome: RunState, error: String? = nil, details: [String: String] = [:], epoch: Int64) throws {
        try write { db in
            try Self.guardEpoch(db, epoch)
            try db.execute(
                sql: "UPDATE runs SET outcome = ?, error = ?, ended_at = ? WHERE id = ?",
                arguments: [outcome.rawValue, error, Journal.now(), run])
            var d = details
            d["outcome"] = outcome.rawValue
            d["epoch"] = String(epoch)
            if let error { d["error"] = error }
            try AuditLog.append(db, kind: outcome == .abandoned ? .abandon : .runEnd, run: run, details: d, signer: auditSigner)
        }
    }

    /// Throws a refusal when `epoch` is not the run lock's current fencing epoch: a process that lost the
    /// lock writes nothing more. (Triggers enforce the same on steps, step events, roles and fences.)
    static func guardEpoch(_ db: Database, _ epoch: Int64) throws {
        let current = try Int64.fetchOne(db, sql: "SELECT epoch FROM run_lock WHERE id = 1") ?? 0
        if current != epoch {
            throw FailoverError.refused(
                "stale fencing epoch \(epoch): another failoverd process took over the run lock (epoch \(current)); this process writes nothing more. Inspect `failoverd status`."
            )
        }
    }

    /// The first run started after `run`, if any.
    public func runStarted(after run: String) throws -> RunRecord? {
        try db.read { db in
            try RunRecord.fetchOne(
                db, sql: "SELECT * FROM runs WHERE rowid > (SELECT rowid FROM runs WHERE id = ?) ORDER BY rowid LIMIT 1", arguments: [run])
        }
    }

    /// Marks a resumed run as running again.
    public func reopenRun(_ run: String) throws {
        try write { db in
            try db.execute(sql: "UPDATE runs SET outcome = 'running', error = NULL, ended_at = NULL WHERE id = ?", arguments: [run])
        }
    }

    /// The run with this id.
    public func run(_ id: String) throws -> RunRecord? {
        try db.read { db in try RunRecord.fetchOne(db, key: id) }
    }

    /// The most recent run.
    public func lastRun() throws -> RunRecord? {
        try db.read { db in try RunRecord.fetchOne(db, sql: "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1") }
    }

    /// The most recent unfinished run (running or failed), which `run` refuses to start over.
    public func unfinishedRun() throws -> RunRecord? {
        try db.read { db in
            try RunRecord.fetchOne(
                db, sql: "SELECT * FROM runs WHERE outcome IN ('running','failed') ORDER BY started_at DESC, rowid DESC LIMIT 1")
        }
    }

    /// The steps of a run, in order.
    public func steps(of run: String) throws -> [StepRecord] {
        try db.read { db in
            try StepRow.filter(StepRow.Columns.runID == run).order(StepRow.Columns.number).fetchAll(db).map { try $0.record() }
        }
    }

    /// The roles recorded for each site.
    public func recordedRoles() throws -> [String: Role] {
        try db.read { db in
            var out: [String: Role] = [:]
            for r in try SiteRoleRecord.fetchAll(db) {
                if let role = Role(rawValue: r.role) { out[r.site] = role }
            }
            return out
        }
    }

    /// Records roles for sites (adopting a plan's declared roles, or a transition's result).
    public func recordRoles(_ roles: [String: Role], run: String?, epoch: Int64) throws {
        try write { db in
            for (site, role) in roles {
                try db.execute(
                    sql:
                        "INSERT INTO site_roles (site, role, run_id, epoch, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(site) DO UPDATE SET role = excluded.role, run_id = excluded.run_id, epoch = excluded.epoch, updated_at = excluded.updated_at",
                    arguments: [site, role.rawValue, run, epoch, Journal.now()])
                if role != .fenced { try db.execute(sql: "DELETE FROM fenced_instances WHERE site = ?", arguments: [site]) }
            }
        }
    }

    /// Records an instance as fenced: failoverd refuses to start it as a primary until it is repaired.
    public func recordFenced(instance: String, site: String, lastKnownLSN: LSN?, reachable: Bool, run: String, epoch: Int64) throws {
        try write { db in
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO fenced_instances (instance, site, last_known_lsn, reachable, run_id, epoch, fenced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [instance, site, lastKnownLSN?.description, reachable, run, epoch, Journal.now()])
        }
    }

    /// True when the instance is recorded fenced.
    public func isFenced(instance: String) throws -> Bool {
        try db.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM fenced_instances WHERE instance = ?", arguments: [instance]) ?? false
        }
    }
}
