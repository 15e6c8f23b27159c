import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

extension SandboxFixture {
    /// Writes the fixture's plan with `transitions` (and optional role overrides) to ROOT/NAME.json.
    func planFile(_ name: String, _ transitions: [Transition], roles: [String: Role] = [:]) throws -> String {
        var p = plan
        p.transitions = transitions
        for i in p.sites.indices { if let r = roles[p.sites[i].name] { p.sites[i].role = r } }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = root + "/\(name).json"
        try encoder.encode(p).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The fixture's state directory for failoverd runs.
    var state: String { root + "/state" }

    /// Runs `failoverd ARGS --state STATE` and returns the result.
    func failoverd(_ args: [String]) async throws -> CLI.Result {
        try await CLI.run(args + ["--state", state])
    }

    /// Creates table t and inserts rows `ids` on `instance`.
    func insertRows(_ ids: ClosedRange<Int>, on instance: Instance) async throws {
        try await sql(instance, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, note text)")
        for id in ids { try await sql(instance, "INSERT INTO t VALUES ($1, 'row')", [String(id)]) }
    }

    /// Cuts `instance`'s WAL receiver outside failoverd (primary_conninfo emptied with ALTER SYSTEM) and
    /// waits until it is gone.
    func cutReceiver(_ instance: Instance) async throws {
        try await sql(instance, "ALTER SYSTEM SET primary_conninfo = ''")
        try await sql(instance, "SELECT pg_reload_conf()")
        _ = try await Poll.until("\(instance.name)'s receiver to stop", timeout: 60, interval: 0.02) {
            try await driver.status(of: instance).walReceiver == nil ? true : nil
        }
    }

    /// The timeline of a primary, from its current WAL file name.
    func primaryTimeline(_ instance: Instance) async throws -> Int {
        let s = try await driver.status(of: instance)
        #expect(s.isWritablePrimary, "\(instance.name) should accept writes")
        return s.timeline
    }
}
