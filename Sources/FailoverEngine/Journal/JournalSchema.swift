import GRDB

/// The journal's migrations: registered once, never edited; a change is a new migration.
enum JournalSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE runs (
                        id TEXT PRIMARY KEY,
                        plan_name TEXT NOT NULL,
                        plan_json TEXT NOT NULL,
                        plan_sha256 TEXT NOT NULL,
                        driver TEXT NOT NULL,
                        is_drill INTEGER NOT NULL DEFAULT 0,
                        allow_data_loss INTEGER NOT NULL DEFAULT 0,
                        actor TEXT NOT NULL,
                        step_count INTEGER NOT NULL,
                        outcome TEXT NOT NULL CHECK (outcome IN ('running','succeeded','failed','refused','abandoned')),
                        error TEXT,
                        started_at TEXT NOT NULL,
                        ended_at TEXT
                    );
                    CREATE TABLE steps (
                        run_id TEXT NOT NULL REFERENCES runs(id),
                        number INTEGER NOT NULL,
                        transition INTEGER NOT NULL,
                        action TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        site TEXT NOT NULL,
                        instance TEXT,
                        destructive INTEGER NOT NULL,
                        summary TEXT NOT NULL,
                        step_json TEXT NOT NULL,
                        status TEXT NOT NULL CHECK (status IN ('pending','started','done','satisfied','failed')),
                        attempts INTEGER NOT NULL DEFAULT 0,
                        started_at TEXT,
                        ended_at TEXT,
                        evidence TEXT,
                        error TEXT,
                        epoch INTEGER,
                        PRIMARY KEY (run_id, number)
                    );
                    CREATE TABLE step_events (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        run_id TEXT NOT NULL,
                        step INTEGER NOT NULL,
                        status TEXT NOT NULL,
                        at TEXT NOT NULL,
                        epoch INTEGER NOT NULL,
                        pid INTEGER NOT NULL,
                        detail TEXT
                    );
                    CREATE INDEX step_events_run ON step_events(run_id, step);
                    CREATE TABLE site_roles (
                        site TEXT PRIMARY KEY,
                        role TEXT NOT NULL,
                        run_id TEXT,
                        epoch INTEGER NOT NULL,
                        updated_at TEXT NOT NULL
                    );
                    CREATE TABLE fenced_instances (
                        instance TEXT PRIMARY KEY,
                        site TEXT NOT NULL,
                        last_known_lsn TEXT,
                        reachable INTEGER NOT NULL,
                        run_id TEXT NOT NULL,
                        epoch INTEGER NOT NULL,
                        fenced_at TEXT NOT NULL
                    );
                    CREATE TABLE run_lock (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        run_id TEXT,
                        pid INTEGER,
                        host TEXT,
                        acquired_at TEXT,
                        renewed_at TEXT,
                        lease_seconds REAL,
                        epoch INTEGER NOT NULL
                    );
                    INSERT INTO run_lock (id, epoch) VALUES (1, 0);
                    CREATE TABLE audit_events (
                        seq INTEGER PRIMARY KEY,
                        at TEXT NOT NULL,
                        run_id TEXT,
                        site TEXT,
                        actor TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        details TEXT NOT NULL,
                        prev_hash TEXT NOT NULL,
                        hash TEXT NOT NULL
                    );
                    CREATE INDEX audit_events_run ON audit_events(run_id, site, kind);
                    CREATE INDEX audit_events_site ON audit_events(site, kind);
                    CREATE INDEX audit_events_kind ON audit_events(kind);
                    CREATE INDEX audit_events_at ON audit_events(at);
                    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
                    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
                    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
                    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

                    CREATE VIEW run_summary AS
                        SELECT r.id AS run_id, r.plan_name, r.driver, r.is_drill, r.outcome, r.started_at, r.ended_at,
                               r.step_count,
                               (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.status = 'done') AS steps_done,
                               (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.status = 'satisfied') AS steps_satisfied,
                               (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.status = 'failed') AS steps_failed,
                               r.error
                        FROM runs r;
                    CREATE VIEW step_timeline AS
                        SELECT s.run_id, s.number, s.transition, s.action, s.kind, s.site, s.instance, s.status,
                               s.started_at, s.ended_at,
                               round((julianday(s.ended_at) - julianday(s.started_at)) * 86400.0, 3) AS seconds,
                               s.attempts, s.epoch, s.evidence, s.error
                        FROM steps s;
                    CREATE VIEW in_doubt_steps AS
                        SELECT run_id, number, kind, site, instance, started_at, epoch FROM steps WHERE status = 'started';
                    CREATE VIEW current_roles AS
                        SELECT site, role, run_id, updated_at FROM site_roles;
                    CREATE VIEW audit AS
                        SELECT seq, at, run_id, site, actor, kind, details FROM audit_events;
                    """)
        }
        // The holder's process start time, so that a pid reused after a crash or reboot does not hold the
        // lock; and the fencing epoch enforced by the database: a process that lost the lock cannot write
        // steps, roles or fences under its old epoch.
        m.registerMigration("v2-lock-identity-and-epoch-guard") { db in
            try db.execute(
                sql: """
                    ALTER TABLE run_lock ADD COLUMN pid_start_time REAL;
                    CREATE TRIGGER steps_epoch_guard BEFORE UPDATE ON steps
                    WHEN NEW.epoch IS NOT NULL AND NEW.epoch <> (SELECT epoch FROM run_lock WHERE id = 1)
                    BEGIN SELECT RAISE(ABORT, 'stale fencing epoch: this failoverd process no longer holds the run lock'); END;
                    CREATE TRIGGER step_events_epoch_guard BEFORE INSERT ON step_events
                    WHEN NEW.epoch <> (SELECT epoch FROM run_lock WHERE id = 1)
                    BEGIN SELECT RAISE(ABORT, 'stale fencing epoch: this failoverd process no longer holds the run lock'); END;
                    CREATE TRIGGER site_roles_epoch_guard_insert BEFORE INSERT ON site_roles
                    WHEN NEW.epoch <> (SELECT epoch FROM run_lock WHERE id = 1)
                    BEGIN SELECT RAISE(ABORT, 'stale fencing epoch: this failoverd process no longer holds the run lock'); END;
                    CREATE TRIGGER site_roles_epoch_guard_update BEFORE UPDATE ON site_roles
                    WHEN NEW.epoch <> (SELECT epoch FROM run_lock WHERE id = 1)
                    BEGIN SELECT RAISE(ABORT, 'stale fencing epoch: this failoverd process no longer holds the run lock'); END;
                    CREATE TRIGGER fenced_instances_epoch_guard BEFORE INSERT ON fenced_instances
                    WHEN NEW.epoch <> (SELECT epoch FROM run_lock WHERE id = 1)
                    BEGIN SELECT RAISE(ABORT, 'stale fencing epoch: this failoverd process no longer holds the run lock'); END;
                    """)
        }
        // v3: the OS user (real uid) and host of the process beside the claimed actor, the signed checkpoints
        // of the audit log, and the journal's random id that each checkpoint names (one checkpoint file may
        // serve several state directories). Events written before v3 keep NULL in the new columns, and their hashes.
        m.registerMigration("v3-audit-signing") { db in
            try db.execute(
                sql: """
                    ALTER TABLE audit_events ADD COLUMN os_user TEXT;
                    ALTER TABLE audit_events ADD COLUMN os_uid INTEGER;
                    ALTER TABLE audit_events ADD COLUMN host TEXT;
                    CREATE TABLE journal_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                    INSERT INTO journal_info (key, value) VALUES ('id', lower(hex(randomblob(16))));
                    CREATE TRIGGER journal_info_no_update BEFORE UPDATE ON journal_info
                    BEGIN SELECT RAISE(ABORT, 'journal_info is append-only'); END;
                    CREATE TRIGGER journal_info_no_delete BEFORE DELETE ON journal_info
                    BEGIN SELECT RAISE(ABORT, 'journal_info is append-only'); END;
                    CREATE TABLE audit_checkpoints (
                        journal_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        head TEXT NOT NULL,
                        at TEXT NOT NULL,
                        run_id TEXT,
                        key_id TEXT NOT NULL,
                        signature TEXT NOT NULL,
                        PRIMARY KEY (seq, key_id)
                    );
                    CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
                    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
                    CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
                    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
                    DROP VIEW audit;
                    CREATE VIEW audit AS
                        SELECT seq, at, run_id, site, actor, os_user, os_uid, host, kind, details FROM audit_events;
                    """)
        }
        // v4: what of this journal is also in the coordination store (etcd), key by key, so that a coordinated
        // run writes to etcd only what changed and a takeover copies only what this journal lacks.
        m.registerMigration("v4-coordination-mirror") { db in
            try db.execute(sql: "CREATE TABLE coordination_mirror (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        }
        return m
    }
}
