import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs pg_waldump on this host over a capture's WAL and parses what it prints.
@_spi(Benchmarks) public struct WALDump: Sendable {
    /// PostgreSQL's bin directory on this host.
    let binDirectory: String

    /// How pg_waldump says it reached the end of valid WAL (what follows is not a record).
    static let endMarkers = [
        "invalid record length at ", "invalid magic number", "record with incorrect prev-link", "contrecord is requested by",
        "invalid record offset at ", "unexpected pageaddr", "incorrect resource manager data checksum", "invalid resource manager ID",
    ]

    /// The resource managers the report reads.
    @_spi(Benchmarks) public static let resourceManagers = ["Transaction", "Heap", "Heap2", "Storage", "XLOG", "Standby"]

    /// What one read found.
    struct Reading: Sendable {
        var records: [WALEntry] = []
        /// Where valid WAL ended, when the read went past it (`invalid record length at X`).
        var endOfWAL: LSN?
        /// What pg_waldump could not read, in its words.
        var problems: [String] = []
    }

    /// The records from `start` to `end` (to the end of valid WAL when nil) in the segments of `directory`,
    /// reading each segment from the timeline `history` says it belongs to.
    func read(
        _ directory: String, history: TimelineHistory, segmentSize: UInt64, from start: LSN, to end: LSN?, lastSegment: UInt64
    ) async throws -> Reading {
        let first = start.value / segmentSize
        let last = end.map { ($0.value == 0 ? 0 : $0.value - 1) / segmentSize } ?? lastSegment
        guard first <= last else { return Reading() }
        // Consecutive segments of one timeline: one pg_waldump each.
        var groups: [(tli: Int, from: UInt64, to: UInt64)] = []
        for s in first...last {
            let tli = history.timeline(ofSegment: s, segmentSize: segmentSize)
            if let g = groups.last, g.tli == tli { groups[groups.count - 1].to = s } else { groups.append((tli, s, s)) }
        }
        var reading = Reading()
        for (i, g) in groups.enumerated() {
            let from = max(start, WALSegments.start(of: g.from, segmentSize: segmentSize))
            let until: LSN? = i == groups.count - 1 ? end : WALSegments.start(of: g.to + 1, segmentSize: segmentSize)
            let part = try await run(directory, timeline: g.tli, from: from, to: until)
            reading.records += part.records
            reading.problems += part.problems
            if let e = part.endOfWAL {
                reading.endOfWAL = e
                break
            }
        }
        return reading
    }

    /// One pg_waldump over one timeline.
    func run(_ directory: String, timeline: Int, from: LSN, to: LSN?) async throws -> Reading {
        var arguments = ["--path", directory, "--timeline", String(timeline), "--start", from.description]
        if let to { arguments += ["--end", to.description] }
        for r in Self.resourceManagers { arguments += ["--rmgr", r] }
        let output = NSTemporaryDirectory() + "/failoverd-waldump-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(output, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FailoverError.failed("cannot create \(output): \(String(cString: strerror(errno)))") }
        defer {
            close(fd)
            unlink(output)
        }
        let result = try await CommandRunner(user: nil, defaultTimeout: 6 * 3600).run(
            binDirectory + "/pg_waldump", arguments, environment: ["TZ": "UTC"], standardOutput: fd)
        let data = FileManager.default.contents(atPath: output) ?? Data()
        var reading = Reading()
        reading.records = WALDumpScanner.entries(data)
        if !result.succeeded {
            let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            // pg_waldump ends at the first invalid record: "error in WAL record at A: invalid record length at B: wanted 24, got 0".
            if Self.endMarkers.contains(where: { message.contains($0) }) {
                let found = message.matches(of: /[0-9A-F]+\/[0-9A-F]+/).compactMap { LSN(String(message[$0.range])) }
                reading.endOfWAL = found.max() ?? reading.records.last?.lsn
            } else {
                reading.problems.append(message.isEmpty ? "pg_waldump exited with \(result.exitCode)" : message)
                if message.contains("could not find file") || message.contains("could not open file") {
                    reading.endOfWAL = reading.records.last?.lsn
                }
            }
        }
        return reading
    }
}
