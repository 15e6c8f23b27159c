import Foundation

/// A Patroni cluster's dynamic configuration in etcd, through etcd's v3 JSON gateway: read, and changed
/// with a compare-and-swap on its revision, as `patronictl edit-config` changes it. Used only to fence a
/// site none of whose Patroni members answers, so that they start as standbys when they come back.
struct PatroniDCS: Sendable {
    /// etcd's client endpoint, HOST:PORT.
    let endpoint: String
    /// Patroni's scope; the key is `/service/<scope>/config` (Patroni's default namespace).
    let scope: String
    let runner: CommandRunner

    var key: String { "/service/\(scope)/config" }

    /// Merges `section` into the configuration as `standby_cluster` (compare-and-swap on the key's revision).
    func setStandbyCluster(_ section: [String: Any]) async throws {
        let k = Data(key.utf8).base64EncodedString()
        let range = try await post("/v3/kv/range", ["key": k])
        guard let kv = (range["kvs"] as? [[String: Any]])?.first, let value = kv["value"] as? String,
            let data = Data(base64Encoded: value), var config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let revision = kv["mod_revision"] as? String
        else {
            throw FailoverError.failed("etcd \(endpoint) has no Patroni configuration at \(key)")
        }
        config["standby_cluster"] = section.filter { !($0.value is NSNull) }
        let body = try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])
        let txn = try await post(
            "/v3/kv/txn",
            [
                "compare": [["key": k, "target": "MOD", "result": "EQUAL", "mod_revision": revision]],
                "success": [["request_put": ["key": k, "value": body.base64EncodedString()]]],
            ])
        // etcd's gateway leaves out fields at their default: no `succeeded` means false.
        guard txn["succeeded"] as? Bool == true else {
            throw FailoverError.failed("etcd \(endpoint): \(key) changed while failoverd wrote it; retry")
        }
    }

    func post(_ path: String, _ json: [String: Any]) async throws -> [String: Any] {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self)
        let result = try await runner.run(
            "/usr/bin/curl",
            ["--silent", "--show-error", "--fail", "--max-time", "5", "--data-binary", body, "--", "http://\(endpoint)\(path)"])
        guard result.succeeded, let object = (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))) as? [String: Any] else {
            throw FailoverError.failed("etcd \(endpoint)\(path): \(result.outputTail)")
        }
        return object
    }
}
