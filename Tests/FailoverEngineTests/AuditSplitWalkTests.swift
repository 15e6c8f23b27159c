import Foundation
import GRDB
import Testing

@_spi(JournalDatabase) @testable import FailoverEngine

/// `audit verify` walks a long chain in two halves on two connections: each tampering is named exactly as
/// the single walk names it, wherever it lies (first half, the seam, second half).
@Suite struct AuditSplitWalkTests {
    static let tamperings: [(name: String, sql: String)] = [
        ("none", ""),
        (
            "edit in the first half",
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = '{\"step\":\"99\"}' WHERE seq = 5;"
        ),
        ("edit at the seam", "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = '{\"step\":\"99\"}' WHERE seq = 20;"),
        (
            "edit after the seam",
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = '{\"step\":\"99\"}' WHERE seq = 21;"
        ),
        (
            "edit in the second half",
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET details = '{\"step\":\"99\"}' WHERE seq = 33;"
        ),
        ("delete the last of the first half", "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 20;"),
        ("delete the first of the second half", "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 21;"),
        ("delete seq 1", "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 1;"),
        (
            "swap across the seam",
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET seq = -1 WHERE seq = 20; UPDATE audit_events SET seq = 20 WHERE seq = 21; UPDATE audit_events SET seq = 21 WHERE seq = -1;"
        ),
        (
            "delete and renumber in the second half",
            "DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_events_no_update; DELETE FROM audit_events WHERE seq = 30; UPDATE audit_events SET seq = -(seq - 1) WHERE seq > 30; UPDATE audit_events SET seq = -seq WHERE seq < 0;"
        ),
    ]

    @Test("the split walk names what the single walk names", arguments: tamperings.map(\.name))
    func splitWalkAgreesWithTheSingleWalk(name: String) async throws {
        let state = CLI.tempDirectory("failoverd-split")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let journal = try Journal(stateDirectory: state)
        let log = AuditLog(journal: journal)
        for i in 1...40 {
            let kind: AuditEventKind = i % 10 == 1 ? .runStart : i % 10 == 0 ? .runEnd : i % 2 == 0 ? .stepEnd : .stepStart
            try log.append(kind: kind, run: "r-\(i / 10)", site: "dr", details: ["step": String(i % 10), "outcome": "succeeded"])
        }
        let sql = try #require(Self.tamperings.first { $0.name == name }?.sql)
        if !sql.isEmpty { try await CLI.sqlite3(journal.path, sql) }
        let (single, bounds) = try await journal.db.read { db in
            (try ChainWalk.run(db, heads: [10, 20, 21, 40], collectRuns: true), try LogState(db))
        }
        let split = try await ChainWalk.walk(
            journal, first: bounds.firstSeq, last: bounds.lastSeq, heads: [10, 20, 21, 40], collectRuns: true, splitAbove: 5)
        #expect(split.firstBroken == single.firstBroken, "\(split.problems) against \(single.problems)")
        #expect(split.problems.first?.reason == single.problems.first?.reason)
        if single.firstBroken == nil {
            #expect(split.checked == single.checked)
            #expect(split.heads == single.heads)
            #expect(split.runs.ids == single.runs.ids)
            #expect(split.runs.starts == single.runs.starts)
            #expect(split.runs.steps == single.runs.steps)
            #expect(split.runs.ends.mapValues(\.seq) == single.runs.ends.mapValues(\.seq))
        }
    }
}
