import GRDB

extension Journal {
    /// The run started just before `run`, if any.
    func runStarted(before run: String) throws -> RunRecord? {
        try db.read { db in
            try RunRecord.fetchOne(
                db, sql: "SELECT * FROM runs WHERE rowid < (SELECT rowid FROM runs WHERE id = ?) ORDER BY rowid DESC LIMIT 1",
                arguments: [run])
        }
    }
}
