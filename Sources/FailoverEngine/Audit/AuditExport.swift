import Foundation
import GRDB

extension AuditLog {
    /// Writes the log as JSON lines for a log store: each event as `{"event":{…},"hash":…,"prevHash":…,"seq":N,"type":"event"}`,
    /// where `event` is the exact canonical text the hash covers (so `hash = SHA-256(prevHash ‖ event)` can be
    /// recomputed from the line), followed by every signed checkpoint of that seq as its checkpoint-file line.
    ///
    /// - Parameter afterSeq: only events after this seq (and their checkpoints), to ship incrementally.
    public func exportJSONLines(afterSeq: Int64 = 0, _ write: (String) -> Void) throws {
        try journal.db.read { db in
            var checkpoints = try AuditCheckpoint.fetchAll(db).filter { $0.seq > afterSeq }[...]
            let events = try AuditEvent.fetchCursor(db, sql: "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq", arguments: [afterSeq])
            while let e = try events.next() {
                write(
                    "{\"event\":\(e.canonical),\"hash\":\(AuditLog.quote(e.hash)),\"prevHash\":\(AuditLog.quote(e.prevHash)),\"seq\":\(e.seq),\"type\":\"event\"}"
                )
                while let c = checkpoints.first, c.seq <= e.seq {
                    write(c.jsonLine)
                    checkpoints.removeFirst()
                }
            }
            for c in checkpoints { write(c.jsonLine) }
        }
    }
}
