import Foundation

/// A failover's fork, journaled with its promotion: where the promoted instance's new timeline left the
/// previous one, from the new timeline's history file.
enum ForkRecord {
    /// Reads the promoted instance's history file and adds the switch position to `promotion`; a history
    /// that cannot be read is noted, never a failure of the promotion.
    static func journal(_ promotion: inout Promotion, of instance: Instance, driver: any InstanceDriver) async {
        do {
            guard let history = try await read(timeline: promotion.timeline, of: instance, driver: driver) else {
                promotion.forkNote = "\(TimelineHistory.fileName(promotion.timeline)) is not in \(instance.name)'s pg_wal"
                return
            }
            guard let entry = history.entries.last(where: { $0.timeline == promotion.previousTimeline }) ?? history.entries.last else {
                promotion.forkNote = "\(TimelineHistory.fileName(promotion.timeline)) names no earlier timeline"
                return
            }
            promotion.switchLSN = entry.end
        } catch {
            promotion.forkNote = "\(TimelineHistory.fileName(promotion.timeline)) of \(instance.name) could not be read: \(error)"
        }
    }

    /// Timeline `tli`'s history from `instance`'s pg_wal; nil when it has none.
    static func read(timeline tli: Int, of instance: Instance, driver: any InstanceDriver) async throws -> TimelineHistory? {
        guard tli > 1 else { return TimelineHistory(timeline: 1) }
        let scratch = NSTemporaryDirectory() + "/failoverd-history-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let name = "pg_wal/" + TimelineHistory.fileName(tli)
        guard try await driver.copyFiles(of: instance, [name], into: scratch).first != nil,
            let text = try? String(contentsOfFile: scratch + "/" + name, encoding: .utf8)
        else { return nil }
        return TimelineHistory(timeline: tli, text: text)
    }
}
