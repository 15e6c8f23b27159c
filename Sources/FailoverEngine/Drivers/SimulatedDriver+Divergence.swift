import Foundation

/// The divergence-capture primitives of the simulated world: it keeps timelines and positions, not WAL, so
/// a rehearsal journals the fork and what would be captured, and finds no transaction to list.
extension SimulatedDriver {
    /// No WAL files in a simulated data directory; nil when it holds no cluster.
    public func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        try mutate { w in try node(w, instance).hasData ? [] : nil }
    }

    /// Only timeline history files exist: written from the node's switchpoints.
    public func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        let n = try mutate { w in try node(w, instance) }
        var copied: [CopiedFile] = []
        for path in paths {
            guard n.hasData, let text = Self.history(path, timeline: n.timeline, switchpoints: n.switchpoints) else { continue }
            try CaptureFiles.write(Data(text.utf8), to: path, in: localDirectory)
            let (bytes, digest) = try CaptureFiles.digest(of: localDirectory + "/" + path)
            copied.append(CopiedFile(path: path, bytes: bytes, sha256: digest))
        }
        return copied
    }

    /// History files of archived timelines; no segments.
    public func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        let archived = try mutate { w in w }
        guard let tli = Int(name.prefix(8), radix: 16), let points = archived.archivedSwitchpoints[tli],
            let text = Self.history("pg_wal/" + name, timeline: tli, switchpoints: points)
        else { return nil }
        try CaptureFiles.write(Data(text.utf8), to: "pg_wal/" + name, in: localDirectory)
        let (bytes, digest) = try CaptureFiles.digest(of: localDirectory + "/pg_wal/" + name)
        return CopiedFile(path: "pg_wal/" + name, bytes: bytes, sha256: digest)
    }

    /// A simulated catalog names nothing.
    public func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer { CatalogAnswer() }

    /// A simulated world has no data directory to copy.
    public func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        throw FailoverError.failed("simulated: \(instance.name) has no data directory to start an isolated copy of")
    }

    /// Simulated servers run with wal_level=logical and keep no slots.
    public func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState {
        try mutate { w in
            let n = try node(w, instance)
            return LostSlotState(
                walLevel: "logical", inRecovery: n.standbySignal, slots: [], standbyFlushLSNs: [], lastArchivedWAL: nil,
                currentLSN: n.standbySignal ? nil : LSN(n.lsn))
        }
    }

    /// `pg_wal/0000000N.history` of a node on `timeline` whose history left its ancestors at `switchpoints`.
    static func history(_ path: String, timeline: Int, switchpoints: [Int: UInt64]) -> String? {
        let name = (path as NSString).lastPathComponent
        guard name.hasSuffix(".history"), let tli = Int(name.prefix(8), radix: 16), tli == timeline, tli > 1 else { return nil }
        return switchpoints.sorted { $0.key < $1.key }.map { "\($0.key)\t\(LSN($0.value))\tno recovery target specified\n" }.joined()
    }
}
