import Foundation
import Testing

@testable import FailoverEngine

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// `failoverd fleet drill`: every member's sandbox and writers, the fleet run, one report with a lane per member.
@Suite(.serialized) struct FleetDrillTests {
    /// The fleet files shipped in plans/, each drilled below (DrillTests checks that none is missed).
    static let shippedFleets = ["fleet-evacuate-dc1"]

    /// The shipped example, as a user drills it: six clusters leave dc1 (billing only after auth), with a
    /// fault on one member. Every member plan it names runs for real.
    @Test(arguments: shippedFleets) func aShippedFleetDrillWritesOneReportWithALanePerMember(name: String) async throws {
        let directory = CLI.tempDirectory("failoverd-fleet-drill")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = CLI.plan(name)
        let fleet = try FleetLoader.load(path)
        let report = directory + "/report"
        let r = try await CLI.run([
            "fleet", "drill", path, "--report", report, "--faults", "archive-stall@auth:1", "--warmup", "0.5", "--dwell", "0.5",
        ])
        #expect(r.status == 0, "\(r.stdout.suffix(2500)) \(r.stderr.suffix(1000))")
        #expect(r.stdout.contains("fleet drill PASSED; report: \(report)/report.md"))

        let data = try Data(contentsOf: URL(fileURLWithPath: report + "/report.json"))
        let json = try JSONDecoder().decode(FleetDrillReport.self, from: data)
        #expect(json.passed && json.outcome == "succeeded" && json.exitCode == 0)
        #expect(json.members.map(\.member) == fleet.members.map(\.name))
        for m in json.members {
            #expect(m.status == "succeeded" && m.checksPassed, "\(m.member): \(m.failedChecks)")
            #expect((m.rtoSeconds ?? -1) > 0, "\(m.member) RTO \(m.rtoSeconds ?? -1)")
            #expect(m.acknowledgedLost == 0 && m.acknowledged > 0)
            #expect(m.lagAtStartBytes != nil && m.lagAtStartSeconds != nil && m.gateAtStart == "proceed")
            #expect(!m.steps.isEmpty && !m.acknowledgedPer100ms.isEmpty)
            #expect(FileManager.default.fileExists(atPath: report + "/members/\(m.member)/report.md"))
        }
        let auth = try #require(json.members.first { $0.member == "auth" })
        let billing = try #require(json.members.first { $0.member == "billing" })
        // A failed drill leaves members without times: #require, never `!`, or the whole test process traps.
        let billingStart = try #require(billing.startedAt, "billing never started")
        let authEnd = try #require(auth.endedAt, "auth never ended")
        #expect(billingStart >= authEnd, "billing started before auth ended")
        #expect(auth.faults.map(\.fault) == ["archive-stall@1"])
        // The critical path is a chain through `after`: billing only ever with auth before it.
        #expect(!json.criticalPath.isEmpty && Set(json.criticalPath).isSubset(of: fleet.members.map(\.name)))
        if let b = json.criticalPath.firstIndex(of: "billing") { #expect(b > 0 && json.criticalPath[b - 1] == "auth") }
        #expect(json.totalSeconds >= json.criticalPathSeconds - 0.001 && json.totalSeconds > 0)
        let seconds = try json.members.map { m in (m.member, try #require(m.seconds, "\(m.member) has no duration")) }
        #expect(json.slowestMember == seconds.max { $0.1 < $1.1 }?.0)

        let md = try String(contentsOfFile: report + "/report.md", encoding: .utf8)
        #expect(md.contains("# Fleet drill of `\(fleet.name)`: PASSED"))
        #expect(md.contains("| [billing](members/billing/report.md) | switchover to dc2 | succeeded |"))
        // The timeline is well-formed SVG with one lane (a label) per member.
        let svg = try XMLDocument(contentsOf: URL(fileURLWithPath: report + "/timeline.svg"))
        let labels = try svg.nodes(forXPath: "//*[local-name()='text']").compactMap(\.stringValue)
        for m in fleet.members { #expect(labels.contains(m.name), "no lane for \(m.name)") }
        // The sandboxes are gone.
        for m in fleet.members {
            for i in m.plan.allInstances.map(\.instance) {
                #expect(!FileManager.default.fileExists(atPath: i.dataDirectory), "\(i.dataDirectory) survived the drill")
            }
        }
    }

    @Test func faultsNameTheirMember() throws {
        let fleet = try FleetLoader.load(CLI.packageRoot + "/plans/fleet-evacuate-dc1.json")
        let (byMember, crash) = try FleetDrill.parseFaults(
            "kill-primary@auth:3, cut-receiver@billing:dc2,archive-stall@orders:2.5,crash-engine@search:2:after", fleet: fleet)
        #expect(byMember["auth"] == [.killPrimary(step: 3)])
        #expect(byMember["billing"] == [.cutReceiver(site: "dc2")])
        #expect(byMember["orders"] == [.archiveStall(seconds: 2.5)])
        #expect(crash == FleetCrashPoint("search:2:after"))
        for (spec, text) in [
            ("kill-primary@3", "a fleet drill's fault names its member"),
            ("kill-primary@nobody:3", "has no member \"nobody\""),
            ("cut-receiver@auth:dr", "no site \"dr\" in the plan"),
            ("crash-engine@auth:1:before,crash-engine@billing:1:after", "at most one crash-engine fault"),
        ] {
            expectFailure(.invalidInput, text) { _ = try FleetDrill.parseFaults(spec, fleet: fleet) }
        }
    }
}
