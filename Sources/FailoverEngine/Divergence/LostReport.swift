import Foundation

/// What one former primary committed after the fork, as `failoverd lost` lists it.
public struct LostInstanceReport: Sendable, Codable, Equatable {
    /// Totals over the lost transactions.
    public struct Totals: Sendable, Codable, Equatable {
        /// Transactions committed after the fork.
        public var transactions: Int
        /// Rows they inserted, updated or deleted in user tables (where known).
        public var rows: Int
        /// Transactions whose row count is unknown (a TRUNCATE).
        public var rowsUnknownIn: [UInt32]
        /// The first commit time.
        public var firstCommit: String?
        /// The last commit time.
        public var lastCommit: String?
        /// Transactions that changed the catalog (DDL).
        public var ddl: Int
    }

    /// The former primary.
    public var instance: String
    /// Its site.
    public var site: String
    /// The run that captured it.
    public var run: String
    /// The capture's directory.
    public var directory: String
    /// When it was captured.
    public var capturedAt: String
    /// The instance whose history defines the fork.
    public var source: String?
    /// Where the old primary's history and the source's part.
    public var fork: LSN?
    /// The old primary's timeline at the fork.
    public var oldTimeline: Int
    /// The source's timeline.
    public var newTimeline: Int?
    /// The old primary had WAL past the fork.
    public var diverged: Bool
    /// Where the captured WAL was read from and to.
    public var walStart: LSN?
    /// Where the old primary's valid WAL ends.
    public var walEnd: LSN?
    /// Bytes of WAL captured.
    public var walBytes: UInt64
    /// Where the segments came from.
    public var walFrom: [String]
    /// Committed after the fork, in commit order.
    public var transactions: [LostTransaction]
    /// Prepared and left neither committed nor rolled back.
    public var inDoubt: [InDoubtTransaction]
    /// Rollbacks after the fork (transactions and savepoints): not lost.
    public var rolledBackAfterFork: Int
    /// Transactions open when the old primary stopped (never committed): not lost.
    public var openAtEnd: [UInt32]
    /// Totals.
    public var totals: Totals
    /// Row images: `decoded`, `not asked (…)`, or `unavailable: …`.
    public var rows: String
    /// What the capture or the listing could not do or know.
    public var notes: [String]
}

/// `failoverd lost`: every capture of a run (or of the latest run that has one), read again from the
/// captured WAL, with the names and row images recorded at capture time.
public struct LostReport: Sendable, Codable, Equatable {
    /// The state directory.
    public var stateDirectory: String
    /// The run listed, when one was asked for.
    public var run: String?
    /// One report per captured former primary.
    public var instances: [LostInstanceReport]
    /// Former primaries fenced by the run and not captured, with what to do.
    public var notCaptured: [String]

    /// The captures of `run` (of the latest run with a capture when nil), read again.
    public static func load(stateDirectory: String, run: String?, rows: Bool, binDirectory: String? = nil) async throws -> LostReport {
        let all = LostDirectory.sealed(stateDirectory)
        let chosen = run ?? all.last?.manifest.run
        var report = LostReport(stateDirectory: stateDirectory, run: chosen, instances: [], notCaptured: [])
        let dump = WALDump(binDirectory: binDirectory ?? LocalPostgresDriver.defaultBinDirectory())
        for (directory, manifest) in all where manifest.run == chosen {
            report.instances.append(try await read(directory: directory, manifest: manifest, dump: dump, rows: rows))
        }
        return report
    }

    /// One capture, read again from its WAL.
    static func read(directory: String, manifest m: CaptureManifest, dump: WALDump, rows: Bool) async throws -> LostInstanceReport {
        var analysis = DivergenceAnalysis()
        var notes: [String] = []
        if m.diverged, let start = m.start, let last = m.lastSegment {
            let reading = try await dump.read(
                directory + "/pg_wal", history: m.history, segmentSize: m.segmentSize, from: start, to: m.end, lastSegment: last)
            notes += reading.problems.map { "pg_waldump: \($0)" }
            analysis = DivergenceAnalysis(entries: reading.records, fork: m.fork ?? start, start: start)
        }
        var report = instanceReport(manifest: m, analysis: analysis, directory: directory, includeRows: rows)
        report.notes += notes
        return report
    }

    /// The report of a capture whose WAL reads as `analysis`: names, pg_xact status and row images applied.
    public static func instanceReport(
        manifest m: CaptureManifest, analysis a: DivergenceAnalysis, directory: String, includeRows: Bool = false
    ) -> LostInstanceReport {
        let changes = m.changes.compactMap { RowChange.parse($0, keys: m.keys) }
        var lost = a.lost.map { t -> LostTransaction in
            var t = t
            t.relations = t.relations.map { name($0, m) }.sorted { order($0) < order($1) }
            t.pgXact = CLOG.status(of: t.xid, in: directory)
            if includeRows && m.rows == "decoded" { t.rowChanges = changes.filter { $0.xid == t.xid } }
            return t
        }
        lost.sort { $0.commitLSN < $1.commitLSN }
        let inDoubt = a.inDoubt.map { t -> InDoubtTransaction in
            var t = t
            t.relations = t.relations.map { name($0, m) }.sorted { order($0) < order($1) }
            return t
        }
        let totals = LostInstanceReport.Totals(
            transactions: lost.count, rows: lost.compactMap(\.rows).reduce(0, +), rowsUnknownIn: lost.filter { $0.rows == nil }.map(\.xid),
            firstCommit: lost.first?.commitTime, lastCommit: lost.last?.commitTime, ddl: lost.filter(\.ddl).count)
        var notes = m.notes
        let uncovered = Set(m.uncovered)
        for t in lost where uncovered.contains(t.xid) {
            notes.append("transaction \(t.xid) began before the captured WAL: its relations and row counts may be incomplete")
        }
        return LostInstanceReport(
            instance: m.instance, site: m.site, run: m.run, directory: directory, capturedAt: m.capturedAt, source: m.source, fork: m.fork,
            oldTimeline: m.fork.map { m.history.timeline(at: $0) } ?? m.history.timeline, newTimeline: m.sourceHistory?.timeline,
            diverged: m.diverged, walStart: m.start, walEnd: m.end, walBytes: m.walBytes, walFrom: m.walFrom, transactions: lost,
            inDoubt: inDoubt, rolledBackAfterFork: a.rolledBack.count, openAtEnd: a.openAtEnd, totals: totals, rows: m.rows, notes: notes)
    }

    /// User tables first, then unknown, TOAST and catalogs.
    static func order(_ r: TouchedRelation) -> (Int, String) {
        (["table": 0, "unknown": 1, "toast": 2, "other": 3, "catalog": 4][r.kind] ?? 3, r.name)
    }

    /// The relation with its name: the old catalog's when an isolated copy answered, else the new primary's
    /// for a relation that existed at the fork, else what is known of it.
    static func name(_ r: TouchedRelation, _ m: CaptureManifest) -> TouchedRelation {
        var r = r
        let source = m.source ?? "the new primary"
        if let node = r.node {
            let old = m.oldCatalog?.nodes[node]
            let new = r.createdAfterFork ? nil : m.sourceCatalog?.nodes[node]
            if let known = old ?? new {
                r.kind = known.kind
                r.name = known.toastOf.map { "\(known.qualifiedName) (TOAST of \($0))" } ?? known.qualifiedName
                if r.createdAfterFork { r.name += " (created after the fork: relfilenode \(node.relation))" }
            } else if r.createdAfterFork {
                r.name = "created after the fork: relfilenode \(node.relation)"
            } else if node.isInitdbFile {
                r.kind = "catalog"
                r.name = "system catalog relfilenode \(node.relation)"
            } else {
                let db = m.sourceCatalog?.databases[node.database].map { "database \($0)" } ?? "database OID \(node.database)"
                r.name = "relfilenode \(node.relation) in \(db) (not in \(source)'s catalog: dropped or rewritten there since the fork)"
            }
        } else if let oid = r.oid {
            let db = r.database ?? 0
            if let known = m.oldCatalog?.oids[db]?[oid] ?? m.sourceCatalog?.oids[db]?[oid] {
                r.kind = known.kind
                r.name = known.qualifiedName
            } else {
                r.name = "relation OID \(oid) (not in \(source)'s catalog)"
            }
        }
        return r
    }

    /// The file nodes and OIDs the lost and in-doubt transactions changed.
    static func catalogQuery(_ a: DivergenceAnalysis, includeCreatedAfterFork: Bool, catalogFiles: Bool) -> CatalogQuery {
        let relations = a.lost.flatMap(\.relations) + a.inDoubt.flatMap(\.relations)
        let nodes = Set(relations.compactMap { r in r.node.flatMap { includeCreatedAfterFork || !r.createdAfterFork ? $0 : nil } })
        var oids: [UInt32: [UInt32]] = [:]
        for r in relations { if let oid = r.oid { oids[r.database ?? 0, default: []].append(oid) } }
        return CatalogQuery(nodes: nodes.sorted(), oids: oids.mapValues { Array(Set($0)).sorted() }, catalogFiles: catalogFiles)
    }
}

extension LostReport {
    /// The report for people. `lines` bounds the transactions listed per instance (all when nil).
    public func text(rows: Bool, lines: Int? = nil) -> String {
        var out: [String] = []
        if instances.isEmpty && notCaptured.isEmpty {
            out.append(
                run.map { "run \($0): no former primary was captured" }
                    ?? "no capture in \(stateDirectory)/lost: no former primary has been captured yet")
        }
        for r in instances {
            out.append("\(r.instance) (site \(r.site)), captured by run \(r.run) at \(r.capturedAt)")
            out.append("  capture: \(r.directory)")
            guard r.diverged else {
                out.append(
                    "  nothing diverged: "
                        + (r.notes.last.map { $0.replacingOccurrences(of: ": nothing diverged", with: "") }
                            ?? "its WAL is all in the new primary's history"))
                continue
            }
            let fork = r.fork.map { "\($0) on timeline \(r.oldTimeline)" } ?? "unknown"
            out.append(
                "  fork: \(fork)\(r.source.map { ", where \($0)'s timeline \(r.newTimeline.map(String.init) ?? "?") left it" } ?? "")")
            out.append(
                "  WAL: \(r.walStart?.description ?? "?") to \(r.walEnd?.description ?? "?"), \(r.walBytes) bytes from \(r.walFrom.joined(separator: " and "))"
            )
            let t = r.totals
            let rowsText =
                t.rowsUnknownIn.isEmpty
                ? "\(t.rows) rows" : "\(t.rows) rows and a TRUNCATE (xid \(t.rowsUnknownIn.map(String.init).joined(separator: ", ")))"
            if t.transactions == 0 {
                out.append("  lost: no transaction committed after the fork")
            } else {
                out.append(
                    "  lost: \(t.transactions) transaction\(t.transactions == 1 ? "" : "s") committed after the fork, \(rowsText), \(t.ddl) with DDL; first commit \(t.firstCommit ?? "?"), last \(t.lastCommit ?? "?")"
                )
            }
            let shown = lines.map { Array(r.transactions.prefix($0)) } ?? r.transactions
            if !shown.isEmpty {
                out.append(
                    "  " + "xid".padding(toLength: 10, withPad: " ", startingAt: 0) + "commit time                    commit LSN    changes"
                )
            }
            for x in shown {
                let user = x.relations.filter { $0.kind != "catalog" }
                var changes = user.map { rel in
                    let ops = rel.operations.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                    return rel.name + (rel.truncated ? " (truncate)" : "") + (ops.isEmpty ? "" : " (" + ops.joined(separator: ", ") + ")")
                }
                let catalogs = x.relations.count - user.count
                if catalogs > 0 { changes.append("\(catalogs) catalog relation\(catalogs == 1 ? "" : "s")") }
                var flags: [String] = []
                if x.ddl { flags.append("DDL") }
                if !x.subtransactions.isEmpty { flags.append("subxacts " + x.subtransactions.map(String.init).joined(separator: " ")) }
                if x.wroteBeforeFork { flags.append("began before the fork") }
                if let gid = x.preparedAs { flags.append("COMMIT PREPARED '\(gid)'") }
                out.append(
                    "  " + String(x.xid).padding(toLength: 10, withPad: " ", startingAt: 0)
                        + x.commitTime.padding(toLength: 31, withPad: " ", startingAt: 0)
                        + x.commitLSN.description.padding(toLength: 14, withPad: " ", startingAt: 0)
                        + (changes.isEmpty ? "(no table change)" : changes.joined(separator: "; "))
                        + (flags.isEmpty ? "" : "  [" + flags.joined(separator: "; ") + "]"))
                if rows, let changes = x.rowChanges {
                    for c in changes { out.append("      " + c.line) }
                }
            }
            if shown.count < r.transactions.count {
                out.append("  … \(r.transactions.count - shown.count) more (failoverd lost --json lists them all)")
            }
            for d in r.inDoubt {
                let names = d.relations.filter { $0.kind != "catalog" }.map(\.name).joined(separator: "; ")
                out.append(
                    "  in doubt: xid \(d.xid), prepared as '\(d.gid)' at \(d.prepareTime) (\(d.prepareLSN)), neither committed nor rolled back\(d.preparedBeforeFork ? "; prepared before the fork, so the new primary holds it prepared too" : "")\(names.isEmpty ? "" : ": " + names)"
                )
            }
            out.append(
                "  not lost: \(r.rolledBackAfterFork) rollback\(r.rolledBackAfterFork == 1 ? "" : "s") after the fork (transactions or savepoints), \(r.openAtEnd.count) transaction\(r.openAtEnd.count == 1 ? "" : "s") open when it stopped (never committed)"
            )
            if rows || r.rows != "decoded" { out.append("  row images: \(r.rows)") }
            for n in r.notes { out.append("  note: \(n)") }
        }
        for n in notCaptured { out.append(n) }
        return out.joined(separator: "\n")
    }
}
