import Foundation

/// What one capture holds and how it was made: `capture.json`, written last, in `lost/RUN/INSTANCE/`. A
/// capture directory without it is unfinished and never listed.
public struct CaptureManifest: Sendable, Codable, Equatable {
    /// The manifest format.
    public var format = 1
    /// The run that captured.
    public var run: String
    /// The former primary.
    public var instance: String
    /// Its site.
    public var site: String
    /// When the capture was sealed (ISO 8601, UTC).
    public var capturedAt: String
    /// Its system identifier, from pg_control.
    public var systemIdentifier: String?
    /// Its own timeline history.
    public var history: TimelineHistory
    /// The instance whose timeline history defines the fork (the primary at the time).
    public var source: String?
    /// That instance's timeline history.
    public var sourceHistory: TimelineHistory?
    /// Where the two histories part; nil when it could not be known.
    public var fork: LSN?
    /// The old primary has WAL past the fork.
    public var diverged: Bool
    /// Where reading starts (a segment boundary before the fork: the last checkpoint before it, or earlier).
    public var start: LSN?
    /// Where the old primary's valid WAL ends.
    public var end: LSN?
    /// The WAL segment size.
    public var segmentSize: UInt64
    /// The last segment captured.
    public var lastSegment: UInt64?
    /// Where the segments came from (`pg_wal of prod-0`, `the repository`).
    public var walFrom: [String]
    /// Every file of the capture (WAL, pg_xact, history files, slot states), with its SHA-256.
    public var files: [CopiedFile]
    /// Bytes of WAL segments captured.
    public var walBytes: UInt64
    /// Transactions open at the fork whose earlier changes may lie before `start` (no WAL reached back far enough).
    public var uncovered: [UInt32] = []
    /// What the new primary's catalog says of the relations the lost transactions changed.
    public var sourceCatalog: CatalogAnswer?
    /// What the old primary's own catalog (an isolated copy) says of them.
    public var oldCatalog: CatalogAnswer?
    /// Row images: `not asked` (policy.captureLostRows off), `decoded`, or why they are unavailable.
    public var rows: String
    /// The changes failoverd's logical slots decoded on the isolated copy, for the lost transactions only.
    public var changes: [DecodedChange] = []
    /// Key columns by table, from the old catalog.
    public var keys: [String: [String]] = [:]
    /// Replica identity by table, from the old catalog.
    public var replicaIdentity: [String: String] = [:]
    /// What the capture could not do or know, in words.
    public var notes: [String] = []
    /// Transactions the capture found committed after the fork.
    public var transactions: Int
    /// Rows they changed in user tables (nil when a TRUNCATE makes it unknown).
    public var rowCount: Int?

    /// The manifest's file name.
    public static let fileName = "capture.json"

    /// The manifest's bytes: sorted keys, so its SHA-256 (in the audit log) is stable.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    /// The `lost-capture` audit event's details for this capture, sealed in `directory`: where, how many
    /// bytes and transactions, and the manifest's SHA-256 that `audit verify` checks.
    public func auditDetails(directory: String) -> [String: String] {
        let data = FileManager.default.contents(atPath: directory + "/" + Self.fileName) ?? Data()
        var details = [
            "instance": instance, "directory": LostDirectory.relative(run: run, instance: instance), "walBytes": String(walBytes),
            "transactions": String(transactions), "fork": fork?.description ?? "unknown", "diverged": String(diverged),
            "end": end?.description ?? "unknown", "walFrom": walFrom.isEmpty ? "(nothing to copy)" : walFrom.joined(separator: " and "),
            "rows": rows, "manifestSHA256": AuditLog.sha256(bytes: [UInt8](data)), "files": String(files.count),
        ]
        if let rowCount { details["rowCount"] = String(rowCount) }
        return details
    }

    /// Reads the manifest of a capture directory; nil when there is none (unfinished or absent).
    public static func read(directory: String) throws -> CaptureManifest? {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do { return try JSONDecoder().decode(CaptureManifest.self, from: data) } catch {
            throw FailoverError.failed("\(path) is not a capture manifest failoverd can read: \(error)")
        }
    }
}

/// Where captures live in a state directory: `lost/RUN/INSTANCE/`.
public enum LostDirectory {
    /// `STATE/lost`.
    public static func root(_ stateDirectory: String) -> String { stateDirectory + "/lost" }
    /// `STATE/lost/RUN/INSTANCE`.
    public static func capture(_ stateDirectory: String, run: String, instance: String) -> String {
        root(stateDirectory) + "/" + run + "/" + instance
    }
    /// `lost/RUN/INSTANCE`, as the audit log records it.
    public static func relative(run: String, instance: String) -> String { "lost/" + run + "/" + instance }

    /// Every sealed capture in the state directory, oldest run first.
    public static func sealed(_ stateDirectory: String) -> [(directory: String, manifest: CaptureManifest)] {
        let root = root(stateDirectory)
        var found: [(String, CaptureManifest)] = []
        for run in ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted() where !run.hasPrefix(".") {
            for instance in ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + run)) ?? []).sorted()
            where !instance.hasPrefix(".") {
                let dir = root + "/" + run + "/" + instance
                if let m = try? CaptureManifest.read(directory: dir) { found.append((dir, m)) }
            }
        }
        return found
    }
}
