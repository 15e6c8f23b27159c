import Foundation
import GRDB

#if canImport(GRDBSQLite)
    import GRDBSQLite
#elseif canImport(SQLite3)
    import SQLite3
#endif

/// What the chain walk gathers for the cross-check: each run's start, last end and each step's last event.
struct RunEvents: Sendable {
    /// Run id → its index.
    var index: [String: Int] = [:]
    /// Index → run id.
    var ids: [String] = []
    /// The first run-start of each run.
    var starts: [Int: Int64] = [:]
    /// The last run-end or abandon of each run, with the outcome it records.
    var ends: [Int: (seq: Int64, outcome: String)] = [:]
    /// By run index, then step number: seq << 3 | kind code (``stepKinds``), 0 when the step has no event.
    var steps: [[Int64]] = []

    static let stepKinds = ["step-?"] + ([.stepStart, .stepEnd, .stepSkip, .stepFail] as [AuditEventKind]).map(\.rawValue)
    /// Set on an entry of ``steps`` once the steps table has accounted for it.
    static let accounted: Int64 = 1 << 62

    static let kindRunStart = Array(AuditEventKind.runStart.rawValue.utf8), kindRunEnd = Array(AuditEventKind.runEnd.rawValue.utf8),
        kindAbandon = Array(AuditEventKind.abandon.rawValue.utf8)
    static let stepPattern = Array("\"step\":\"".utf8), outcomePattern = Array("\"outcome\":\"".utf8)

    mutating func record(run: Int, step: Int, _ value: Int64) {
        while steps.count <= run { steps.append([]) }
        if steps[run].count <= step { steps[run].append(contentsOf: repeatElement(0, count: step + 1 - steps[run].count)) }
        steps[run][step] = value
    }

    func last(run: Int, step: Int) -> Int64? {
        guard run < steps.count, step >= 0, step < steps[run].count, steps[run][step] != 0 else { return nil }
        return steps[run][step] & ~Self.accounted
    }

    /// The index of run `id`, added when new.
    mutating func index(of id: String) -> Int {
        if let known = index[id] { return known }
        let r = ids.count
        ids.append(id)
        index[id] = r
        return r
    }

    /// Appends what a later half of the walk gathered: re-keyed into these indexes; its ends and step events
    /// are the later ones.
    mutating func merge(_ later: RunEvents) {
        for (j, id) in later.ids.enumerated() {
            let r = index(of: id)
            if starts[r] == nil, let start = later.starts[j] { starts[r] = start }
            if let end = later.ends[j] { ends[r] = end }
            if j < later.steps.count {
                for (step, value) in later.steps[j].enumerated() where value != 0 { record(run: r, step: step, value) }
            }
        }
    }

    /// Records a run or step event for the cross-check.
    mutating func collect(
        seq: Int64, kind: UnsafeBufferPointer<UInt8>, run: UnsafeBufferPointer<UInt8>, details: UnsafeBufferPointer<UInt8>?,
        cache: inout (bytes: [UInt8], index: Int)
    ) {
        func runIndex() -> Int {
            if ChainWalk.same(run, cache.bytes) { return cache.index }
            let r = index(of: String(decoding: run, as: UTF8.self))
            cache = (Array(run), r)
            return r
        }
        guard let first = kind.first else { return }
        if first == 0x73, kind.count > 5, kind[1] == 0x74, kind[2] == 0x65, kind[3] == 0x70, kind[4] == 0x2D {  // step-
            guard let details, let digits = Self.value(Self.stepPattern, in: details), !digits.isEmpty, digits.count < 10 else { return }
            var step = 0
            for i in digits {
                let d = details[i]
                guard d >= 0x30 && d <= 0x39 else { return }
                step = step * 10 + Int(d - 0x30)
            }
            let code: Int64
            switch kind.count {
            case 10 where kind[5] == 0x73: code = 1  // step-start
            case 8 where kind[5] == 0x65: code = 2  // step-end
            case 9 where kind[5] == 0x73: code = 3  // step-skip
            case 9 where kind[5] == 0x66: code = 4  // step-fail
            default: code = 0
            }
            record(run: runIndex(), step: step, seq << 3 | code)
        } else if ChainWalk.same(kind, Self.kindRunStart) {
            let r = runIndex()
            if starts[r] == nil { starts[r] = seq }
        } else if ChainWalk.same(kind, Self.kindRunEnd) || ChainWalk.same(kind, Self.kindAbandon) {
            let outcome =
                details.flatMap { d in
                    Self.value(Self.outcomePattern, in: d).map { String(decoding: UnsafeBufferPointer(rebasing: d[$0]), as: UTF8.self) }
                } ?? "?"
            ends[runIndex()] = (seq, outcome)
        }
    }

    /// Where the string value of `"key":"…"` lies in canonical details (values are escaped, so the pattern is a key).
    static func value(_ pattern: [UInt8], in details: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        let n = pattern.count
        guard details.count > n, let base = details.baseAddress else { return nil }
        return pattern.withUnsafeBufferPointer { pat -> Range<Int>? in
            // The byte after the opening quote is rarer than the quote: test it first.
            let second = pat[1]
            var i = 1
            while i + n <= details.count {
                if details[i + 1] == second && details[i] == pat[0] && (details[i - 1] == 0x7B || details[i - 1] == 0x2C)
                    && memcmp(pat.baseAddress!, base + i, n) == 0
                {
                    var j = i + n
                    while j < details.count && details[j] != 0x22 && details[j] != 0x5C { j += 1 }
                    return (i + n)..<j
                }
                i += 1
            }
            return nil
        }
    }
}

extension AuditLog {
    /// Every run has its start and end events, every step its events, and the outcomes agree: the runs and
    /// steps tables against what the chain walk gathered.
    static func crossCheck(_ db: Database, _ seen: RunEvents) throws -> (runs: Int, problems: [Problem]) {
        var problems: [Problem] = []
        let expectedKind: [String: String] = [
            StepStatus.done.rawValue: AuditEventKind.stepEnd.rawValue, StepStatus.satisfied.rawValue: AuditEventKind.stepSkip.rawValue,
            StepStatus.failed.rawValue: AuditEventKind.stepFail.rawValue, StepStatus.started.rawValue: AuditEventKind.stepStart.rawValue,
        ]
        var inTable = Set<Int>()
        var runs = 0
        let runRows = try Row.fetchCursor(db, sql: "SELECT id, outcome FROM runs ORDER BY started_at, rowid")
        var outcomes: [Int: (id: String, outcome: String)] = [:]
        while let run = try runRows.next() {
            runs += 1
            let id: String = run["id"]
            let outcome: String = run["outcome"]
            guard let r = seen.index[id] else {
                problems.append(
                    Problem(
                        seq: nil,
                        reason: "run \(id) is in the runs table (\(outcome)) but the log has no event of it, not even its run-start"))
                continue
            }
            inTable.insert(r)
            outcomes[r] = (id, outcome)
            if seen.starts[r] == nil {
                problems.append(
                    Problem(seq: nil, reason: "run \(id) is in the runs table (\(outcome)) but the log has no run-start event for it"))
            }
            if outcome != RunState.running.rawValue {
                if let end = seen.ends[r] {
                    if end.outcome != outcome {
                        problems.append(
                            Problem(
                                seq: end.seq,
                                reason:
                                    "run \(id): the runs table says \(outcome), but its last run-end event (seq \(end.seq)) says \(end.outcome)"
                            ))
                    }
                } else {
                    problems.append(
                        Problem(seq: nil, reason: "run \(id) is \(outcome) in the runs table, but the log has no run-end event for it"))
                }
            }
        }
        var seen = seen
        let steps = try db.makeStatement(sql: "SELECT run_id, number, status FROM steps")
        let h = steps.sqliteStatement
        defer { sqlite3_reset(h) }
        var lastRunText: [UInt8] = []
        var lastRun: Int?
        let statuses = StepStatus.allCases.map { (Array($0.rawValue.utf8), $0.rawValue) }
        while true {
            let rc = sqlite3_step(h)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
            }
            guard let p = sqlite3_column_text(h, 0) else { continue }
            let runBytes = UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(h, 0)))
            if !ChainWalk.same(runBytes, lastRunText) {
                lastRunText = Array(runBytes)
                lastRun = seen.index[String(decoding: runBytes, as: UTF8.self)]
            }
            guard let r = lastRun, let (id, _) = outcomes[r] else { continue }
            let n = Int(sqlite3_column_int64(h, 1))
            let statusBytes = UnsafeBufferPointer(start: sqlite3_column_text(h, 2), count: Int(sqlite3_column_bytes(h, 2)))
            let status = statuses.first { $0.0.elementsEqual(statusBytes) }?.1 ?? String(decoding: statusBytes, as: UTF8.self)
            let last = seen.last(run: r, step: n).map { (seq: $0 >> 3, kind: RunEvents.stepKinds[Int($0 & 7)]) }
            if last != nil { seen.steps[r][n] |= RunEvents.accounted }
            guard let want = expectedKind[status] else {
                if let last {
                    problems.append(
                        Problem(
                            seq: last.seq,
                            reason:
                                "run \(id) step \(n) is \(status) in the steps table, but the log records \(last.kind) for it at seq \(last.seq)"
                        ))
                }
                continue
            }
            guard let last else {
                problems.append(
                    Problem(
                        seq: nil, reason: "run \(id) step \(n) is \(status) in the steps table, but the log has no \(want) event for it"))
                continue
            }
            if last.kind != want {
                problems.append(
                    Problem(
                        seq: last.seq,
                        reason:
                            "run \(id) step \(n) is \(status) in the steps table, but its last event in the log (seq \(last.seq)) is \(last.kind), not \(want)"
                    ))
            }
        }
        for (r, byStep) in seen.steps.enumerated() {
            guard let (id, _) = outcomes[r] else { continue }
            for (n, value) in byStep.enumerated() where value != 0 && value & RunEvents.accounted == 0 {
                problems.append(
                    Problem(
                        seq: value >> 3, reason: "seq \(value >> 3) records step \(n) of run \(id), which the steps table does not hold"))
            }
        }
        for (r, seq) in seen.starts where !inTable.contains(r) {
            problems.append(
                Problem(
                    seq: seq,
                    reason: "seq \(seq) starts run \(seen.ids[r]), which the runs table does not hold: a run was deleted from the journal"))
        }
        return (runs, problems)
    }
}
