import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// One site of a generated test plan.
struct SiteLayout: Sendable {
    var name: String
    var role: Role
    var instances: Int = 1
}

/// A sandbox built from a generated plan in a fresh directory under /tmp, on free loopback ports.
///
/// `SandboxFixture.with(...)` runs `sandbox up`, the body, and then always `sandbox down`, kills any
/// postmaster left in its directories by pid, and removes the directory, failure or not. Fixtures of
/// test processes that died (whose owner pid is gone) are reaped the next time a fixture starts.
struct SandboxFixture: Sendable {
    static let rootPrefix = "/tmp/failoverd-test-"

    let root: String
    let plan: Plan
    let sandbox: Sandbox
    let driver: LocalPostgresDriver

    /// Builds the sandbox, runs `body`, and tears everything down on every path.
    static func with(
        _ layout: [SiteLayout], archiveTimeout: Double = 60, patroni: Bool = false, captureLostRows: Bool = false,
        _ body: (SandboxFixture) async throws -> Void
    ) async throws {
        let fixture = try await start(layout, archiveTimeout: archiveTimeout, patroni: patroni, captureLostRows: captureLostRows)
        do {
            try await body(fixture)
        } catch {
            await fixture.stop()
            throw error
        }
        await fixture.stop()
    }

    /// Builds a sandbox; the caller must ``stop()`` it on every path (``with(_:archiveTimeout:patroni:captureLostRows:_:)`` does).
    static func start(
        _ layout: [SiteLayout], archiveTimeout: Double = 60, patroni: Bool = false, captureLostRows: Bool = false
    ) async throws -> SandboxFixture {
        await reapDeadFixtures()
        let (root, planned) = try makePlan(layout, archiveTimeout: archiveTimeout, patroni: patroni)
        var plan = planned
        if captureLostRows { plan.policy.captureLostRows = true }
        let sandbox = Sandbox(plan: plan, stateDirectory: root + "/state")
        do {
            try await timed("sandbox up (\(plan.allInstances.count) instances)") { try await sandbox.up() }
            return SandboxFixture(root: root, plan: plan, sandbox: sandbox, driver: try LocalPostgresDriver(plan: plan))
        } catch {
            await tearDown(root: root, plan: plan, sandbox: sandbox)
            throw error
        }
    }

    /// sandbox down, leftovers killed by pid, the directory removed.
    func stop() async { await Self.tearDown(root: root, plan: plan, sandbox: sandbox) }

    /// The instance named `name`.
    func instance(_ name: String) -> Instance {
        plan.allInstances.first { $0.instance.name == name }!.instance
    }

    /// Runs `sql` as the admin role on `instance` and returns the rows.
    @discardableResult
    func sql(_ instance: Instance, _ sql: String, _ parameters: [String?] = []) async throws -> [[String?]] {
        try await driver.withConnection(instance) { try $0.query(sql, parameters) }
    }

    /// Waits until `instance` has the row `id` in table `t` (errors such as a missing table count as "not yet").
    /// The deadline is generous: a row that travels through the repository waits for archive-push, then for
    /// the standby's next restore_command attempt (every 5 s), on a machine that CI may load with other tests.
    func waitForRow(_ id: Int, on instance: Instance, timeout: Double = 60) async throws {
        _ = try await Poll.until("row \(id) on \(instance.name)", timeout: timeout, interval: 0.01) {
            try await sql(instance, "SELECT 1 FROM t WHERE id = $1", [String(id)]).isEmpty ? nil : true
        }
    }

    /// True when `instance` has the row `id` in table `t`.
    func hasRow(_ id: Int, on instance: Instance) async throws -> Bool {
        try await !sql(instance, "SELECT 1 FROM t WHERE id = $1", [String(id)]).isEmpty
    }

    /// Waits until `instance`'s WAL receiver streams from `upstream`; returns its status.
    @discardableResult
    func waitForStreaming(_ instance: Instance, from upstream: Instance, timeout: Double = 60) async throws -> InstanceStatus {
        try await Poll.until("\(instance.name) to stream from \(upstream.name)", timeout: timeout, interval: 0.01) {
            let status = try await driver.status(of: instance)
            return status.walReceiver?.isStreaming(from: upstream) == true ? status : nil
        }
    }

    /// Runs `body` and prints how long it took, as `TIMING <label>: <seconds> s`.
    @discardableResult
    static func timed<T>(_ label: String, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        let value = try await body()
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("TIMING \(label): \(String(format: "%.3f", seconds)) s")
        return value
    }

    @discardableResult
    func timed<T>(_ label: String, _ body: () async throws -> T) async rethrows -> T {
        try await Self.timed(label, body)
    }

    // MARK: Plan generation

    /// A fresh directory under /tmp (searchable by the OS user) and a plan for `layout` on free ports.
    /// With `patroni`, every site is a Patroni cluster (its scope the site's name) on one etcd, each
    /// instance with its REST API on a free port.
    static func makePlan(_ layout: [SiteLayout], archiveTimeout: Double, patroni: Bool = false) throws -> (String, Plan) {
        var template = Array((rootPrefix + "XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FailoverError.failed("mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        let root = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        chmod(root, 0o755)
        try "\(getpid())\n".write(toFile: root + "/owner.pid", atomically: true, encoding: .utf8)
        let count = layout.reduce(0) { $0 + $1.instances }
        let ports = try freePorts(patroni ? 2 * count + 1 : count)
        var next = 0
        let sites = layout.map { site in
            Site(
                name: site.name, driver: patroni ? .patroni : .local, role: site.role,
                instances: (0..<site.instances).map { index in
                    defer { next += 1 }
                    let name = "\(site.name)-\(index)"
                    return Instance(
                        name: name, host: "127.0.0.1", port: ports[next], dataDirectory: "\(root)/data/\(name)",
                        patroni: patroni ? PatroniMember(url: "http://127.0.0.1:\(ports[count + next])") : nil)
                },
                patroni: patroni
                    ? PatroniCluster(scope: site.name, etcd: "127.0.0.1:\(ports[2 * count])", slot: "failoverd_\(site.name)") : nil)
        }
        let plan = Plan(
            version: 1, name: "test-" + (root as NSString).lastPathComponent,
            repository: Repository(type: "posix", path: root + "/repo", stanza: "fo", config: nil),
            replication: Replication(user: "replicator", passfile: root + "/secrets/pgpass", rewindUser: nil, adminUser: nil, sslmode: nil),
            policy: Policy(maxLagBytes: 16 << 20, stepTimeoutSeconds: 60, archiveTimeoutSeconds: archiveTimeout),
            sites: sites, transitions: [], osUser: nil)
        return (root, plan)
    }

    /// `count` distinct free TCP ports on 127.0.0.1.
    static func freePorts(_ count: Int) throws -> [Int] { try FreePorts.take(count) }

    // MARK: Teardown

    /// sandbox down, then SIGKILL for any postmaster still recorded in the fixture's directories, then rm -rf.
    static func tearDown(root: String, plan: Plan, sandbox: Sandbox) async {
        do {
            if sandbox.exists { try await sandbox.down() }
        } catch {
            Issue.record("sandbox down failed: \(error)")
        }
        await killLeftovers(under: root)
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Kills, by pid, every live postmaster whose data directory lies under `root`.
    static func killLeftovers(under root: String, report: Bool = true) async {
        // Patroni and etcd first (Patroni restarts a postmaster killed behind it): any process whose command
        // line names a path under root.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), pid != getpid(),
                let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                String(decoding: raw, as: UTF8.self).contains(root + "/"),
                !String(decoding: raw, as: UTF8.self).contains("postgres")
            else { continue }
            if report {
                let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
                Issue.record("process \(pid) (\(argv.prefix(300))) survived sandbox down; killing it")
            }
            kill(pid, SIGKILL)
        }
        let dataRoot = root + "/data"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dataRoot)) ?? [] {
            if let pid = Postmaster.livePID(in: dataRoot + "/" + name) {
                if report { Issue.record("postmaster \(pid) of \(name) survived sandbox down; killing it") }
                await Postmaster.shutDown(pid, secondsPerSignal: 2)
            }
        }
    }

    /// True when `pid` exists and is not a zombie (this machine's init does not always reap orphans promptly).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return true
        }
        let state = stat[stat.index(after: close)...].split(separator: " ").first ?? ""
        return state != "Z" && state != "X"
    }

    /// Reaps fixtures left by test processes that died: their postmasters are stopped and directories removed.
    static func reapDeadFixtures() async {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for entry in entries where ("/tmp/" + entry).hasPrefix(rootPrefix) {
            let root = "/tmp/" + entry
            guard let text = try? String(contentsOfFile: root + "/owner.pid", encoding: .utf8),
                let owner = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), !isRunning(owner)
            else { continue }
            await killLeftovers(under: root, report: false)
            try? FileManager.default.removeItem(atPath: root)
        }
    }
}
