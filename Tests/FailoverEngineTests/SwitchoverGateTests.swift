import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// The switchover gate against real PostgreSQL: a streaming target that is over policy.maxLagBytes for a
/// moment (as under write load) is waited for, within the step timeout; `check` says what it sees at once.
@Suite(.serialized) struct SwitchoverGateTests {
    @Test("a streaming target over policy.maxLagBytes: check refuses at once, a run waits until it catches up, then switches over")
    func aLaggingStreamingTargetIsWaitedFor() async throws {
        try await SandboxFixture.with(CheckTests.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            // dr-0 keeps receiving but stops replaying: about 4 MB behind, with a policy of 1 MB.
            _ = try await fx.sql(dr, "SELECT pg_wal_replay_pause()")
            _ = try await fx.sql(prod, "CREATE TABLE pad AS SELECT g, repeat('x', 400) AS note FROM generate_series(1, 8000) AS g")
            let plan = try Self.withPolicy(
                fx.planFile("switchover", [Transition(action: .switchover, to: "dr")]), maxLagBytes: 1 << 20, stepTimeoutSeconds: 120)
            _ = try await Poll.until("dr-0 more than 1 MB behind", timeout: 60, interval: 0.05) { () -> Bool? in
                let p = try await fx.driver.status(of: prod)
                let d = try await fx.driver.status(of: dr)
                guard let top = p.currentLSN, let replay = d.replayLSN, d.walReceiver?.status == "streaming" else { return nil }
                return top.bytes(after: replay) > 2 << 20 ? true : nil
            }

            // check reports what it sees now, and does not wait.
            let check = try await CLI.run(["check", plan, "--state", fx.state])
            #expect(check.status == 3, "\(check.stdout) \(check.stderr)")
            #expect(check.stdout.contains("would refuse: switchover refused: dr-0 has replayed"), "\(check.stdout)")
            #expect(!check.stdout.contains("still over policy after"))

            // A run waits in the gate: its first step is started and nothing else has happened.
            let run = try CLI.start(["run", plan, "--state", fx.state, "--quiet"])
            defer { run.signal(SIGKILL) }
            let journal = try Journal(stateDirectory: fx.state)
            let waiting = try await Wait.until(timeout: 60, interval: 0.05) { () -> Bool? in
                guard let r = try journal.unfinishedRun(), let first = try journal.steps(of: r.id).first else { return nil }
                return first.status == .started ? true : nil
            }
            #expect(waiting == true, "the run never reached its gate: \(run.outputSoFar())")
            #expect(try await fx.driver.status(of: prod).isWritablePrimary, "the gate acted before the lag was within policy")
            _ = try await fx.sql(dr, "SELECT pg_wal_replay_resume()")

            let result = await run.wait()
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            let r = try #require(try journal.lastRun())
            let gate = try #require(try journal.steps(of: r.id).first)
            #expect(gate.step.kind == .gateSwitchover && gate.status == .done)
            let lag = try #require(gate.evidence["lagBytes"].flatMap { UInt64($0) })
            #expect(lag <= 1 << 20, "the gate passed at a lag of \(lag) bytes")
            #expect(try await fx.driver.status(of: dr).isWritablePrimary)
            #expect(try await fx.sql(dr, "SELECT count(*) FROM t").first?.first == "5")
        }
    }

    /// `path` rewritten with the given policy; returns the path.
    static func withPolicy(_ path: String, maxLagBytes: Int, stepTimeoutSeconds: Int) throws -> String {
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var policy = json["policy"] as? [String: Any] ?? [:]
        policy["maxLagBytes"] = maxLagBytes
        policy["stepTimeoutSeconds"] = stepTimeoutSeconds
        json["policy"] = policy
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        return path
    }
}
