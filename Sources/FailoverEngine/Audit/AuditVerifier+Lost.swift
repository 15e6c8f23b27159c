import Foundation
import GRDB

extension AuditLog {
    /// Every capture the log records (`lost-capture`) is still what was audited: its manifest hashes to the
    /// SHA-256 the event holds, and every file the manifest lists to the SHA-256 it lists. A capture edited,
    /// truncated or removed since is named with the event's sequence number.
    static func checkCaptures(_ db: Database, stateDirectory: String) throws -> (captures: Int, problems: [Problem]) {
        var problems: [Problem] = []
        var checked = 0
        let rows = try Row.fetchCursor(db, sql: "SELECT seq, details FROM audit_events WHERE kind = 'lost-capture' ORDER BY seq")
        var manifestsSeen: [String: String] = [:]
        while let row = try rows.next() {
            let seq: Int64 = row["seq"]
            let text: String = row["details"]
            guard let details = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)),
                let relative = details["directory"],
                let digest = details["manifestSHA256"]
            else {
                problems.append(
                    Problem(seq: seq, reason: "the lost-capture event at seq \(seq) names no capture directory or manifest digest"))
                continue
            }
            checked += 1
            let directory = stateDirectory + "/" + relative
            guard let manifest = FileManager.default.contents(atPath: directory + "/" + CaptureManifest.fileName) else {
                problems.append(
                    Problem(
                        seq: seq,
                        reason:
                            "the capture \(relative) recorded at seq \(seq) is gone (no \(CaptureManifest.fileName)): the evidence of what that former primary committed after the fork was removed"
                    ))
                continue
            }
            let actual = manifestsSeen[relative] ?? AuditLog.sha256(bytes: [UInt8](manifest))
            manifestsSeen[relative] = actual
            guard actual == digest else {
                problems.append(
                    Problem(
                        seq: seq,
                        reason:
                            "the manifest of capture \(relative) has SHA-256 \(actual), but the event at seq \(seq) recorded \(digest): it was changed"
                    ))
                continue
            }
            guard let m = try? JSONDecoder().decode(CaptureManifest.self, from: manifest) else { continue }
            for file in m.files {
                let path = directory + "/" + file.path
                guard let (bytes, sha) = try? CaptureFiles.digest(of: path) else {
                    problems.append(Problem(seq: seq, reason: "capture \(relative): \(file.path) is missing (recorded at seq \(seq))"))
                    continue
                }
                if bytes != file.bytes || sha != file.sha256 {
                    problems.append(
                        Problem(
                            seq: seq,
                            reason:
                                "capture \(relative): \(file.path) changed since it was captured (SHA-256 \(sha), \(bytes) bytes; recorded \(file.sha256), \(file.bytes) bytes)"
                        ))
                }
            }
        }
        return (checked, problems)
    }
}
