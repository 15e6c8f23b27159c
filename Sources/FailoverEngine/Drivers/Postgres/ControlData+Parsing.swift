import Foundation

extension ControlData {
    /// Parses the output of `pg_controldata` (run with LC_ALL=C so the labels are English).
    ///
    /// - Returns: nil when a field failoverd needs is missing or malformed.
    public static func parse(_ output: String) -> ControlData? {
        var fields: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let state = fields["Database cluster state"], let identifier = fields["Database system identifier"],
            let timeline = fields["Latest checkpoint's TimeLineID"].flatMap({ Int($0) }),
            let checkpoint = fields["Latest checkpoint location"].flatMap({ LSN($0) }),
            let redo = fields["Latest checkpoint's REDO location"].flatMap({ LSN($0) })
        else { return nil }
        return ControlData(state: state, systemIdentifier: identifier, timeline: timeline, checkpointLSN: checkpoint, redoLSN: redo)
    }
}
