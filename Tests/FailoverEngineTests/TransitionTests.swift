import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// Every v1 action end to end on real PostgreSQL, through the real failoverd executable, with rows written
/// before and checked after.
@Suite(.serialized) struct TransitionTests {
    static let pair = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    @Test func switchoverPromotesOnANewTimelineAndTheOldPrimaryFollows() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...50, on: prod)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let r = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")

            #expect(try await fx.primaryTimeline(dr) == 2)
            try await fx.insertRows(51...51, on: dr)
            try await fx.waitForStreaming(prod, from: dr)
            try await fx.waitForRow(51, on: prod)
            #expect(try await fx.sql(prod, "SELECT count(*) FROM t").first?.first == "51")
            let status = try StatusReport.read(stateDirectory: fx.state)
            #expect(status.sites.map { "\($0.name)=\($0.role)" } == ["dr=primary", "prod=streaming-standby"])
            // The demotion token is evidence in the journal and the audit log.
            let tokens = try AuditLog(journal: Journal(stateDirectory: fx.state)).query(.init(kind: .stepEnd)).filter {
                $0.details.contains("evidence.demotionToken")
            }
            #expect(tokens.count >= 2)
        }
    }

    @Test func switchoverGateRefusesACutReceiverAndChangesNothing() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            try await fx.cutReceiver(dr)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let r = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(r.status == 3)
            #expect(r.stderr.contains("switchover refused: dr-0 is not streaming from prod-0"))
            #expect(r.stderr.contains("Nothing was changed"))
            // Nothing changed: prod-0 still takes writes on timeline 1, dr-0 is still a standby.
            #expect(try await fx.primaryTimeline(prod) == 1)
            try await fx.insertRows(6...6, on: prod)
            #expect(try await fx.driver.status(of: dr).inRecovery)
            let status = try StatusReport.read(stateDirectory: fx.state)
            #expect(status.lastRun?.outcome == .refused)
            #expect(status.sites.map(\.role) == ["streaming-standby", "primary"])
        }
    }

    @Test func failoverFencesThenRewindRemovesTheDivergedRows() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...10, on: prod)
            try await fx.waitForRow(10, on: dr)
            // Cut dr-0 off, then commit rows only prod-0 will have: they diverge at failover.
            try await fx.cutReceiver(dr)
            try await fx.insertRows(1000...1004, on: prod)
            // prod-0 dies: a crash stop archives nothing more (a clean stop would switch and archive the last
            // segment, and the archive standby would replay it: no divergence).
            try await fx.driver.stop(prod, mode: .immediate)

            let plan = try fx.planFile(
                "failover-rewind", [Transition(action: .failover, to: "dr"), Transition(action: .rewind, site: "prod", source: "dr")])
            let r = try await fx.failoverd(["run", plan, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")

            #expect(try await fx.primaryTimeline(dr) == 2)
            try await fx.insertRows(11...11, on: dr)
            try await fx.waitForStreaming(prod, from: dr)
            try await fx.waitForRow(11, on: prod)
            // dr-0 still restores from the archive: under load prod-0's archive_timeout can ship a first
            // row before the crash, and that row is then on both. The rewound prod-0 holds exactly what dr-0 holds.
            var diverged = 0
            for id in 1000...1004 {
                let onDR = try await fx.hasRow(id, on: dr)
                if !onDR { diverged += 1 }
                #expect(try await fx.hasRow(id, on: prod) == onDR, "row \(id): on dr-0 \(onDR), and the rewind left prod-0 otherwise")
            }
            #expect(diverged > 0, "every row reached dr-0 before the crash: nothing diverged, the rewind was not tested")
            #expect(try await fx.hasRow(10, on: prod))
            let journal = try Journal(stateDirectory: fx.state)
            let run = try #require(try journal.lastRun())
            let steps = try journal.steps(of: run.id)
            #expect(steps.first { $0.step.kind == .fence }?.evidence["reachable"] == "false")
            let estimate = steps.last { $0.step.kind == .recordRoles && $0.step.action == .failover }?.evidence["walLossEstimateBytes"]
            #expect(
                (estimate.flatMap { UInt64($0) } ?? 0) > 0,
                "the engine should report the WAL it could not get: \(String(describing: estimate))")
            #expect(steps.first { $0.step.kind == .rewind }?.evidence["pgRewind"]?.isEmpty == false)
            #expect(try journal.recordedRoles() == ["dr": .primary, "prod": .streamingStandby])
        }
    }

    @Test func aRewindThatPgRewindCannotDoFallsBackToADeltaRestore() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...10, on: prod)
            try await fx.waitForRow(10, on: dr)
            try await fx.cutReceiver(dr)
            try await fx.insertRows(1000...1004, on: prod)
            try await fx.driver.stop(prod, mode: .immediate)
            let failover = try fx.planFile("failover", [Transition(action: .failover, to: "dr")])
            #expect(try await fx.failoverd(["run", failover, "--quiet"]).status == 0)
            // pg_rewind can no longer read the source's files: the rewind role loses its grants.
            for function in [
                "pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)", "pg_read_binary_file(text)",
                "pg_read_binary_file(text, bigint, bigint, boolean)",
            ] {
                try await fx.sql(dr, "REVOKE EXECUTE ON FUNCTION pg_catalog.\(function) FROM rewinder")
            }
            let rewind = try fx.planFile(
                "rewind", [Transition(action: .rewind, site: "prod", source: "dr")], roles: ["prod": .fenced, "dr": .primary])
            let r = try await fx.failoverd(["run", rewind, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")

            let journal = try Journal(stateDirectory: fx.state)
            let run = try #require(try journal.lastRun())
            let step = try #require(try journal.steps(of: run.id).first { $0.step.kind == .rewind })
            #expect(step.evidence["fallback"] == "delta restore from the repository")
            #expect(step.evidence["pgRewind"]?.hasPrefix("failed") == true)
            try await fx.insertRows(11...11, on: dr)
            try await fx.waitForStreaming(prod, from: dr)
            try await fx.waitForRow(11, on: prod)
            for id in 1000...1004 { #expect(try await !fx.hasRow(id, on: prod), "diverged row \(id) survived the delta restore") }
        }
    }

    @Test func bootstrapStreamingArchiveRebuildAndFenceThenFailover() async throws {
        let layout = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .none, instances: 2)]
        try await SandboxFixture.with(layout) { fx in
            let prod = fx.instance("prod-0")
            let dr0 = fx.instance("dr-0")
            let dr1 = fx.instance("dr-1")
            try await fx.insertRows(1...20, on: prod)
            try await fx.sql(prod, "SELECT pg_switch_wal()")

            let life = try fx.planFile(
                "life",
                [
                    Transition(action: .bootstrapStandby, site: "dr"), Transition(action: .enableStreaming, site: "dr", upstream: "prod"),
                    Transition(action: .disableStreaming, site: "dr"), Transition(action: .rebuild, site: "dr"),
                ])
            let r = try await fx.failoverd(["run", life, "--quiet"])
            #expect(r.status == 0, "\(r.stderr)")
            // Archive standbys after the rebuild: in recovery, no WAL receiver, rows arrive through the repository.
            try await fx.insertRows(21...21, on: prod)
            try await fx.sql(prod, "SELECT pg_switch_wal()")
            for i in [dr0, dr1] {
                try await fx.waitForRow(21, on: i)
                let s = try await fx.driver.status(of: i)
                #expect(s.inRecovery && s.walReceiver == nil)
            }
            #expect(try Journal(stateDirectory: fx.state).recordedRoles() == ["prod": .primary, "dr": .archiveStandby])

            // Fence the primary, then fail over to the archive site: its leader is promoted, its follower streams from it.
            let fence = try fx.planFile("fence", [Transition(action: .fence, site: "prod")], roles: ["dr": .archiveStandby])
            let fenced = try await fx.failoverd(["run", fence, "--quiet"])
            #expect(fenced.status == 0, "\(fenced.stderr)")
            // Both archive standbys replay what prod archived on its way down, each on its own restore_command
            // poll: until they hold the same WAL, the gate rightly refuses dr-0 when dr-1 is ahead.
            _ = try await Poll.until("dr-0 and dr-1 to replay the same WAL", timeout: 60, interval: 0.2) { () async throws -> Bool? in
                let (a, b) = (try await fx.driver.status(of: dr0).replayLSN, try await fx.driver.status(of: dr1).replayLSN)
                return a != nil && a == b ? true : nil
            }
            let out = try fx.planFile(
                "failover", [Transition(action: .failover, to: "dr")], roles: ["prod": .fenced, "dr": .archiveStandby])
            let f = try await fx.failoverd(["run", out, "--quiet"])
            #expect(f.status == 0, "\(f.stderr)")
            #expect(try await !fx.driver.status(of: prod).running)
            #expect(try await fx.primaryTimeline(dr0) == 2)
            try await fx.insertRows(22...22, on: dr0)
            try await fx.waitForStreaming(dr1, from: dr0)
            try await fx.waitForRow(22, on: dr1)
            #expect(try await fx.driver.hasFenceMarker(prod))
            // failoverd will not start the fenced old primary as a primary.
            await expectFailure(.refused, "prod-0 is fenced") { try await fx.driver.start(prod) }
        }
    }
}
