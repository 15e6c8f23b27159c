import Foundation
import Logging

extension DrillReport {
    /// What `failoverd lost` listed for the run's former primaries, and how it compares with the ledger.
    public struct LostList: Codable, Sendable {
        /// The former primaries listed.
        public var instances: [String]
        /// Transactions listed as committed after the fork.
        public var count: Int
        /// Of them, the workload's own acknowledged commits (matched by xid and server).
        public var ledgerCommits: Int
        /// Every listed transaction.
        public var transactions: [LostTransaction]
        /// The listing's first lines, as `failoverd lost` prints them.
        public var firstLines: [String]
    }
}

extension DrillChecker {
    /// When the run fenced a former primary: its capture (made now if the plan repaired nothing), and three
    /// checks against the ledger: every acknowledged commit counted lost is listed by xid, nothing the new
    /// primary has is listed, and commit times lie within the acknowledgement times.
    func lostListChecks(run: RunRecord?, ledger: Ledger, present: Set<Int64>, lost: [Int64]) async throws -> (
        [DrillReport.Check], DrillReport.LostList?
    ) {
        guard let run, let journal = try? Journal(existingStateDirectory: state), try !LostListing.fenced(by: run, journal: journal).isEmpty
        else { return ([], nil) }
        var checks: [DrillReport.Check] = []
        do {
            _ = try await LostListing.captureNow(stateDirectory: state, run: run.id, logger: options.logger)
        } catch {
            checks.append(.init(name: "lost list: captured", passed: false, detail: "the former primary could not be captured: \(error)"))
            return (checks, nil)
        }
        let report = try await LostListing.report(stateDirectory: state, run: run.id, rows: false)
        let listed = report.instances.flatMap { r in r.transactions.map { (instance: r.instance, t: $0) } }
        let ports = Dictionary(uniqueKeysWithValues: plan.allInstances.map { ($0.instance.name, $0.instance.port) })
        // The ledger's acknowledged commits on each captured former primary, by xid.
        var ledgerByKey: [String: Ledger.Entry] = [:]
        for e in ledger.acknowledged { if let xid = e.xid, let port = e.port { ledgerByKey["\(port)/\(xid)"] = e } }
        let matched = listed.compactMap { l -> (LostTransaction, Ledger.Entry)? in
            ports[l.instance].flatMap { ledgerByKey["\($0)/\(l.t.xid)"] }.map { (l.t, $0) }
        }
        let capturedPorts = Set(report.instances.compactMap { ports[$0.instance] })
        let listedKeys = Set(listed.compactMap { l in ports[l.instance].map { "\($0)/\(l.t.xid)" } })
        let lostEntries = ledger.acknowledged.filter { lost.contains($0.id) && $0.port.map(capturedPorts.contains) == true }
        let missing = lostEntries.filter { e in e.xid.map { !listedKeys.contains("\(e.port!)/\($0)") } ?? true }
        checks.append(
            .init(
                name: "lost list: every acknowledged commit lost is listed", passed: missing.isEmpty,
                detail: missing.isEmpty
                    ? "\(lostEntries.count) acknowledged commits lost on \(report.instances.map(\.instance).joined(separator: ", ")), all listed by xid among \(listed.count) transactions"
                    : "\(missing.count) of \(lostEntries.count) lost commits are not listed (xid \(missing.prefix(5).compactMap(\.xid).map(String.init).joined(separator: ", ")))"
            ))
        let kept = matched.filter { present.contains($0.1.id) }
        checks.append(
            .init(
                name: "lost list: nothing the new primary has", passed: kept.isEmpty,
                detail: kept.isEmpty
                    ? "none of the \(matched.count) listed workload commits is on the final primary"
                    : "\(kept.count) listed commits are on the final primary (xid \(kept.prefix(5).map { String($0.0.xid) }.joined(separator: ", ")))"
            ))
        let tolerance = 0.05
        let outside = matched.filter { (t, e) in
            guard let at = LostTransaction.date(t.commitTime)?.timeIntervalSince(wallStart) else { return true }
            return at < e.sentAt - tolerance || at > e.at + tolerance
        }
        checks.append(
            .init(
                name: "lost list: commit times within acknowledgement times", passed: outside.isEmpty,
                detail: outside.isEmpty
                    ? "\(matched.count) listed workload commits committed between their client's send and acknowledgement (±\(Int(tolerance * 1000)) ms)"
                    : "\(outside.count) commit times fall outside (xid \(outside.prefix(5).map { String($0.0.xid) }.joined(separator: ", ")))"
            ))
        let lines = report.text(rows: false, lines: 10).split(separator: "\n").map(String.init)
        let list = DrillReport.LostList(
            instances: report.instances.map(\.instance), count: listed.count, ledgerCommits: matched.count, transactions: listed.map(\.t),
            firstLines: Array(lines.prefix(24)))
        return (checks, list)
    }
}

extension LostTransaction {
    /// `2026-12-07 14:28:47.454740 UTC` as a date; nil for another form.
    public static func date(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count >= 2, parts.count < 3 || parts[2] == "UTC" else { return nil }
        let day = parts[0].split(separator: "-").compactMap { Int($0) }
        let time = parts[1].split(separator: ":")
        guard day.count == 3, time.count == 3, let h = Int(time[0]), let m = Int(time[1]), let s = Double(time[2]) else { return nil }
        var c = DateComponents()
        c.timeZone = TimeZone(identifier: "UTC")
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (day[0], day[1], day[2], h, m, 0)
        guard let whole = Calendar(identifier: .gregorian).date(from: c) else { return nil }
        return whole.addingTimeInterval(s)
    }
}
