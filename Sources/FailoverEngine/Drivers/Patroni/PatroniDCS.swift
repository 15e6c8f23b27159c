import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A Patroni cluster's dynamic configuration in etcd, through etcd's v3 JSON gateway: read, and changed
/// with a compare-and-swap on its revision, as `patronictl edit-config` changes it. Used only to fence a
/// site none of whose Patroni members answers, so that they start as standbys when they come back.
///
/// What real deployments use is supported: Patroni's `namespace` (the key is
/// `/<namespace>/<scope>/config`), TLS (`etcdCaFile`, and a client certificate `etcdCertFile` with
/// `etcdKeyFile`) and etcd's own authentication (user and password from the netrc file `etcdNetrcFile`,
/// exchanged for a token at `/v3/auth/authenticate`). Secrets reach curl only through files it reads
/// (`--data-binary @FILE`, `--header @FILE`), never on its command line.
struct PatroniDCS: Sendable {
    /// etcd's client endpoint, HOST:PORT.
    let endpoint: String
    /// The cluster's settings in the plan (scope, namespace, TLS and credential files).
    let cluster: PatroniCluster
    let runner: CommandRunner

    /// Patroni's namespace, without slashes (`service` by default, as in Patroni).
    var namespace: String { cluster.namespace ?? "service" }
    /// The key of the cluster's dynamic configuration.
    var key: String { "/\(namespace)/\(cluster.scope)/config" }
    /// `https` when the plan names a CA for etcd, else `http`.
    var scheme: String { cluster.etcdCaFile != nil ? "https" : "http" }

    /// Merges `section` into the configuration as `standby_cluster` (compare-and-swap on the key's revision).
    func setStandbyCluster(_ section: [String: Any]) async throws {
        let token = try await authenticate()
        let k = Data(key.utf8).base64EncodedString()
        let range = try await post("/v3/kv/range", ["key": k], token: token)
        guard let kv = (range["kvs"] as? [[String: Any]])?.first, let value = kv["value"] as? String,
            let data = Data(base64Encoded: value), var config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let revision = kv["mod_revision"] as? String
        else {
            throw FailoverError.refused(
                "etcd \(endpoint) has no Patroni configuration at \(key); check the site's patroni.scope and patroni.namespace (Patroni's `namespace`, default service)."
            )
        }
        config["standby_cluster"] = section.filter { !($0.value is NSNull) }
        let body = try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])
        let txn = try await post(
            "/v3/kv/txn",
            [
                "compare": [["key": k, "target": "MOD", "result": "EQUAL", "mod_revision": revision]],
                "success": [["request_put": ["key": k, "value": body.base64EncodedString()]]],
            ], token: token)
        // etcd's gateway leaves out fields at their default: no `succeeded` means false.
        guard txn["succeeded"] as? Bool == true else {
            throw FailoverError.failed("etcd \(endpoint): \(key) changed while failoverd wrote it; retry")
        }
    }

    /// The `standby_cluster` section stored in etcd now (nil when there is none).
    func standbyCluster() async throws -> [String: Any]? {
        let token = try await authenticate()
        let range = try await post("/v3/kv/range", ["key": Data(key.utf8).base64EncodedString()], token: token)
        guard let kv = (range["kvs"] as? [[String: Any]])?.first, let value = kv["value"] as? String,
            let data = Data(base64Encoded: value), let config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { return nil }
        return config["standby_cluster"] as? [String: Any]
    }

    /// With `etcdNetrcFile`, a token from `/v3/auth/authenticate` for the file's user on the etcd host; nil
    /// without one.
    func authenticate() async throws -> String? {
        guard let file = cluster.etcdNetrcFile else { return nil }
        let host = PlanValues.parseEndpoint(endpoint).host
        guard let text = try Files.readText(file, owner: nil) else {
            throw FailoverError.invalid("etcd credentials: \(file) (patroni.etcdNetrcFile) does not exist.")
        }
        guard let login = Netrc.login(for: host, in: text) else {
            throw FailoverError.invalid(
                "etcd credentials: \(file) (patroni.etcdNetrcFile) has no `machine \(host) login USER password PASSWORD` entry (nor `default`)."
            )
        }
        let answer = try await post("/v3/auth/authenticate", ["name": login.user, "password": login.password], token: nil)
        guard let token = answer["token"] as? String, !token.isEmpty else {
            throw FailoverError.refused(
                "etcd \(endpoint) gave no token to user \(login.user) (is authentication enabled on it?); check patroni.etcdNetrcFile.")
        }
        return token
    }

    /// POSTs `json` to the gateway; the body (which may hold a password) and the token go through files.
    func post(_ path: String, _ json: [String: Any], token: String?) async throws -> [String: Any] {
        let scratch = try SecretScratch()
        defer { scratch.remove() }
        let bodyFile = try scratch.write("body", JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
        var args = ["--silent", "--show-error", "--max-time", "5", "--write-out", "\n%{http_code}", "--data-binary", "@" + bodyFile]
        if let token { args += ["--header", "@" + (try scratch.write("headers", Data("Authorization: \(token)\n".utf8)))] }
        if let ca = cluster.etcdCaFile { args += ["--cacert", ca] }
        if let cert = cluster.etcdCertFile { args += ["--cert", cert] }
        if let key = cluster.etcdKeyFile { args += ["--key", key] }
        args += ["--", "\(scheme)://\(endpoint)\(path)"]
        let result = try await runner.run(PatroniREST.curl, args)
        guard result.succeeded else {
            throw FailoverError.refused(
                "etcd \(scheme)://\(endpoint)\(path) did not answer: curl exit \(result.exitCode): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)). Check patroni.etcd and its TLS settings (etcdCaFile, etcdCertFile, etcdKeyFile)."
            )
        }
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.popLast().flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        let text = lines.joined(separator: "\n")
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        guard status == 200, let object else {
            let message = (object?["message"] as? String) ?? (object?["error"] as? String) ?? String(text.prefix(300))
            let auth = ["user name", "token", "permission denied", "authentication"].contains { message.lowercased().contains($0) }
            throw FailoverError.refused(
                "etcd \(scheme)://\(endpoint)\(path) answered HTTP \(status): \(message)"
                    + (auth
                        ? ". etcd requires authentication: name a netrc file with its user and password in patroni.etcdNetrcFile (the user needs read and write on \(key))."
                        : ". Check patroni.etcd and its TLS settings (etcdCaFile for https, etcdCertFile and etcdKeyFile for a client certificate).")
            )
        }
        return object
    }
}

/// A netrc file's entries, as curl reads them: `machine HOST login USER password PASSWORD`, or `default`.
enum Netrc {
    /// The login for `host` (its `machine` entry, else `default`); nil when there is none.
    static func login(for host: String, in text: String) -> (user: String, password: String)? {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).map(String.init)
        var found: [String: (user: String?, password: String?)] = [:]
        var current: String?
        var index = 0
        while index < words.count {
            let word = words[index]
            switch word {
            case "machine" where index + 1 < words.count:
                current = words[index + 1]
                index += 1
            case "default":
                current = "\u{0}default"
            case "login" where index + 1 < words.count && current != nil:
                found[current!, default: (nil, nil)].user = words[index + 1]
                index += 1
            case "password" where index + 1 < words.count && current != nil:
                found[current!, default: (nil, nil)].password = words[index + 1]
                index += 1
            default: break
            }
            index += 1
        }
        guard let entry = found[host] ?? found["\u{0}default"], let user = entry.user, let password = entry.password else { return nil }
        return (user, password)
    }
}

/// A private directory (0700, this process's user) for files that carry a secret to a child process.
struct SecretScratch {
    let directory: String

    init() throws {
        var template = Array("/tmp/failoverd-secret-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw FailoverError.failed("could not create a private temporary directory: \(String(cString: strerror(errno)))")
        }
        directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Writes `data` to a 0600 file named `name`; returns its path.
    func write(_ name: String, _ data: Data) throws -> String {
        let path = directory + "/" + name
        try Files.write(String(decoding: data, as: UTF8.self), to: path, mode: 0o600, owner: nil)
        return path
    }

    /// Removes the directory and its files.
    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
