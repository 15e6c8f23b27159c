import ArgumentParser
import FailoverEngine
import Foundation

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Query the append-only, hash-chained audit log, or verify it.",
        subcommands: [AuditList.self, AuditVerify.self], defaultSubcommand: AuditList.self)
}

struct AuditList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Print audit events, filtered (the default).")

    @Option(help: "Only this run.") var run: String?
    @Option(help: "Only this site.") var site: String?
    @Option(help: "Only events at or after this ISO 8601 time (e.g. 2026-11-27T04:00:00Z).") var since: String?
    @Option(help: "Only this kind (run-start, run-end, step-start, step-end, step-skip, step-fail, refusal, lock-takeover, override…).")
    var kind: String?
    @Option(help: "At most the latest N events.") var limit: Int?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            var sinceNormalized: String?
            if let since {
                guard let date = try? Date(since, strategy: .iso8601) ?? Date(since + "T00:00:00Z", strategy: .iso8601) else {
                    throw FailoverError.invalid("--since \(since): expected an ISO 8601 time such as 2026-11-27T04:00:00Z")
                }
                sinceNormalized = Journal.timestamp(date)
            }
            let journal = try Journal(stateDirectory: state.state)
            let events = try AuditLog(journal: journal).query(.init(run: run, site: site, since: sinceNormalized, kind: kind, limit: limit))
            if json { return try printJSON(events) }
            for e in events {
                print("\(e.seq)\t\(e.at)\t\(e.runID ?? "-")\t\(e.site ?? "-")\t\(e.actor)\t\(e.kind)\t\(e.details)")
            }
        }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Walk the hash chain: exit 0 when intact, 1 naming the first broken seq.")

    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            let v = try AuditLog(journal: try Journal(stateDirectory: state.state)).verify()
            if v.intact {
                print("audit log intact: \(v.checked) events, hash chain verified")
            } else {
                print("audit log BROKEN at seq \(v.brokenSeq!): \(v.reason!) (\(v.checked) events verified before it)")
                throw ExitCode(1)
            }
        }
    }
}
