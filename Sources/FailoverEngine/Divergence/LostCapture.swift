import Foundation
import Logging

/// Captures what a stopped former primary wrote past the fork, before anything repairs it: its WAL from the
/// redo point of the last checkpoint before the fork (further back while a transaction open at the fork
/// began earlier) to its end, the pg_xact pages of the transactions involved, the timeline histories, the
/// names of the relations they changed, and (with `policy.captureLostRows`) their row changes decoded from an
/// isolated copy. Into `STATE/lost/RUN/INSTANCE/` (0700), sealed by `capture.json`, so a capture killed
/// half-way is redone, never listed.
public struct LostCapture: Sendable {
    /// The plan.
    public let plan: Plan
    /// The driver that reaches the instances.
    public let driver: any InstanceDriver
    /// failoverd's state directory.
    public let stateDirectory: String
    /// The run capturing.
    public let run: String
    /// The former primary.
    public let instance: Instance
    /// Its site.
    public let site: String
    /// The instance whose timeline history defines the fork (the current primary), when there is one.
    public let source: Instance?
    /// The most WAL the capture copies (policy.lostCaptureMaxBytes).
    public var maxBytes: UInt64
    /// Decode row changes on an isolated copy (policy.captureLostRows).
    public var captureRows: Bool
    /// PostgreSQL's bin directory on this host (pg_waldump).
    public var binDirectory: String
    /// Where progress is logged.
    public var logger: Logger
    /// Called once the WAL is copied and before the capture is sealed (the fault switch's `N:mid`).
    public var midpoint: @Sendable () -> Void = {}

    /// Creates a capture of `instance` for `run`.
    public init(
        plan: Plan, driver: any InstanceDriver, stateDirectory: String, run: String, instance: Instance, site: String, source: Instance?,
        logger: Logger
    ) {
        self.plan = plan
        self.driver = driver
        self.stateDirectory = stateDirectory
        self.run = run
        self.instance = instance
        self.site = site
        self.source = source
        self.maxBytes = plan.policy.effectiveLostCaptureMaxBytes
        self.captureRows = plan.policy.captureLostRows ?? false
        self.binDirectory = LocalPostgresDriver.defaultBinDirectory()
        self.logger = logger
    }

    /// The sealed capture's directory.
    public var directory: String { LostDirectory.capture(stateDirectory, run: run, instance: instance.name) }
    /// The instance whose pg_control pgBackRest reads to find the cluster's archive: the source (same cluster,
    /// its disk there), else the former primary itself.
    var archiveReader: Instance { source ?? instance }

    /// The driver a capture reads a former primary with: the run's, or, for a plan whose every site is driven
    /// at the site level (Patroni: the run has no instance driver, ``NoInstanceDriver``), the local driver on
    /// this host, which reads a leader here and the repository (and runs pg_waldump) for one elsewhere: a
    /// capture needs PostgreSQL's programs and pgBackRest on failoverd's host even where the run does not.
    static func driver(plan: Plan, runDriver: any InstanceDriver, logger: Logger) throws -> any InstanceDriver {
        guard runDriver is NoInstanceDriver else { return runDriver }
        return try LocalPostgresDriver(plan: plan, binDirectory: HostTools.system.postgresBinDirectory, logger: logger)
    }

    /// Where the capture is built before it is sealed.
    var partial: String { LostDirectory.root(stateDirectory) + "/" + run + "/." + instance.name + ".partial" }

    /// Captures (or returns the capture already sealed for this run and instance).
    ///
    /// - Throws: ``FailoverError`` refused when the instance accepts writes, or when the WAL to copy exceeds
    ///   ``maxBytes``; nothing is sealed then.
    public func capture() async throws -> CaptureManifest {
        try StateDirectory.prepare(LostDirectory.root(stateDirectory))
        try StateDirectory.prepare(LostDirectory.root(stateDirectory) + "/" + run)
        if let sealed = try CaptureManifest.read(directory: directory) { return sealed }
        if FileManager.default.fileExists(atPath: partial) { try FileManager.default.removeItem(atPath: partial) }
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        do {
            var manifest = try await fill()
            manifest.capturedAt = ISO8601DateFormatter().string(from: Date())
            try CaptureFiles.write(try manifest.encoded(), to: CaptureManifest.fileName, in: partial)
            if FileManager.default.fileExists(atPath: directory) { try FileManager.default.removeItem(atPath: directory) }
            guard rename(partial, directory) == 0 else {
                throw FailoverError.failed(
                    "cannot seal the capture: rename \(partial) to \(directory): \(String(cString: strerror(errno)))")
            }
            CaptureFiles.syncDirectory(LostDirectory.root(stateDirectory) + "/" + run)
            return manifest
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// What the capture is building.
    struct Build {
        var manifest: CaptureManifest
        var present: Set<String> = []
        var segments: [UInt64: String] = [:]
        var diskReadable = true
        var control: ControlData?

        mutating func note(_ text: String) { manifest.notes.append(text) }
    }

    func fill() async throws -> CaptureManifest {
        var b = Build(
            manifest: CaptureManifest(
                run: run, instance: instance.name, site: site, capturedAt: "", systemIdentifier: nil, history: TimelineHistory(timeline: 1),
                source: source?.name, sourceHistory: nil, fork: nil, diverged: false, start: nil, end: nil, segmentSize: 16 << 20,
                lastSegment: nil, walFrom: [], files: [], walBytes: 0, rows: captureRows ? "" : "not asked (policy.captureLostRows is off)",
                transactions: 0, rowCount: nil))
        // 1. The old primary: proven unable to write, and its disk, if it can be read.
        var listing: [DataFile]?
        do {
            let status = try await driver.status(of: instance)
            if status.isWritablePrimary {
                throw FailoverError.refused(
                    "capture-divergence refused: \(instance.name) accepts writes; a former primary is captured stopped and fenced. Fence site \(site), then resume."
                )
            }
            if driver is LocalPostgresDriver && !HostAddress.isLocal(instance.host) {
                // A managed site's member on another host: this host's driver cannot read its data directory.
                b.diskReadable = false
                b.note("\(instance.name) is on \(instance.host), not this host: its pg_wal cannot be read from here")
            } else if status.running && !status.reachable {
                b.diskReadable = false
                b.note("\(instance.name) could not be reached (\(status.seen)): its data directory was not read")
            } else {
                b.control = try await driver.controlData(of: instance)
                listing = try await driver.dataFiles(of: instance, in: "pg_wal")
                if b.control == nil || listing == nil {
                    b.diskReadable = false
                    b.note(
                        "\(instance.name)'s data directory \(instance.dataDirectory) holds no cluster (its disk is gone or was replaced)")
                }
                if status.running { b.note("\(instance.name) ran as a standby during the capture; its WAL past the fork cannot change") }
            }
        } catch let e as FailoverError where e.code == .refused {
            throw e
        } catch {
            b.diskReadable = false
            b.note("\(instance.name)'s data directory could not be read: \(error)")
        }
        b.manifest.systemIdentifier = b.control?.systemIdentifier
        let segmentNames = (listing ?? []).filter { WALSegments.segment(of: $0.name, segmentSize: 16 << 20) != nil }
        let sizes = Dictionary(grouping: segmentNames.map(\.bytes), by: { $0 }).mapValues(\.count)
        let segmentSize = sizes.max { $0.value < $1.value }?.key ?? (16 << 20)
        b.manifest.segmentSize = segmentSize
        b.present = Set(segmentNames.filter { $0.bytes == segmentSize }.map(\.name))

        // 2. The histories and the fork.
        let sourceHistory = try await sourceHistory(&b)
        let historyTimelines = (listing ?? []).compactMap { f -> Int? in
            f.name.hasSuffix(".history") ? Int(f.name.prefix(8), radix: 16) : nil
        }
        var oldTimeline = max(b.control?.timeline ?? 0, historyTimelines.max() ?? 0)
        if oldTimeline == 0 {
            oldTimeline = sourceHistory?.entries.last?.timeline ?? 1
            b.note("\(instance.name)'s timeline is taken to be \(oldTimeline), the one the new primary's history left")
        }
        b.manifest.history = try await history(oldTimeline, of: instance, readable: b.diskReadable, into: "", &b)
        guard let sourceHistory else {
            b.note(
                "no primary to compare timelines with: the fork is unknown; the listing starts at the last checkpoint and every transaction committed after it is listed"
            )
            return try await capture(&b, fork: b.control?.redoLSN ?? .zero, knownFork: false)
        }
        b.manifest.sourceHistory = sourceHistory
        guard let fork = b.manifest.history.fork(from: sourceHistory) else {
            b.note(
                "\(instance.name) is on timeline \(oldTimeline), which \(source?.name ?? "the primary")'s history (timeline \(sourceHistory.timeline)) contains up to its end: nothing diverged"
            )
            return b.manifest
        }
        b.manifest.fork = fork.lsn
        return try await capture(&b, fork: fork.lsn, knownFork: true)
    }

    /// The source's timeline history (from its pg_wal, else the repository); nil without a source.
    func sourceHistory(_ b: inout Build) async throws -> TimelineHistory? {
        guard let source else { return nil }
        let status: InstanceStatus
        do { status = try await driver.status(of: source) } catch {
            b.note("\(source.name) could not be probed (\(error)); its history is read from the repository")
            return try await history(nil, of: source, readable: false, into: "source", &b)
        }
        let tli = status.inRecovery ? (status.walReceiver?.receivedTimeline ?? status.timeline) : status.timeline
        return try await history(tli, of: source, readable: status.running, into: "source", &b)
    }

    /// Timeline `tli`'s history, from `instance`'s pg_wal when `readable`, else from the repository.
    func history(_ tli: Int?, of instance: Instance, readable: Bool, into sub: String, _ b: inout Build) async throws -> TimelineHistory {
        guard let tli, tli > 1 else { return TimelineHistory(timeline: tli ?? 1) }
        let name = TimelineHistory.fileName(tli)
        let target = sub.isEmpty ? partial : partial + "/" + sub
        var file: CopiedFile?
        if readable { file = try await driver.copyFiles(of: instance, ["pg_wal/" + name], into: target).first }
        if file == nil { file = try await driver.fetchArchivedWAL(name, using: archiveReader, into: target) }
        guard let file, let text = try? String(contentsOfFile: target + "/" + file.path, encoding: .utf8),
            let history = TimelineHistory(timeline: tli, text: text)
        else {
            throw FailoverError.failed(
                "capture-divergence: the history of timeline \(tli) (\(name)) is neither in \(instance.name)'s pg_wal nor in the repository; without it the fork cannot be found. Check the repository (pgbackrest repo-ls archive/\(plan.repository.stanza))."
            )
        }
        b.manifest.files.append(CopiedFile(path: (sub.isEmpty ? "" : sub + "/") + file.path, bytes: file.bytes, sha256: file.sha256))
        return history
    }
}

extension LostCapture {
    /// Copies the WAL around the fork, reads it, and records what it holds.
    func capture(_ b: inout Build, fork: LSN, knownFork: Bool) async throws -> CaptureManifest {
        let size = b.manifest.segmentSize
        var end: LSN?
        if b.diskReadable {
            end = try await driver.endOfWAL(instance)
            if let end, knownFork, end <= fork {
                b.note("\(instance.name)'s WAL ends at \(end), at or before the fork at \(fork): nothing diverged")
                b.manifest.end = end
                return b.manifest
            }
        }
        b.manifest.diverged = true
        b.manifest.end = end
        var first = fork.value / size
        if let redo = b.control?.redoLSN, redo < fork { first = min(first, redo.value / size) }
        var last: UInt64
        if let known = end {
            last = (known.value == 0 ? 0 : known.value - 1) / size
            let needed = (last - first + 1) * size
            if needed > maxBytes { throw overBound(needed, from: WALSegments.start(of: first, segmentSize: size), to: known, fork: fork) }
            for s in first...last where !(try await obtain(s, &b)) {
                b.note(
                    "segment \(segmentName(s, b)) is neither in \(instance.name)'s pg_wal nor in the repository: WAL from \(WALSegments.start(of: s, segmentSize: size)) is unknown"
                )
                guard s > first else {
                    throw FailoverError.failed(
                        "capture-divergence: no WAL of \(instance.name) at the fork \(fork) could be found (pg_wal or the repository)")
                }
                last = s - 1
                end = WALSegments.start(of: s, segmentSize: size)
                break
            }
        } else {
            // Only the repository: segments of the old timeline from the fork on, as far as it has them.
            last = first
            guard try await obtain(first, &b) else {
                throw FailoverError.failed(
                    "capture-divergence: \(instance.name)'s data directory cannot be read and the repository has no WAL of its timeline at the fork \(fork): nothing to capture. Resume with --skip-lost-capture to repair it without a capture (audited)."
                )
            }
            while (last - first + 2) * size <= maxBytes, try await obtain(last + 1, &b) { last += 1 }
            b.note("captured from the repository only: WAL \(instance.name) wrote but never archived is not known")
        }
        // Back to a snapshot taken before every transaction open at the fork had its xid.
        let dump = WALDump(binDirectory: binDirectory)
        while knownFork {
            let start = WALSegments.start(of: first, segmentSize: size)
            let head = try await dump.read(
                partial + "/pg_wal", history: b.manifest.history, segmentSize: size, from: start, to: fork, lastSegment: last)
            let (covered, open) = DivergenceAnalysis.coversOpenTransactions(head.records, fork: fork, start: start)
            if covered { break }
            guard first > 0, (last - first + 2) * size <= maxBytes, try await obtain(first - 1, &b) else {
                b.manifest.uncovered = open
                let who =
                    open.isEmpty
                    ? "no checkpoint or running-transactions snapshot lies between \(start) and the fork, so a transaction open at the fork"
                    : "transactions \(open.map(String.init).joined(separator: ", ")) were open at the fork and"
                b.note(
                    "\(who) may have changed rows before \(start), the earliest WAL captured (pg_wal, the repository and policy.lostCaptureMaxBytes allow no more): those earlier changes are not listed"
                )
                break
            }
            first -= 1
        }
        b.manifest.start = WALSegments.start(of: first, segmentSize: size)
        b.manifest.lastSegment = last
        b.manifest.walBytes = b.manifest.files.filter { $0.path.hasPrefix("pg_wal/") && !$0.path.hasSuffix(".history") }.reduce(0) {
            $0 + $1.bytes
        }
        midpoint()

        let reading = try await dump.read(
            partial + "/pg_wal", history: b.manifest.history, segmentSize: size, from: b.manifest.start!, to: end, lastSegment: last)
        b.manifest.end = end ?? reading.endOfWAL ?? reading.records.last?.lsn
        for p in reading.problems { b.note("pg_waldump: \(p)") }
        let analysis = DivergenceAnalysis(entries: reading.records, fork: fork, start: b.manifest.start!)
        try await readTransactionStatus(analysis, &b)
        try await nameRelations(analysis, &b)
        if captureRows { try await decodeRows(analysis, records: reading.records, &b) }
        let report = LostReport.instanceReport(manifest: b.manifest, analysis: analysis, directory: partial)
        b.manifest.transactions = report.transactions.count
        b.manifest.rowCount = report.totals.rows
        return b.manifest
    }

    func segmentName(_ s: UInt64, _ b: Build) -> String {
        WALSegments.name(
            timeline: b.manifest.history.timeline(ofSegment: s, segmentSize: b.manifest.segmentSize), segment: s,
            segmentSize: b.manifest.segmentSize)
    }

    /// Puts segment `s` into the capture: from the old primary's pg_wal, else from the repository.
    func obtain(_ s: UInt64, _ b: inout Build) async throws -> Bool {
        let name = segmentName(s, b)
        if b.manifest.files.contains(where: { $0.path == "pg_wal/" + name }) { return true }
        var file: CopiedFile?
        if b.diskReadable && b.present.contains(name) {
            file = try await driver.copyFiles(of: instance, ["pg_wal/" + name], into: partial).first
            if file != nil, !b.manifest.walFrom.contains("pg_wal of \(instance.name)") {
                b.manifest.walFrom.append("pg_wal of \(instance.name)")
            }
        }
        if file == nil {
            file = try await driver.fetchArchivedWAL(name, using: archiveReader, into: partial)
            if file != nil, !b.manifest.walFrom.contains("the repository") { b.manifest.walFrom.append("the repository") }
        }
        guard let file else { return false }
        b.manifest.files.append(file)
        return true
    }

    func overBound(_ needed: UInt64, from: LSN, to: LSN, fork: LSN) -> FailoverError {
        .refused(
            "capture-divergence refused: \(instance.name)'s WAL from \(from) (the segment of the last checkpoint before the fork at \(fork)) to its end at \(to) is \(needed) bytes, over policy.lostCaptureMaxBytes (\(maxBytes)); nothing was captured and the repair did not run. Raise policy.lostCaptureMaxBytes, or run again with --skip-lost-capture to repair \(instance.name) without a capture (audited): what it committed after the fork would then be lost without a list."
        )
    }

    /// Copies the pg_xact pages of the transactions involved.
    func readTransactionStatus(_ a: DivergenceAnalysis, _ b: inout Build) async throws {
        guard b.diskReadable else { return }
        let xids = a.lost.flatMap(\.allXids) + a.inDoubt.map(\.xid) + a.openAtEnd
        let files = Set(xids.map { CLOG.segmentName(of: $0) }).sorted().map { "pg_xact/" + $0 }
        guard !files.isEmpty else { return }
        b.manifest.files += try await driver.copyFiles(of: instance, files, into: partial)
    }

    /// Names the relations the lost and in-doubt transactions changed, in the new primary's catalog.
    func nameRelations(_ a: DivergenceAnalysis, _ b: inout Build) async throws {
        guard let source else { return }
        let query = LostReport.catalogQuery(a, includeCreatedAfterFork: false, catalogFiles: captureRows)
        guard !query.nodes.isEmpty || !query.oids.isEmpty || captureRows else { return }
        do {
            b.manifest.sourceCatalog = try await driver.catalogNames(on: source, query)
        } catch {
            b.note("the relations could not be named in \(source.name)'s catalog: \(error)")
        }
    }

    /// Decodes the lost transactions' row changes on an isolated copy of the old primary.
    func decodeRows(_ a: DivergenceAnalysis, records: [WALEntry], _ b: inout Build) async throws {
        guard b.diskReadable, let control = b.control else {
            b.manifest.rows = "unavailable: \(instance.name)'s data directory cannot be read"
            return
        }
        let slotFiles = (try await driver.dataFiles(of: instance, in: "pg_replslot") ?? []).filter {
            $0.name.hasPrefix(LostSlotState.slotPrefix) && $0.name.hasSuffix("/state")
        }
        let copied = try await driver.copyFiles(of: instance, slotFiles.map { "pg_replslot/" + $0.name }, into: partial)
        b.manifest.files += copied
        let slots = copied.compactMap { SlotStateFile.read(partial + "/" + $0.path) }
        guard !slots.isEmpty else {
            b.manifest.rows =
                "unavailable: \(instance.name) has no failoverd logical slot (pg_replslot/\(LostSlotState.slotPrefix)*); it is created by the sandbox or the lost-slot step before a failover can be decoded"
            return
        }
        if let fork = b.manifest.fork {
            for s in slots where s.confirmedFlush > fork {
                b.note("slot \(s.name) was confirmed to \(s.confirmedFlush), past the fork at \(fork): changes before that are not decoded")
            }
        }
        let size = b.manifest.segmentSize
        let from = min(control.redoLSN, slots.map(\.restartLSN).min() ?? control.redoLSN)
        let last = b.manifest.lastSegment ?? from.value / size
        let histories = (b.manifest.history.entries.map(\.timeline) + [b.manifest.history.timeline]).filter { $0 > 1 }
        let wal = (from.value / size...max(last, from.value / size)).map { segmentName($0, b) } + histories.map(TimelineHistory.fileName)
        var keep = b.manifest.sourceCatalog?.catalogFiles ?? [:]
        for r in records {
            if case .storageCreate(let node) = r.event { keep[node.database, default: []].append(node.relation) }
        }
        let request = IsolatedCopyRequest(
            keepFiles: keep, walFiles: wal, names: LostReport.catalogQuery(a, includeCreatedAfterFork: true, catalogFiles: false),
            decode: true)
        do {
            let answer = try await driver.inspectIsolatedCopy(of: instance, request)
            let lostXids = Set(a.lost.map(\.xid))
            b.manifest.oldCatalog = answer.names
            b.manifest.changes = answer.changes.filter { lostXids.contains($0.xid) }
            let tables = Set(b.manifest.changes.compactMap { RowChange.parse($0)?.table })
            b.manifest.keys = answer.keys.filter { tables.contains($0.key) }
            b.manifest.replicaIdentity = answer.replicaIdentity.filter { tables.contains($0.key) }
            b.manifest.rows = "decoded"
            let decodedXids = Set(b.manifest.changes.map(\.xid))
            let missing = a.lost.filter { !decodedXids.contains($0.xid) && $0.relations.contains { $0.kind != "catalog" && $0.rows > 0 } }
            if !missing.isEmpty {
                b.note(
                    "no row changes were decoded for transactions \(missing.map { String($0.xid) }.joined(separator: ", ")) (a database without a failoverd slot, or changes only to catalogs)"
                )
            }
        } catch {
            b.manifest.rows = "unavailable: \(error)"
        }
    }
}

/// A replication slot's state file (`pg_replslot/NAME/state`, PostgreSQL 15's ReplicationSlotOnDisk).
struct SlotStateFile {
    var name: String
    var database: UInt32
    var restartLSN: LSN
    var confirmedFlush: LSN

    /// Reads the file; nil when it is not a version-2 slot state of PostgreSQL 15.
    static func read(_ path: String) -> SlotStateFile? {
        guard let data = FileManager.default.contents(atPath: path), data.count >= 120 else { return nil }
        let bytes = [UInt8](data)
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * UInt32($1)) } }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * UInt64($1)) } }
        guard u32(0) == 0x0105_1CA1, u32(8) == 2 else { return nil }
        let name = String(decoding: bytes[16..<80].prefix { $0 != 0 }, as: UTF8.self)
        return SlotStateFile(name: name, database: u32(80), restartLSN: LSN(u64(96)), confirmedFlush: LSN(u64(112)))
    }
}

/// Transaction status in pg_xact: two bits per transaction, 32768 per 8 kB page, 32 pages per segment file.
enum CLOG {
    static let transactionsPerSegment: UInt32 = 32768 * 32

    /// The pg_xact segment file holding `xid`'s status: `0000`.
    static func segmentName(of xid: UInt32) -> String { String(format: "%04X", xid / transactionsPerSegment) }

    /// `committed`, `aborted`, `in progress` or `subcommitted` for `xid` in the pg_xact files under `directory`; nil when not captured.
    static func status(of xid: UInt32, in directory: String) -> String? {
        let path = directory + "/pg_xact/" + segmentName(of: xid)
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let offset = UInt64((xid % transactionsPerSegment) / 4)
        guard (try? handle.seek(toOffset: offset)) != nil, let byte = try? handle.read(upToCount: 1)?.first else { return nil }
        switch (byte >> ((xid % 4) * 2)) & 3 {
        case 1: return "committed"
        case 2: return "aborted"
        case 3: return "subcommitted"
        default: return "in progress"
        }
    }
}
