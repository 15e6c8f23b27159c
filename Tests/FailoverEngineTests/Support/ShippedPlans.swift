import Foundation
import Testing

@testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The plan files shipped in plans/: every one is built, drilled and checked for real by the suite, so a
/// plan that ships broken fails CI. The lists come from the directory itself: a plan file added there is
/// covered from then on (DrillTests runs the sandbox plans, LabTests the plans of ssh sites).
enum ShippedPlans {
    /// Every plans/*.json that is a plan (not a fleet file), by name (without .json), sorted.
    static let all: [String] = files.filter { !isFleet($0) }

    /// Every plans/*.json that is a fleet file (`fleet.json` format: members, no sites), by name, sorted: the
    /// fleet drill test drills each, which runs every member plan it names.
    static let fleets: [String] = files.filter(isFleet)

    /// Every plans/*.json, by name (without .json), sorted.
    static let files: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: CLI.packageRoot + "/plans")) ?? []
        return names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }()

    /// True for a fleet file: a JSON object with `members` and no `sites`.
    static func isFleet(_ name: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: CLI.plan(name)),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return object["members"] != nil && object["sites"] == nil
    }

    /// True for a plan whose sites are all ssh sites: the lab builds it. A plan that does not load counts as a
    /// sandbox plan, whose test then fails on it.
    static func isLab(_ name: String) -> Bool {
        guard let plan = try? PlanLoader.load(CLI.plan(name)) else { return false }
        return !plan.sites.isEmpty && plan.sites.allSatisfy { $0.driver == .ssh }
    }

    /// The plans `sandbox up` builds (local and Patroni sites), for DrillTests.
    static let sandboxPlans = all.filter { !isLab($0) }
    /// The plans `lab up` builds (ssh sites), for LabTests.
    static let labPlans = all.filter(isLab)

    /// The faults a drill of the plan injects because the plan is about them. A plan listed here is drilled as
    /// the drill builds it (its own lab or sandbox, kept for the checks); the others are built first by `sandbox
    /// up` / `lab up`, and drilled with --reuse, so a row written before the drill can be looked for after it.
    static let faults: [String: String] = ["dc-failover-partitioned": "partition@1:dc1,heal@3:dc1"]

    /// Shipped plans that fail today for a bug being fixed elsewhere: their drill runs under `withKnownIssue`
    /// until the fix is merged, and then their entry must go (the known issue no longer being recorded fails
    /// the test). None today.
    static let knownIssues: [String: String] = [:]

    /// A fresh directory for one test's state and reports, named after this process so that a directory left
    /// by a dead test process is recognised (``reapDead(_:)``).
    static func temporaryRoot(_ name: String) -> String {
        let root = "/tmp/failoverd-shipped-\(getpid())-\(name)-\(UUID().uuidString.prefix(6))"
        try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    /// Runs `failoverd drill PLAN` while the plan's sandbox or lab (built with `state`) runs, and expects the
    /// refusal (exit 3) naming it, its state directory, `sandbox down` / `lab down` and --reuse, with nothing of
    /// a build begun (no manifest in the drill's state directory). Prints how long the refusal took; returns the
    /// drill's result.
    @discardableResult
    static func expectDrillRefused(
        _ kind: RunningTopology.Kind, plan: Plan, planPath: String, state: String, report: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CLI.Result {
        let down = "failoverd \(kind.rawValue) down \(RunningTopology.word(planPath)) --state \(RunningTopology.word(state))"
        let started = ContinuousClock.now
        let drill = try CLI.run(["drill", planPath, "--report", report])
        print("TIMING drill of a running \(kind.rawValue) (\(plan.name)) refused in \(ContinuousClock.now - started)")
        #expect(drill.status == 3, "\(drill.stdout) \(drill.stderr)", sourceLocation: sourceLocation)
        #expect(
            drill.stderr.contains("the \(kind.rawValue) of plan \"\(plan.name)\" is already running"), "\(drill.stderr)",
            sourceLocation: sourceLocation)
        #expect(drill.stderr.contains(down) && drill.stderr.contains("--reuse"), "\(drill.stderr)", sourceLocation: sourceLocation)
        #expect(!drill.stdout.contains("building"), "the refused drill began to build: \(drill.stdout)", sourceLocation: sourceLocation)
        #expect(
            !FileManager.default.fileExists(atPath: report + "/state/\(kind.rawValue)-\(plan.name).json"),
            "the refused drill began a build",
            sourceLocation: sourceLocation)
        let elsewhere = try CLI.run([
            kind.rawValue, "up", planPath, "--state", (report as NSString).deletingLastPathComponent + "/other-state",
        ])
        #expect(elsewhere.status == 3 && elsewhere.stderr.contains(down), "\(elsewhere.stderr)", sourceLocation: sourceLocation)
        return drill
    }

    /// Takes down the plan's sandbox or lab when a test process that died left it running (its state directory
    /// lies under a ``temporaryRoot(_:)`` of a pid that is gone). Anything else running stays, and the test's
    /// refusal check then fails naming it: a test never removes what it cannot prove its own.
    static func reapDead(_ name: String) async {
        let prefix = "/tmp/failoverd-shipped-"
        guard let plan = try? PlanLoader.load(CLI.plan(name)) else { return }
        let lab = Lab(plan: plan, stateDirectory: "/nonexistent")
        let running = isLab(name) ? try? await lab.running() : Sandbox(plan: plan, stateDirectory: "/nonexistent").running()
        guard let state = running?.stateDirectory, state.hasPrefix(prefix),
            let owner = pid_t(state.dropFirst(prefix.count).split(separator: "-").first ?? ""), !SandboxFixture.isRunning(owner)
        else { return }
        let kind = isLab(name) ? "lab" : "sandbox"
        _ = try? CLI.run([kind, "down", CLI.plan(name), "--state", state])
        try? FileManager.default.removeItem(atPath: (state as NSString).deletingLastPathComponent)
    }
}

/// What PostgreSQL and Patroni themselves say about a plan's instances, read without failoverd: pg_controldata
/// of each data directory, `SELECT pg_is_in_recovery()` through psql over TCP (the admin role, the plan's
/// passfile), and Patroni's own `GET /patroni` through curl.
struct OutsideView: Sendable {
    let plan: Plan
    static let bin = "/usr/lib/postgresql/15/bin"

    /// The first lines of what `executable ARGS` printed, and its exit status.
    func run(_ executable: String, _ arguments: [String], as user: OSUser? = nil, environment: [String: String] = [:]) async throws
        -> CommandResult
    {
        try await CommandRunner(user: user, defaultTimeout: 30).run(executable, arguments, environment: environment)
    }

    /// `Database cluster state` from pg_controldata, run as the OS user that owns the data directory.
    func controlState(_ instance: Instance) async throws -> String {
        let r = try await run(
            Self.bin + "/pg_controldata", ["-D", instance.dataDirectory], as: try OSUser.postgresUser(for: plan),
            environment: ["LC_ALL": "C"])
        #expect(r.succeeded, "pg_controldata \(instance.dataDirectory): \(r.outputTail)")
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("Database cluster state:") }
        return line.map { $0.dropFirst("Database cluster state:".count).trimmingCharacters(in: .whitespaces) } ?? "?"
    }

    /// The one value `sql` returns on `instance`, through psql; nil when the server does not answer.
    func psql(_ instance: Instance, _ sql: String) async throws -> String? {
        let conninfo = [
            "host=\(instance.host)", "port=\(instance.port)", "dbname=postgres", "user=\(plan.replication.effectiveAdminUser)",
            "passfile=\(plan.replication.passfile)", "connect_timeout=5", "application_name=shipped-plan-test",
        ].joined(separator: " ")
        let r = try await run(Self.bin + "/psql", [conninfo, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        return r.succeeded ? r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    /// `pg_is_in_recovery()` of `instance`: "f" for a primary, "t" for a standby, nil when it does not answer.
    func inRecovery(_ instance: Instance) async throws -> String? { try await psql(instance, "SELECT pg_is_in_recovery()") }

    /// Patroni's own view of the member (`GET /patroni`): its `role` and `state`.
    func patroni(_ instance: Instance) async throws -> (role: String?, state: String?) {
        guard let url = instance.patroni?.url else { return (nil, nil) }
        let r = try await run("/usr/bin/curl", ["-sf", "--max-time", "5", url + "/patroni"])
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
        return (json?["role"] as? String, json?["state"] as? String)
    }

    /// Writes row `id` of the marker table on `instance` (the table is created when missing).
    func writeMarker(_ id: Int, on instance: Instance) async throws {
        let done = try await psql(
            instance,
            "CREATE TABLE IF NOT EXISTS shipped_plan_marker (id int PRIMARY KEY, note text); INSERT INTO shipped_plan_marker VALUES (\(id), 'row \(id)') RETURNING id"
        )
        #expect(done == String(id), "could not write marker \(id) on \(instance.name)")
    }

    /// Waits until `instance` shows marker row `id`.
    func waitForMarker(_ id: Int, on instance: Instance, timeout: Double = 90, sourceLocation: SourceLocation = #_sourceLocation)
        async throws
    {
        let seen = try await Wait.until(timeout: timeout, interval: 0.1) { () async throws -> Bool? in
            try await psql(instance, "SELECT note FROM shipped_plan_marker WHERE id = \(id)") == "row \(id)" ? true : nil
        }
        #expect(seen == true, "marker row \(id) never showed on \(instance.name)", sourceLocation: sourceLocation)
    }

    /// Expects every instance of the plan in the role the plan ends with, as PostgreSQL (and Patroni) report
    /// it; then that marker `before` (written before the run) is on the final primary and on every standby,
    /// and that a row written now on the final primary reaches every standby.
    func expectFinalRoles(markerWrittenBefore before: Int, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let roles = try Planner(plan: plan).finalRoles().get()
        var primary: Instance?
        var standbys: [Instance] = []
        for site in plan.sites {
            let role = try #require(roles[site.name], "no final role for \(site.name)", sourceLocation: sourceLocation)
            for (index, instance) in site.instances.enumerated() {
                let state = try await controlState(instance)
                let recovery = try await inRecovery(instance)
                let seen = "\(instance.name): pg_controldata says \"\(state)\", pg_is_in_recovery() \(recovery ?? "no answer")"
                switch role {
                case .primary where index == 0:
                    primary = instance
                    #expect(
                        state == "in production" && recovery == "f", "\(seen); the plan ends with it primary",
                        sourceLocation: sourceLocation)
                case .primary, .streamingStandby, .archiveStandby:
                    standbys.append(instance)
                    #expect(
                        state == "in archive recovery" && recovery == "t", "\(seen); the plan ends with it a standby",
                        sourceLocation: sourceLocation)
                case .fenced:
                    #expect(recovery != "f", "\(seen); the plan ends with it fenced, never writable", sourceLocation: sourceLocation)
                case .none:
                    continue
                }
                if site.driver == .patroni, role != .fenced {
                    let member = try await patroni(instance)
                    let expected = role == .primary ? (index == 0 ? "primary" : "replica") : (index == 0 ? "standby_leader" : "replica")
                    #expect(
                        member.role == expected && member.state == "running",
                        "\(instance.name): Patroni says role \(member.role ?? "?"), state \(member.state ?? "?"); expected \(expected)",
                        sourceLocation: sourceLocation)
                }
            }
            if role == .streamingStandby, let primary = plan.sites.first(where: { roles[$0.name] == .primary })?.leader {
                let leader = site.leader
                let streaming = try await Wait.until(timeout: 60, interval: 0.1) { () async throws -> Bool? in
                    try await psql(leader, "SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'")
                        == "\(primary.host):\(primary.port)" ? true : nil
                }
                #expect(streaming == true, "\(leader.name) does not stream from \(primary.name)", sourceLocation: sourceLocation)
            }
        }
        let finalPrimary = try #require(primary, "the plan ends with no primary", sourceLocation: sourceLocation)
        try await waitForMarker(before, on: finalPrimary, timeout: 5, sourceLocation: sourceLocation)
        try await writeMarker(before + 1, on: finalPrimary)
        for standby in standbys {
            try await waitForMarker(before, on: standby, sourceLocation: sourceLocation)
            try await waitForMarker(before + 1, on: standby, sourceLocation: sourceLocation)
        }
    }
}
