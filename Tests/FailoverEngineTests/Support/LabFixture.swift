import Crypto
import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// One lab for a whole suite: four hosts (dc1…dc4) as network namespaces with their sshd, built once by the
/// ``LabTrait`` and always taken down afterwards, failure or not; then checked gone (namespaces, links, sshd).
/// Each test builds its own PostgreSQL topology in it (``withTopology(_:roles:sites:_:)``), torn down after it.
struct LabFixture: Sendable {
    @TaskLocal static var current: LabFixture?

    static let rootPrefix = "/tmp/failoverd-labtest-"
    static let hosts = ["dc1": "198.18.1.10", "dc2": "198.18.2.10", "dc3": "198.18.3.10", "dc4": "198.18.4.10"]

    let root: String
    let plan: Plan
    /// Topologies shared by the crash cases, by name; taken down before the lab.
    let shared = LabTopologies()
    var lab: Lab { Lab(plan: plan, stateDirectory: labState) }
    var labState: String { root + "/lab-state" }

    /// True where the lab can run: root, sshd and ip.
    static var available: Bool {
        OSUser.isRoot && FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
    }

    /// Builds the lab (network and sshd), runs `body`, and takes it down on every path.
    static func withLab(_ body: (LabFixture) async throws -> Void) async throws {
        await reapDeadLabs()
        var template = Array((rootPrefix + "XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FailoverError.failed("mkdtemp failed")
        }
        let root = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        chmod(root, 0o755)
        try "\(getpid())\n".write(toFile: root + "/owner.pid", atomically: true, encoding: .utf8)
        let fixture = LabFixture(root: root, plan: makePlan(root: root))
        try fixture.write(fixture.plan, to: root + "/lab.json")
        do {
            try await SandboxFixture.timed("lab up (4 hosts)") { try await fixture.lab.up(buildTopology: false) }
            try await body(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    /// The suite's plan: dc1 primary, dc2 streaming standby, dc3 archive standby, dc4 to bootstrap.
    /// The login user (dc1…dc4's sshd let it in, sudo makes it the OS user) is one of the root's own, which
    /// `lab up` creates and `lab down` must delete.
    static func makePlan(root: String) -> Plan {
        let ssh = SSHSettings(
            user: loginUser(root: root), identityFile: root + "/ssh/id_ed25519", knownHostsFile: root + "/ssh/known_hosts")
        let roles: [(String, Role)] = [("dc1", .primary), ("dc2", .streamingStandby), ("dc3", .archiveStandby), ("dc4", .none)]
        var plan = Plan(
            version: 1, name: "labtest-" + (root as NSString).lastPathComponent,
            repository: Repository(type: "posix", path: root + "/repo", stanza: "lab", config: nil),
            replication: Replication(user: "replicator", passfile: root + "/secrets/pgpass", rewindUser: nil, adminUser: nil, sslmode: nil),
            policy: Policy(maxLagBytes: 16 << 20, stepTimeoutSeconds: 60, archiveTimeoutSeconds: 2),
            sites: roles.map { name, role in
                var site = Site(
                    name: name, driver: .ssh, role: role,
                    instances: [Instance(name: name + "-0", host: hosts[name]!, port: 5432, dataDirectory: root + "/data/" + name + "-0")])
                site.ssh = ssh
                return site
            }, transitions: [], osUser: nil)
        plan.fencing = FencingHook(command: [root + "/fence-site"])
        return plan
    }

    /// `fl` and eight hex digits of `root`: a login user no other lab or test shares.
    static func loginUser(root: String) -> String {
        "fl" + SHA256.hash(data: Data(root.utf8)).prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    func write(_ plan: Plan, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(plan).write(to: URL(fileURLWithPath: path))
    }

    /// Builds a PostgreSQL topology of `sites` (default all) with `transitions`, runs `body`, and always
    /// takes it down: links healed, the SSH connections of the run closed, the servers stopped by pid.
    func withTopology(
        _ name: String, _ transitions: [Transition], roles: [String: Role] = [:], sites: [String]? = nil, fencing: Bool = true,
        debian: Set<String> = [], systemd: Set<String> = [], _ body: (LabTopology) async throws -> Void
    ) async throws {
        let topology = try await startTopology(
            name, transitions, roles: roles, sites: sites, fencing: fencing, debian: debian, systemd: systemd)
        do {
            try await body(topology)
        } catch {
            await topology.stop()
            throw error
        }
        await topology.stop()
    }

    /// Runs `body` in the topology named `name` shared by the calls that name it (built by the first, as
    /// ``startTopology(_:_:roles:sites:fencing:debian:systemd:)`` builds it; built again when a case left it
    /// out of its declared state or `alsoReady` says no, see ``FixturePool``), with the rows it holds; `body`
    /// returns how many it holds afterwards.
    func withSharedTopology(
        _ name: String, _ transitions: [Transition], sites: [String]? = nil, systemd: Set<String> = [],
        alsoReady: @escaping @Sendable (LabTopology) async -> Bool = { _ in true },
        _ body: @Sendable (LabTopology, _ rows: Int) async throws -> Int
    ) async throws {
        let pool = await shared.pool(name) {
            FixturePool<LabTopology>(
                width: 1, start: { try await startTopology(name, transitions, sites: sites, systemd: systemd) }, stop: { await $0.stop() },
                isReady: { t, rows in
                    let declared = await DeclaredTopology.holds(
                        t.plan, state: t.state, rows: rows, status: { try await t.driver.status(of: $0) },
                        count: { try await t.count(on: $0) })
                    return declared ? await alsoReady(t) : false
                })
        }
        try await pool.use(body)
    }

    /// Builds a PostgreSQL topology of `sites` (default all) with `transitions`; the caller must ``LabTopology/stop()``
    /// it on every path. The lab's hosts hold one topology at a time (their data directories and port 5432):
    /// shared topologies of other names are taken down first.
    func startTopology(
        _ name: String, _ transitions: [Transition], roles: [String: Role] = [:], sites: [String]? = nil, fencing: Bool = true,
        debian: Set<String> = [], systemd: Set<String> = []
    ) async throws -> LabTopology {
        await shared.stopAll(except: name)
        var p = plan
        p.name = plan.name + "-" + name
        p.sites = p.sites.filter { sites?.contains($0.name) ?? true }
        // Sites in `debian` run a Debian cluster (pg_ctlcluster), its configuration under this topology's own root.
        for i in p.sites.indices where debian.contains(p.sites[i].name) {
            p.sites[i].instances[0].service = ServiceSettings(
                manager: "pg_ctlcluster", version: 15, cluster: p.sites[i].name, configurationRoot: root + "/etc-" + name)
        }
        // Sites in `systemd` run under a unit of their host's user manager (one per host for the whole suite).
        for i in p.sites.indices where systemd.contains(p.sites[i].name) {
            let site = p.sites[i].name
            let unit = "pg-\(site).service"
            p.sites[i].instances[0].service = ServiceSettings(
                manager: "systemd", unit: unit, scope: "user", runtimeDirectory: root + "/systemd/\(site)/run",
                dropInDirectory: root + "/systemd/\(site)/config/systemd/user/\(unit).d")
        }
        for i in p.sites.indices { if let r = roles[p.sites[i].name] { p.sites[i].role = r } }
        p.transitions = transitions
        if !fencing { p.fencing = nil }
        let state = root + "/state-" + name
        let planPath = root + "/\(p.name).json"
        try write(p, to: planPath)
        let driver = try SSHPostgresDriver(plan: p, stateDirectory: state)
        var sandbox = Sandbox(plan: p, stateDirectory: labState)
        let lab = lab
        sandbox.starter = { try await lab.start($0, driver: driver) }
        sandbox.clientAddresses = Lab.network
        let topology = LabTopology(plan: p, planPath: planPath, state: state, driver: driver, lab: lab, sandbox: sandbox)
        do {
            try await SandboxFixture.timed("topology \(name) up") { try await sandbox.up() }
        } catch {
            await topology.stop()
            throw error
        }
        return topology
    }

    /// lab down, then proof that nothing is left: no namespace, link or sshd of the lab, and neither the login
    /// user it created nor its sudoers rule.
    func tearDown() async {
        await shared.stopAll()
        let recorded = (try? LabManifest.load(for: plan, in: labState))?.processes ?? []
        let login = plan.sites[0].ssh!.user
        do {
            if lab.exists { try await lab.down() }
        } catch {
            Issue.record("lab down failed: \(error)")
        }
        let namespaces = (try? await lab.existingNamespaces()) ?? []
        for index in lab.hosts.indices {
            #expect(!namespaces.contains(lab.namespace(index)), "namespace \(lab.namespace(index)) survived lab down")
            #expect(!((try? await lab.linkExists(lab.link(index))) ?? true), "link \(lab.link(index)) survived lab down")
        }
        #expect(!((try? await lab.linkExists(lab.bridge)) ?? true), "bridge \(lab.bridge) survived lab down")
        #expect(OSUser.lookup(login) == nil, "the login user \(login) that lab up created survived lab down")
        #expect(!FileManager.default.fileExists(atPath: lab.sudoersPath(login: login)), "its sudoers rule survived lab down")
        for process in recorded {
            #expect(!ProcessIdentity.matches(pid: process.pid, startTime: process.startTime, tolerance: 0.01), "\(process.what) survived")
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Takes down labs left by test processes that died.
    static func reapDeadLabs() async {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where ("/tmp/" + entry).hasPrefix(rootPrefix) {
            let root = "/tmp/" + entry
            guard let text = try? String(contentsOfFile: root + "/owner.pid", encoding: .utf8),
                let owner = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), !SandboxFixture.isRunning(owner),
                let plan = try? PlanLoader.load(root + "/lab.json")
            else { continue }
            _ = try? await Lab(plan: plan, stateDirectory: root + "/lab-state").down()
            try? FileManager.default.removeItem(atPath: root)
        }
    }
}

/// One PostgreSQL topology in the lab, with the helpers tests use.
struct LabTopology: Sendable {
    let plan: Plan
    let planPath: String
    let state: String
    let driver: SSHPostgresDriver
    let lab: Lab
    let sandbox: Sandbox

    func instance(_ site: String) -> Instance { plan.site(named: site)!.leader }

    /// This topology with a state directory of its own (its journal, and the SSH control directory derived
    /// from it), for one case of several that share the servers; ``closeState()`` ends its SSH connections
    /// and removes it.
    func withState(_ state: String) throws -> LabTopology {
        LabTopology(
            plan: plan, planPath: planPath, state: state, driver: try SSHPostgresDriver(plan: plan, stateDirectory: state), lab: lab,
            sandbox: sandbox)
    }

    /// Ends the SSH connections of runs with this state directory and removes it.
    func closeState() async {
        await RemoteShell.closeAll(stateDirectory: state)
        try? FileManager.default.removeItem(atPath: state)
    }

    /// Writes this topology's plan with `transitions` and the given sites' roles (the others keep theirs)
    /// beside its plan file, as NAME-SUFFIX.json; returns the path.
    func writePlan(_ suffix: String, _ transitions: [Transition], roles: [String: Role]) throws -> String {
        var variant = plan
        variant.transitions = transitions
        for i in variant.sites.indices { if let role = roles[variant.sites[i].name] { variant.sites[i].role = role } }
        let path = planPath.replacingOccurrences(of: ".json", with: "-\(suffix).json")
        try LabFixture.current!.write(variant, to: path)
        return path
    }

    /// Runs failoverd with this topology's state directory.
    func failoverd(_ args: [String]) async throws -> CLI.Result { try await CLI.run(args + ["--state", state]) }

    @discardableResult
    func sql(_ instance: Instance, _ sql: String, _ parameters: [String?] = []) async throws -> [[String?]] {
        try await driver.withConnection(instance) { try $0.query(sql, parameters) }
    }

    func insertRows(_ ids: ClosedRange<Int>, on instance: Instance) async throws {
        try await sql(instance, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, note text)")
        for id in ids { try await sql(instance, "INSERT INTO t VALUES ($1, 'row')", [String(id)]) }
    }

    func waitForRow(_ id: Int, on instance: Instance, timeout: Double = 60) async throws {
        _ = try await Poll.until("row \(id) on \(instance.name)", timeout: timeout, interval: 0.02) {
            try await sql(instance, "SELECT 1 FROM t WHERE id = $1", [String(id)]).isEmpty ? nil : true
        }
    }

    func count(on instance: Instance) async throws -> String? { try await sql(instance, "SELECT count(*) FROM t").first?.first ?? nil }

    func waitForStreaming(_ instance: Instance, from upstream: Instance, timeout: Double = 60) async throws {
        _ = try await Poll.until("\(instance.name) to stream from \(upstream.name)", timeout: timeout, interval: 0.02) {
            try await driver.status(of: instance).walReceiver?.isStreaming(from: upstream) == true ? true : nil
        }
    }

    /// Takes the topology down: links healed, the SSH connections of its runs closed, units stopped, the
    /// servers stopped by pid, its state directory removed.
    func stop() async {
        for site in plan.sites { try? await lab.heal(site: site.name) }
        try? await lab.reconnectControl()
        await RemoteShell.closeAll(stateDirectory: state)
        await lab.stopUnits(of: plan)
        do {
            if sandbox.exists { try await sandbox.down() }
        } catch {
            Issue.record("sandbox down failed: \(error)")
        }
        try? FileManager.default.removeItem(atPath: state)
    }
}

/// The lab's shared topologies, by name (``LabFixture/withSharedTopology(_:_:sites:systemd:_:)``).
actor LabTopologies {
    private var pools: [String: FixturePool<LabTopology>] = [:]

    /// The pool named `name`, made by `make` the first time.
    func pool(_ name: String, _ make: () -> FixturePool<LabTopology>) -> FixturePool<LabTopology> {
        if let pool = pools[name] { return pool }
        let pool = make()
        pools[name] = pool
        return pool
    }

    /// Takes every shared topology down but the one named `kept`.
    func stopAll(except kept: String? = nil) async {
        for (name, pool) in pools where name != kept { await pool.stopAll() }
    }
}

/// One lab at a time in the test process: every lab shares the bridge's control address (198.18.0.1), and
/// `lab up` refuses while another lab is up. The suite's lab (``LabTrait``) holds it for the whole suite; a test
/// that builds a lab of its own holds it around that lab.
actor LabGate {
    static let shared = LabGate()
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    private func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }

    /// Runs `body` while no other lab of this test process is up.
    static func exclusive<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await shared.acquire()
        do {
            let value = try await body()
            await shared.release()
            return value
        } catch {
            await shared.release()
            throw error
        }
    }
}

/// Builds the suite's lab once, around all its tests.
struct LabTrait: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await LabGate.exclusive {
            try await LabFixture.withLab { fixture in
                try await LabFixture.$current.withValue(fixture) { try await function() }
            }
        }
    }
}

extension Trait where Self == LabTrait {
    /// One lab of four hosts for the suite.
    static var lab: Self { Self() }
}
