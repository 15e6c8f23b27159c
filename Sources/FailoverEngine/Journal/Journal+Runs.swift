import Foundation
import GRDB

/// A run as the journal records it.
public struct RunRecord: Sendable, Codable, Equatable {
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
    /// running, succeeded, failed, refused or abandoned.
    public var outcome: String
    /// The error that ended it, if any.
    public var error: String?
    /// When it started.
    public var startedAt: String
    /// When it ended.
    public var endedAt: String?

    /// Creates a run record.
    public init(
        id: String, planName: String, planJSON: String, planSHA256: String, driver: String, isDrill: Bool, allowDataLoss: Bool,
        actor: String, stepCount: Int, outcome: String, error: String?, startedAt: String, endedAt: String?
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
    public var isUnfinished: Bool { outcome == "running" || outcome == "failed" }

    /// The plan, decoded.
    public func plan() throws -> Plan { try Plan.decode(Data(planJSON.utf8)) }
}

/// A step as the journal records it.
public struct StepRecord: Sendable, Codable, Equatable {
    /// The planned step.
    public var step: Step
    /// pending, started, done, satisfied or failed.
    public var status: String
    /// How many times its act started.
    public var attempts: Int
    /// When its act started.
    public var startedAt: String?
    /// When it ended.
    public var endedAt: String?
    /// Evidence it gathered (LSNs, checkpoint, timeline), as a JSON object.
    public var evidence: [String: String]
    /// Why it failed.
    public var error: String?
}

extension Journal {
    static func runRecord(_ row: Row) -> RunRecord {
        RunRecord(
            id: row["id"], planName: row["plan_name"], planJSON: row["plan_json"], planSHA256: row["plan_sha256"],
            driver: row["driver"], isDrill: row["is_drill"], allowDataLoss: row["allow_data_loss"], actor: row["actor"],
            stepCount: row["step_count"], outcome: row["outcome"], error: row["error"], startedAt: row["started_at"],
            endedAt: row["ended_at"])
    }

    /// Records a new run and its pending steps, with the run-start audit event, in one transaction.
    public func createRun(_ run: RunRecord, steps: [Step], epoch: Int64) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try db.write { db in
            try db.execute(
                sql: """
                    INSERT INTO runs (id, plan_name, plan_json, plan_sha256, driver, is_drill, allow_data_loss, actor, step_count, outcome, started_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)
                    """,
                arguments: [
                    run.id, run.planName, run.planJSON, run.planSHA256, run.driver, run.isDrill, run.allowDataLoss, run.actor,
                    steps.count, run.startedAt,
                ])
            for s in steps {
                try db.execute(
                    sql: """
                        INSERT INTO steps (run_id, number, transition, action, kind, site, instance, destructive, summary, step_json, status)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')
                        """,
                    arguments: [
                        run.id, s.number, s.transition, s.action.rawValue, s.kind.rawValue, s.site, s.instance, s.destructive, s.summary,
                        String(decoding: try encoder.encode(s), as: UTF8.self),
                    ])
            }
            try AuditLog.append(
                db, kind: "run-start", run: run.id,
                details: [
                    "plan": run.planName, "planSHA256": run.planSHA256, "driver": run.driver, "steps": String(steps.count),
                    "drill": String(run.isDrill), "allowDataLoss": String(run.allowDataLoss), "epoch": String(epoch),
                ], signer: auditSigner)
            if run.allowDataLoss {
                try AuditLog.append(
                    db, kind: "override", run: run.id,
                    details: ["override": "allow-data-loss", "scope": "this run only", "epoch": String(epoch)], signer: auditSigner)
            }
        }
    }

    /// Journals a step's state change, with its step event and audit event, in one committed transaction.
    public func recordStep(
        run: String, step: Step, status: String, epoch: Int64, evidence: [String: String] = [:], error: String? = nil
    ) throws {
        let now = Journal.now()
        let evidenceJSON = evidence.isEmpty ? nil : AuditLog.canonicalJSON(AuditLog.redact(evidence))
        try db.write { db in
            switch status {
            case "started":
                try db.execute(
                    sql: "UPDATE steps SET status = 'started', attempts = attempts + 1, started_at = ?, ended_at = NULL, error = NULL, epoch = ? WHERE run_id = ? AND number = ?",
                    arguments: [now, epoch, run, step.number])
            default:
                try db.execute(
                    sql: "UPDATE steps SET status = ?, started_at = coalesce(started_at, ?), ended_at = ?, evidence = coalesce(?, evidence), error = ?, epoch = ? WHERE run_id = ? AND number = ?",
                    arguments: [status, now, now, evidenceJSON, error, epoch, run, step.number])
            }
            try db.execute(
                sql: "INSERT INTO step_events (run_id, step, status, at, epoch, pid, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [run, step.number, status, now, epoch, getpid(), error ?? evidenceJSON])
            var details = ["step": String(step.number), "kind": step.kind.rawValue, "summary": step.summary, "epoch": String(epoch)]
            if let i = step.instance { details["instance"] = i }
            if let error { details["error"] = error }
            for (k, v) in evidence { details["evidence." + k] = v }
            let kind = ["started": "step-start", "done": "step-end", "satisfied": "step-skip", "failed": "step-fail"][status] ?? "step-" + status
            try AuditLog.append(db, kind: kind, run: run, site: step.site, details: details, signer: auditSigner)
        }
    }

    /// Ends a run with its outcome and the run-end audit event.
    public func finishRun(_ run: String, outcome: String, error: String? = nil, details: [String: String] = [:], epoch: Int64) throws {
        try db.write { db in
            try Self.guardEpoch(db, epoch)
            try db.execute(
                sql: "UPDATE runs SET outcome = ?, error = ?, ended_at = ? WHERE id = ?", arguments: [outcome, error, Journal.now(), run])
            var d = details
            d["outcome"] = outcome
            d["epoch"] = String(epoch)
            if let error { d["error"] = error }
            try AuditLog.append(db, kind: outcome == "abandoned" ? "abandon" : "run-end", run: run, details: d, signer: auditSigner)
        }
    }

    /// Throws a refusal when `epoch` is not the run lock's current fencing epoch: a process that lost the
    /// lock writes nothing more. (Triggers enforce the same on steps, step events, roles and fences.)
    static func guardEpoch(_ db: Database, _ epoch: Int64) throws {
        let current = try Int64.fetchOne(db, sql: "SELECT epoch FROM run_lock WHERE id = 1") ?? 0
        if current != epoch {
            throw FailoverError.refused(
                "stale fencing epoch \(epoch): another failoverd process took over the run lock (epoch \(current)); this process writes nothing more. Inspect `failoverd status`.")
        }
    }

    /// The first run started after `run`, if any.
    public func runStarted(after run: String) throws -> RunRecord? {
        try db.read { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM runs WHERE rowid > (SELECT rowid FROM runs WHERE id = ?) ORDER BY rowid LIMIT 1", arguments: [run]
            ).map(Self.runRecord)
        }
    }

    /// Marks a resumed run as running again.
    public func reopenRun(_ run: String) throws {
        try db.write { db in try db.execute(sql: "UPDATE runs SET outcome = 'running', error = NULL, ended_at = NULL WHERE id = ?", arguments: [run]) }
    }

    /// The run with this id.
    public func run(_ id: String) throws -> RunRecord? {
        try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [id]).map(Self.runRecord) }
    }

    /// The most recent run.
    public func lastRun() throws -> RunRecord? {
        try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1").map(Self.runRecord) }
    }

    /// The most recent unfinished run (running or failed), which `run` refuses to start over.
    public func unfinishedRun() throws -> RunRecord? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE outcome IN ('running','failed') ORDER BY started_at DESC, rowid DESC LIMIT 1")
                .map(Self.runRecord)
        }
    }

    /// The steps of a run, in order.
    public func steps(of run: String) throws -> [StepRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM steps WHERE run_id = ? ORDER BY number", arguments: [run]).map { row in
                let step = try JSONDecoder().decode(Step.self, from: Data((row["step_json"] as String).utf8))
                let evidence = (row["evidence"] as String?).flatMap {
                    try? JSONDecoder().decode([String: String].self, from: Data($0.utf8))
                }
                return StepRecord(
                    step: step, status: row["status"], attempts: row["attempts"], startedAt: row["started_at"], endedAt: row["ended_at"],
                    evidence: evidence ?? [:], error: row["error"])
            }
        }
    }

    /// The roles recorded for each site.
    public func recordedRoles() throws -> [String: Role] {
        try db.read { db in
            var out: [String: Role] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT site, role FROM site_roles") {
                if let role = Role(rawValue: row["role"]) { out[row["site"]] = role }
            }
            return out
        }
    }

    /// Records roles for sites (adopting a plan's declared roles, or a transition's result).
    public func recordRoles(_ roles: [String: Role], run: String?, epoch: Int64) throws {
        try db.write { db in
            for (site, role) in roles {
                try db.execute(
                    sql: "INSERT INTO site_roles (site, role, run_id, epoch, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(site) DO UPDATE SET role = excluded.role, run_id = excluded.run_id, epoch = excluded.epoch, updated_at = excluded.updated_at",
                    arguments: [site, role.rawValue, run, epoch, Journal.now()])
                if role != .fenced { try db.execute(sql: "DELETE FROM fenced_instances WHERE site = ?", arguments: [site]) }
            }
        }
    }

    /// Records an instance as fenced: failoverd refuses to start it as a primary until it is repaired.
    public func recordFenced(instance: String, site: String, lastKnownLSN: LSN?, reachable: Bool, run: String, epoch: Int64) throws {
        try db.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO fenced_instances (instance, site, last_known_lsn, reachable, run_id, epoch, fenced_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [instance, site, lastKnownLSN?.description, reachable, run, epoch, Journal.now()])
        }
    }

    /// True when the instance is recorded fenced.
    public func isFenced(instance: String) throws -> Bool {
        try db.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM fenced_instances WHERE instance = ?", arguments: [instance]) ?? false }
    }
}
