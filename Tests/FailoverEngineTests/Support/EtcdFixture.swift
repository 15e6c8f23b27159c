import Foundation
import Testing

@testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// A real etcd cluster (Debian's etcd-server) of one or three members on free loopback ports, in a fresh
/// directory under /tmp, run as the unprivileged `failoverd` user when the tests run as root. `with` stops
/// every member by pid (its recorded start time) and removes the directory on every path.
struct EtcdFixture: Sendable {
    /// One member.
    struct Member: Sendable {
        var name: String
        var client: String
        var peer: String
        var daemon: SandboxDaemon
        var directory: String
    }

    let root: String
    let members: [Member]
    let cluster: String

    /// The members' client URLs.
    var endpoints: [String] { members.map(\.client) }

    /// Starts `count` members, runs `body`, stops them all.
    static func with(members count: Int = 1, _ body: (EtcdFixture) async throws -> Void) async throws {
        let root = "/tmp/failoverd-etcd-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let user = OSUser.isRoot ? OSUser.lookup("failoverd") : nil
        if let user { chown(root, user.uid, user.gid) }
        let ports = try FreePorts.take(2 * count)
        var members: [Member] = []
        for i in 0..<count {
            let dir = root + "/m\(i)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if let user { chown(dir, user.uid, user.gid) }
            chmod(dir, 0o700)
            members.append(
                Member(
                    name: "m\(i)", client: "http://127.0.0.1:\(ports[2 * i])", peer: "http://127.0.0.1:\(ports[2 * i + 1])",
                    daemon: SandboxDaemon(
                        name: "test etcd m\(i)", identityFile: dir + "/etcd.identity", logFile: dir + "/etcd.log",
                        runner: CommandRunner(user: user, defaultTimeout: 30)),
                    directory: dir))
        }
        let fixture = EtcdFixture(root: root, members: members, cluster: members.map { "\($0.name)=\($0.peer)" }.joined(separator: ","))
        do {
            for i in members.indices { try await fixture.start(i, wait: false) }
            for i in members.indices { try await fixture.waitHealthy(i) }
            try await body(fixture)
        } catch {
            await fixture.stopAll()
            throw error
        }
        await fixture.stopAll()
    }

    /// Starts member `i` (again: an existing data directory rejoins the cluster).
    func start(_ i: Int, wait: Bool = true) async throws {
        let m = members[i]
        try await m.daemon.start([
            Sandbox.etcdExecutable, "--name", m.name, "--data-dir", m.directory + "/data", "--listen-client-urls", m.client,
            "--advertise-client-urls", m.client, "--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
            "--initial-cluster", cluster, "--initial-cluster-token", "failoverd-test-\(getpid())", "--log-level", "warn",
        ])
        if wait { try await waitHealthy(i) }
    }

    /// Waits until member `i` reports healthy (it has a leader and quorum).
    func waitHealthy(_ i: Int) async throws {
        let m = members[i]
        _ = try await Poll.until(
            "etcd \(m.name) to be healthy on \(m.client)", timeout: 60, interval: 0.1, advice: "See \(m.daemon.logFile)."
        ) {
            let r = try await CommandRunner().run("/usr/bin/curl", ["-sf", "--max-time", "2", m.client + "/health"])
            return r.succeeded && r.stdout.contains("true") ? true : nil
        }
    }

    /// Stops member `i` by pid (SIGTERM, then SIGKILL).
    func stop(_ i: Int) async { await members[i].daemon.stop(grace: 10) }

    /// Stops every member and removes the directory.
    func stopAll() async {
        for i in members.indices { await stop(i) }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// A POST to the first member's JSON gateway.
    func post(_ path: String, _ json: [String: Any]) async throws -> [String: Any] {
        try await EtcdGateway(endpoints: endpoints, settingsHint: "test").post(path, json)
    }

    /// The keys under `prefix` with their values (text).
    func keys(under prefix: String) async throws -> [String: String] {
        let answer = try await post("/v3/kv/range", ["key": EtcdGateway.b64(prefix), "range_end": EtcdGateway.rangeEnd(prefix)])
        var out: [String: String] = [:]
        for kv in answer["kvs"] as? [[String: Any]] ?? [] {
            if let k = EtcdGateway.text(kv["key"]) { out[k] = EtcdGateway.text(kv["value"]) ?? "" }
        }
        return out
    }

    /// The coordination settings of a plan over this cluster.
    func coordination(prefix: String = "/failoverd", lease: Int = 3) -> Coordination {
        Coordination(etcd: EtcdCoordination(endpoints: endpoints, prefix: prefix, leaseSeconds: lease))
    }
}
