import FailoverdTestSupport
import Foundation
import Testing

@testable import FailoverEngine

/// A real etcd cluster for a test (``LocalEtcdCluster``): `with` stops every member by pid and removes its
/// directory on every path.
struct EtcdFixture: Sendable {
    let cluster: LocalEtcdCluster

    /// The members' client URLs.
    var endpoints: [String] { cluster.endpoints }

    /// Starts `count` members, runs `body`, stops them all.
    static func with(members count: Int = 1, _ body: (EtcdFixture) async throws -> Void) async throws {
        let fixture = EtcdFixture(cluster: try await LocalEtcdCluster.start(members: count))
        do {
            try await body(fixture)
        } catch {
            await fixture.cluster.stopAll()
            throw error
        }
        await fixture.cluster.stopAll()
    }

    /// Starts member `i` again.
    func start(_ i: Int, wait: Bool = true) async throws { try await cluster.start(i, wait: wait) }

    /// The pid of member `i` while it runs.
    func pid(_ i: Int) -> pid_t? { cluster.pid(i) }

    /// Stops member `i` by pid.
    func stop(_ i: Int) async { await cluster.stop(i) }

    /// A POST to the cluster's JSON gateway.
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
