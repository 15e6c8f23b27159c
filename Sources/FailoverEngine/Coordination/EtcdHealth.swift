import Foundation

/// Whether an etcd member is ready: its `/health` endpoint reports a leader and quorum. The lab waits on it
/// for the members it starts (`Lab+Etcd`), and the test and benchmark cluster (FailoverdTestSupport) for its own.
@_spi(Benchmarks) public enum EtcdHealth {
    /// Waits until the member `name` at `client` reports healthy through its `/health` endpoint (it has a
    /// leader and quorum), at most `timeout` seconds; the error names `log`.
    @_spi(Benchmarks) public static func waitHealthy(name: String, client: String, log: String, timeout: Double) async throws {
        _ = try await Poll.until("etcd \(name) to be healthy on \(client)", timeout: timeout, interval: 0.1, advice: "See \(log).") {
            let r = try await CommandRunner().run("/usr/bin/curl", ["-sf", "--max-time", "2", client + "/health"])
            return r.succeeded && r.stdout.contains("true") ? true : nil
        }
    }
}
