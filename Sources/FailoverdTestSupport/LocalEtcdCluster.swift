@_spi(Benchmarks) import FailoverEngine
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real etcd cluster (Debian's etcd-server) of one or more members on free loopback ports, in a fresh
/// directory under /tmp, run as the unprivileged `failoverd` user when this process is root: for the tests
/// and the benchmarks of coordinated runs. Members are started and stopped by pid (their recorded start
/// time); ``stopAll()`` also removes the directory.
public struct LocalEtcdCluster: Sendable {
    /// One member.
    struct Member: Sendable {
        var name: String
        var client: String
        var peer: String
        var daemon: SandboxDaemon
        var directory: String
    }

    /// The cluster's directory.
    public let root: String
    let members: [Member]
    let initialCluster: String

    /// The members' client URLs.
    public var endpoints: [String] { members.map(\.client) }
    /// How many members it has.
    public var count: Int { members.count }

    /// Starts `count` members and waits until each is healthy (after stopping the clusters of test processes
    /// that died without stopping theirs).
    public static func start(members count: Int) async throws -> LocalEtcdCluster {
        let user = OSUser.isRoot ? OSUser.lookup("failoverd") : nil
        await reapDead(user: user)
        let root = "/tmp/failoverd-etcd-\(getpid())-\(UUID().uuidString.prefix(8))"
        _ = try Files.makeDirectory(root, mode: 0o755, owner: nil)
        let ports = try FreePorts.take(2 * count)
        var members: [Member] = []
        for i in 0..<count {
            let dir = root + "/m\(i)"
            _ = try Files.makeDirectory(dir, mode: 0o700, owner: user)
            members.append(
                Member(
                    name: "m\(i)", client: "http://127.0.0.1:\(ports[2 * i])", peer: "http://127.0.0.1:\(ports[2 * i + 1])",
                    daemon: SandboxDaemon(
                        name: "etcd m\(i)", identityFile: dir + "/etcd.identity", logFile: dir + "/etcd.log",
                        runner: CommandRunner(user: user, defaultTimeout: 30)),
                    directory: dir))
        }
        let cluster = LocalEtcdCluster(
            root: root, members: members, initialCluster: members.map { "\($0.name)=\($0.peer)" }.joined(separator: ","))
        do {
            for i in members.indices { try await cluster.start(i, wait: false) }
            for i in members.indices { try await cluster.waitHealthy(i) }
        } catch {
            await cluster.stopAll()
            throw error
        }
        return cluster
    }

    /// Stops, by the pid and start time each recorded, the members of clusters whose test process is gone (a
    /// run killed outright cannot stop its own), and removes their directories.
    static func reapDead(user: OSUser?) async {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
        for entry in entries where entry.hasPrefix("failoverd-etcd-") {
            let owner = entry.dropFirst("failoverd-etcd-".count).split(separator: "-").first.flatMap { pid_t($0) }
            guard let owner, owner != getpid(), kill(owner, 0) == -1, errno == ESRCH else { continue }
            let root = "/tmp/" + entry
            for member in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                let dir = root + "/" + member
                await SandboxDaemon(
                    name: "etcd \(member) of dead test process \(owner)", identityFile: dir + "/etcd.identity", logFile: dir + "/etcd.log",
                    runner: CommandRunner(user: user, defaultTimeout: 30)
                ).stop(grace: 10)
            }
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Starts member `i` (again: an existing data directory rejoins the cluster).
    public func start(_ i: Int, wait: Bool = true) async throws {
        let m = members[i]
        try await m.daemon.start([
            Sandbox.etcdExecutable, "--name", m.name, "--data-dir", m.directory + "/data", "--listen-client-urls", m.client,
            "--advertise-client-urls", m.client, "--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
            "--initial-cluster", initialCluster, "--initial-cluster-token", "failoverd-\(getpid())", "--log-level", "warn",
        ])
        if wait { try await waitHealthy(i) }
    }

    /// Waits until member `i` reports healthy (it has a leader and quorum).
    public func waitHealthy(_ i: Int) async throws {
        try await EtcdHealth.waitHealthy(name: members[i].name, client: members[i].client, log: members[i].daemon.logFile, timeout: 60)
    }

    /// The pid of member `i` while it runs (for a test that freezes it with SIGSTOP).
    public func pid(_ i: Int) -> pid_t? { members[i].daemon.live?.pid }

    /// Stops member `i` by pid (SIGTERM, then SIGKILL).
    public func stop(_ i: Int) async { await members[i].daemon.stop(grace: 10) }

    /// Stops every member and removes the directory.
    public func stopAll() async {
        for i in members.indices { await stop(i) }
        try? FileManager.default.removeItem(atPath: root)
    }
}
