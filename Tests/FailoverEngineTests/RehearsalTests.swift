import Foundation
import Testing

@testable import FailoverEngine

/// Rehearsal equals run (#19.4, #24.1): one expansion decides the steps of a plan for every caller, so
/// `failoverd plan`, `run --simulate`, `--crash-at N`, `check`, `drill` and `run` number the same steps.
@Suite struct RehearsalTests {
    /// The shipped plans: every file of plans/ with transitions (a file without them is not a plan).
    static let shipped: [String] = {
        let dir = CLI.packageRoot + "/plans"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasSuffix(".json") }.filter { file in
            guard let data = FileManager.default.contents(atPath: dir + "/" + file),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return false }
            return object["transitions"] != nil
        }.map { String($0.dropLast(".json".count)) }.sorted()
    }()

    /// The shipped plans with a site-level (Patroni) site.
    static let managed: [String] = shipped.filter { name in
        (try? PlanLoader.load(CLI.plan(name)))?.sites.contains { DriverRegistry.expansion(of: $0) == .siteSteps } == true
    }

    /// `failoverd plan NAME --json`: its text and its steps.
    static func planned(_ name: String) async throws -> (json: String, steps: [Step]) {
        let r = try await CLI.run(["plan", CLI.plan(name), "--json"])
        #expect(r.status == 0, "plan \(name): \(r.stderr)")
        return (r.stdout, try JSONDecoder().decode([Step].self, from: Data(r.stdout.utf8)))
    }

    /// The steps journaled for the last run in `state`, in `failoverd plan --json`'s form.
    static func journaled(_ state: String) throws -> (json: String, steps: [Step]) {
        let journal = try Journal(stateDirectory: state)
        let steps = try journal.steps(of: try #require(try journal.lastRun()).id).map(\.step)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (String(decoding: try encoder.encode(steps), as: UTF8.self) + "\n", steps)
    }

    @Test("the shipped plans are found, Patroni plans among them, and main's plan output of each")
    func shippedPlansAreFound() {
        #expect(Self.shipped.count >= 10)
        #expect(Self.managed.contains("patroni-switchover") && Self.managed.contains("patroni-failback-with-rewind"))
        #expect(Self.fixtured.count == 10)
        #expect(Set(Self.fixtured).isSubset(of: Self.shipped))
    }

    @Test("for every shipped plan, `run --simulate` journals exactly the steps `plan --json` lists", arguments: shipped)
    func rehearsalRunsThePlannedSteps(name: String) async throws {
        let state = CLI.tempDirectory("failoverd-rehearsal")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let planned = try await Self.planned(name)
        // A coordinated plan's etcd members exist only in its lab (LabTests runs it there): its rehearsal here is
        // of the same plan without `coordination`, which changes no step.
        var path = CLI.plan(name)
        if var plan = try? PlanLoader.load(path), plan.coordination != nil {
            plan.coordination = nil
            path = state + "-uncoordinated.json"
            try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: path))
        }
        defer { try? FileManager.default.removeItem(atPath: state + "-uncoordinated.json") }
        let run = try await CLI.run(["run", path, "--simulate", "--quiet", "--state", state])
        #expect(run.status == 0, "run --simulate \(name): \(run.stderr)")
        let journaled = try Self.journaled(state)
        // Kind, number, transition, site, summary and operands, step by step, and the same JSON text.
        #expect(journaled.steps.map(\.kind) == planned.steps.map(\.kind))
        #expect(journaled.steps == planned.steps)
        #expect(journaled.json == planned.json)
        #expect(journaled.steps.map(\.number) == Array(1...planned.steps.count))
    }

    static let crashPoints: [String] = managed.flatMap { name in
        let count = (try? Planner(plan: PlanLoader.load(CLI.plan(name))).steps().get().count) ?? 0
        return (1...max(count, 1)).flatMap { ["\(name) \($0):before", "\(name) \($0):after"] }
    }

    @Test("--crash-at N of a Patroni rehearsal stops at step N of `plan`, and the resume ends in the planned roles", arguments: crashPoints)
    func crashAtMeansThePlannedStep(_ point: String) async throws {
        let parts = point.split(separator: " ")
        let (name, at) = (String(parts[0]), String(parts[1]))
        let n = try #require(Int(at.split(separator: ":")[0]))
        let state = CLI.tempDirectory("failoverd-rehearsal")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let planned = try await Self.planned(name).steps
        let crashed = try await CLI.run(["run", CLI.plan(name), "--simulate", "--quiet", "--state", state, "--crash-at", at])
        #expect(crashed.killedBySignal && crashed.status == SIGKILL, "expected SIGKILL at \(point): \(crashed.stderr)")
        let journal = try Journal(stateDirectory: state)
        let steps = try journal.steps(of: try #require(try journal.unfinishedRun()).id)
        #expect(steps.map(\.step) == planned)
        // The step the fault switch stopped at is the plan's step N: in doubt, or pending or satisfied when
        // its check held.
        let stopped = try #require(steps.first { $0.step.number == n })
        #expect(stopped.step == planned[n - 1])
        #expect([StepStatus.started, .pending, .satisfied].contains(stopped.status))
        #expect(steps.filter { $0.step.number < n }.allSatisfy { $0.status.isFinished })
        #expect(steps.filter { $0.step.number > n }.allSatisfy { $0.status == .pending })

        let resumed = try await CLI.run(["resume", "--quiet", "--state", state])
        #expect(resumed.status == 0, "resume after \(point): \(resumed.stderr)")
        let expected = try Planner(plan: PlanLoader.load(CLI.plan(name))).finalRoles().get().mapValues(\.rawValue)
        #expect(try await CLI.roles(state: state) == expected)
    }

    /// `failoverd plan` outputs of main at db71ba4 (Tests/Fixtures/plan-output-main-db71ba4).
    static let fixtures = CLI.packageRoot + "/Tests/Fixtures/plan-output-main-db71ba4/"
    /// The outputs #22 changed (a capture-divergence step before each repair of a former primary), made by
    /// the lost-txns branch (Tests/Fixtures/plan-output-lost-transactions).
    static let lostFixtures = CLI.packageRoot + "/Tests/Fixtures/plan-output-lost-transactions/"
    /// The plans main shipped at db71ba4, each with its two outputs.
    static let fixtured: [String] = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures)) ?? [])
        .filter { $0.hasSuffix(".plan.txt") }.map { String($0.dropLast(".plan.txt".count)) }.sorted()

    /// The expected output: #22's fixture where it changed the plan's output, main's at db71ba4 otherwise.
    static func expected(_ name: String, _ suffix: String) -> Data? {
        FileManager.default.contents(atPath: lostFixtures + name + suffix) ?? FileManager.default.contents(atPath: fixtures + name + suffix)
    }

    @Test(
        "`failoverd plan` prints what main printed at db71ba4 for every plan shipped then, byte for byte (with #22's capture steps)",
        arguments: fixtured)
    func planOutputIsUnchanged(name: String) async throws {
        let text = try await CLI.run(["plan", CLI.plan(name)])
        let json = try await CLI.run(["plan", CLI.plan(name), "--json"])
        #expect(text.status == 0 && json.status == 0, "\(text.stderr) \(json.stderr)")
        #expect(Data(text.stdout.utf8) == Self.expected(name, ".plan.txt"))
        #expect(Data(json.stdout.utf8) == Self.expected(name, ".plan.json"))
        // Where #22 changed the output, nothing else changed: without its capture-divergence steps (and with the
        // steps after them numbered again) the steps are main's at db71ba4, field for field.
        guard FileManager.default.fileExists(atPath: Self.lostFixtures + name + ".plan.json") else { return }
        // Each step numbered again (1, 2, …) and written back as JSON with sorted keys, on both sides alike.
        func steps(_ data: Data?, dropping kind: String? = nil) throws -> [Data] {
            let bytes = try #require(data)
            var all = try #require(try JSONSerialization.jsonObject(with: bytes) as? [[String: Any]])
            all = all.filter { $0["kind"] as? String != kind }
            return try all.indices.map { i in
                var step = all[i]
                step["number"] = i + 1
                return try JSONSerialization.data(withJSONObject: step, options: [.sortedKeys])
            }
        }
        let today = Data(json.stdout.utf8)
        #expect(try steps(today).count > (try steps(today, dropping: "capture-divergence")).count, "\(name): no capture step")
        #expect(
            try steps(today, dropping: "capture-divergence")
                == (try steps(FileManager.default.contents(atPath: Self.fixtures + name + ".plan.json"))))
    }

    @Test("the steps of a plan are built in one place: every Step of the engine comes out of Planning/")
    func stepsAreBuiltByThePlannerAlone() throws {
        let root = CLI.packageRoot + "/Sources"
        let files = try #require(FileManager.default.enumerator(atPath: root)).compactMap { $0 as? String }.filter {
            $0.hasSuffix(".swift")
        }
        var builders: [String] = []
        var planners: [String] = []
        for file in files {
            let code = try String(contentsOfFile: root + "/" + file, encoding: .utf8).split(separator: "\n")
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("//") }.joined(separator: "\n")
            if code.range(of: #"(^|[^A-Za-z_.])(Step|StepBuilder)\("#, options: .regularExpression) != nil { builders.append(file) }
            if code.contains("Planner(") { planners.append(file) }
        }
        #expect(builders == ["FailoverEngine/Planning/Planner.swift"])
        // plan, check, run and run --simulate (and so drill, whose run is the executor's), and the host's needs.
        #expect(
            Set(planners).isSuperset(of: [
                "failoverd/PlanCommands.swift", "FailoverEngine/Check/TopologyCheck.swift", "FailoverEngine/Execution/Executor.swift",
            ]))
        // The planner takes the plan and nothing else: no caller can choose another expansion.
        let planner = try String(contentsOfFile: root + "/FailoverEngine/Planning/Planner.swift", encoding: .utf8)
        #expect(planner.contains("public init(plan: Plan) {"))
        #expect(!planner.contains("public init(plan: Plan,"))
    }
}
