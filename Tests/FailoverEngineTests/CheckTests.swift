import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// `failoverd check` on real PostgreSQL: the live topology, lag figures, gate readiness from the gates'
/// own code, exit codes, and the Prometheus file.
@Suite(.serialized) struct CheckTests {
    static let pair = [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)]

    func check(_ fx: SandboxFixture, _ plan: String, _ extra: [String] = []) async throws -> (CLI.Result, [String: Any]) {
        let r = try await fx.failoverd(["check", plan, "--json"] + extra)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout) \(r.stderr)")
        return (r, json)
    }

    func instance(_ json: [String: Any], _ name: String) -> [String: Any]? {
        (json["instances"] as? [[String: Any]])?.first { $0["instance"] as? String == name }
    }

    @Test("a matching topology exits 0 with the lag figures and the switchover would proceed")
    func matchingTopologyIsReady() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...20, on: prod)
            try await fx.waitForRow(20, on: dr)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            // Wait until dr-0 has replayed everything prod-0 wrote (no writes meanwhile): lag 0.
            _ = try await Poll.until("dr-0 caught up", timeout: 60, interval: 0.05) { () -> Bool? in
                let p = try await fx.driver.status(of: prod)
                let d = try await fx.driver.status(of: dr)
                return p.currentLSN == d.replayLSN ? true : nil
            }
            let (r, json) = try await check(fx, plan)
            #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
            let d = try #require(instance(json, "dr-0"))
            #expect(d["seen"] as? String == "streaming-standby")
            #expect(d["upstream"] as? String == "prod-0")
            #expect(d["lagTo"] as? String == "prod-0")
            // Caught up a moment ago; background WAL (autovacuum, standby snapshots) may add a few records.
            let lag = try #require(d["lagBytes"] as? Int)
            #expect(lag < 64 * 1024, "dr-0 streams: its lag is a few records at most, got \(lag) bytes")
            let seconds = try #require((d["lagSeconds"] as? NSNumber)?.doubleValue)
            #expect(seconds >= 0 && seconds < 5)
            #expect(d["walReceiver"] as? String == "streaming")
            #expect(d["recoverySettings"] as? String == "failoverd")
            #expect(instance(json, "prod-0")?["seen"] as? String == "primary")
            let gate = try #require((json["gates"] as? [[String: Any]])?.first)
            #expect(gate["verdict"] as? String == "proceed")
            let message = try #require(gate["message"] as? String)
            #expect(
                message.wholeMatch(of: try Regex(#"would proceed: dr-0 streams from prod-0, [0-9]+ bytes behind, same timeline 1"#)) != nil,
                "\(message)")
            // The table says the same for people; no journal was created.
            let table = try await fx.failoverd(["check", plan])
            #expect(table.status == 0)
            #expect(table.stdout.contains("streaming standby of prod-0"))
            #expect(table.stdout.contains("ready"))
            #expect(!FileManager.default.fileExists(atPath: fx.state + "/journal.sqlite"), "check creates no journal")
        }
    }

    @Test("a cut receiver shows archive mode, a growing lag, and the gate's own refusal")
    func cutReceiverShowsArchiveModeAndRefusal() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let prod = fx.instance("prod-0")
            let dr = fx.instance("dr-0")
            try await fx.insertRows(1...5, on: prod)
            try await fx.waitForRow(5, on: dr)
            try await fx.cutReceiver(dr)
            try await fx.insertRows(6...10, on: prod)
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let (first, json1) = try await check(fx, plan)
            #expect(first.status == 3, "\(first.stderr)")
            let d1 = try #require(instance(json1, "dr-0"))
            #expect(d1["seen"] as? String == "archive-standby")
            #expect(d1["recoverySettings"] as? String == "failoverd, overridden by postgresql.auto.conf")
            let lag1 = try #require(d1["lagBytes"] as? Int)
            #expect(lag1 > 0)
            let gate = try #require((json1["gates"] as? [[String: Any]])?.first)
            #expect(gate["verdict"] as? String == "refuse")
            #expect((gate["message"] as? String)?.contains("would refuse: switchover refused: dr-0 is not streaming from prod-0") == true)
            let sites = try #require(json1["sites"] as? [[String: Any]])
            #expect(sites.first { $0["site"] as? String == "dr" }?["seen"] as? String == "archive-standby")

            try await fx.insertRows(11...200, on: prod)
            let (_, json2) = try await check(fx, plan)
            let lag2 = try #require(instance(json2, "dr-0")?["lagBytes"] as? Int)
            #expect(lag2 > lag1, "the lag grows while dr-0 only replays the archive")
        }
    }

    @Test("declared roles that disagree with the servers exit non-zero naming the site")
    func mismatchNamesTheSite() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let plan = try fx.planFile("wrong", [Transition(action: .fence, site: "dr")], roles: ["prod": .archiveStandby, "dr": .primary])
            let r = try await fx.failoverd(["check", plan])
            #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("site \"prod\": the plan declares archive-standby, prod-0 is seen as primary"))
            #expect(r.stdout.contains("site \"dr\": the plan declares primary, dr-0 is seen as streaming-standby"))
        }
    }

    @Test("an instance that cannot be probed exits 1")
    func unprobedInstanceExitsOne() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let dr = fx.instance("dr-0")
            let pid = try #require(Postmaster.livePID(in: dr.dataDirectory))
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            kill(pid, SIGSTOP)
            let r = try await fx.failoverd(["check", plan])
            kill(pid, SIGCONT)
            #expect(r.status == 1, "\(r.stdout) \(r.stderr)")
            #expect(r.stdout.contains("dr-0 cannot be probed"))
        }
    }

    @Test("the Prometheus file follows the text format's line grammar and is replaced atomically")
    func prometheusFileParsesAndIsReplacedAtomically() async throws {
        try await SandboxFixture.with(Self.pair) { fx in
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let file = fx.root + "/metrics/failoverd.prom"
            try FileManager.default.createDirectory(atPath: fx.root + "/metrics", withIntermediateDirectories: true)
            try "stale\n".write(toFile: file, atomically: false, encoding: .utf8)
            var before = stat()
            stat(file, &before)
            let once = try await fx.failoverd(["check", plan, "--prometheus", file])
            #expect(once.status == 0, "\(once.stderr)")
            var after = stat()
            stat(file, &after)
            #expect(before.st_ino != after.st_ino, "replaced by rename, not rewritten in place")
            let r = try await fx.failoverd(["check", plan, "--prometheus", file, "--watch", "0.2", "--rounds", "2", "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: fx.root + "/metrics")
            #expect(leftovers == ["failoverd.prom"])
            let text = try String(contentsOfFile: file, encoding: .utf8)
            // The exposition format's grammar: comments, then `name{label="value",...} number`.
            let sample = try Regex(
                #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"#)
            let comment = try Regex(#"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$"#)
            let lines = text.split(separator: "\n")
            for line in lines {
                #expect(line.wholeMatch(of: sample) != nil || line.wholeMatch(of: comment) != nil, "not a Prometheus line: \(line)")
            }
            for family in [
                "failoverd_standby_lag_bytes", "failoverd_standby_lag_seconds", "failoverd_instance_role",
                "failoverd_archive_last_age_seconds",
                "failoverd_gate_ready",
            ] {
                #expect(lines.contains("# TYPE \(family) gauge"), "missing \(family)")
            }
            #expect(
                lines.contains {
                    $0.hasPrefix("failoverd_instance_role{") && $0.contains("instance=\"dr-0\"")
                        && $0.contains("role=\"streaming-standby\"")
                })
            #expect(lines.contains { $0.hasPrefix("failoverd_gate_ready{") && $0.hasSuffix(" 1") })
            // Two rounds of JSON reports were printed.
            #expect(r.stdout.components(separatedBy: "\"checkedAt\"").count == 3)
        }
    }

    @Test("a Patroni site left paused (as an interrupted rebuild leaves it) shows in check, which exits 3 naming it")
    func aPausedPatroniSiteShows() async throws {
        try await SandboxFixture.with(Self.pair, patroni: true) { fx in
            let prod = fx.instance("prod-0")
            let site = try #require(fx.plan.site(named: "prod"))
            let plan = try fx.planFile("switchover", [Transition(action: .switchover, to: "dr")])
            let patroni = PatroniSite(plan: fx.plan, timeout: 60, pollInterval: 0.1)
            let (before, json) = try await check(fx, plan)
            let sites = try #require(json["sites"] as? [[String: Any]])
            #expect(sites.first { $0["site"] as? String == "prod" }?["paused"] as? Bool == false, "\(sites)")
            #expect(!before.stdout.contains("paused (maintenance mode"))
            // What failoverd's rebuild does first, then dies: the cluster stays paused.
            let paused = try await patroni.api(site).patch(prod.patroni!.url, "/config", json: ["pause": true])
            #expect(paused.status == 200)
            _ = try await Poll.until("prod's Patroni to be paused", timeout: 60, interval: 0.1) {
                try await patroni.memberInfo(site, prod)["pause"] as? Bool == true ? true : nil
            }
            let (r, after) = try await check(fx, plan)
            #expect(r.status == 3, "\(r.stdout) \(r.stderr)")
            let report = try #require((after["sites"] as? [[String: Any]])?.first { $0["site"] as? String == "prod" })
            #expect(report["paused"] as? Bool == true)
            #expect((report["mismatch"] as? String)?.contains("Patroni's cluster is paused") == true, "\(report)")
            #expect((after["problems"] as? [String])?.contains { $0.contains("site \"prod\": Patroni's cluster is paused") } == true)
            let table = try await fx.failoverd(["check", plan])
            #expect(
                table.stdout.contains("prod: declared primary, seen primary, journaled -, Patroni paused   MISMATCH"), "\(table.stdout)")
            _ = try await patroni.api(site).patch(prod.patroni!.url, "/config", json: ["pause": false])
        }
    }
}
