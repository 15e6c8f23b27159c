import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's v3 JSON gateway, called with curl: the one HTTP plumbing failoverd has for etcd, shared by the
/// Patroni fence (``PatroniDCS``) and the coordination of runs (``Coordinator``).
///
/// Keys and values travel base64; 64-bit numbers come back as JSON strings; fields at their default value
/// are left out (a missing `succeeded` means false). TLS files come from the plan; a body (which may hold a
/// password) and a token reach curl only through files in a private directory, never its command line.
struct EtcdGateway: Sendable {
    /// The client URLs, `http(s)://HOST:PORT`, tried in order until one answers.
    let endpoints: [String]
    /// The CA certificate of etcd's client endpoints.
    var caFile: String?
    /// A client certificate, with ``keyFile``.
    var certFile: String?
    /// The client certificate's key.
    var keyFile: String?
    /// The plan fields to name when a call fails (`patroni.etcd and its TLS settings (…)`).
    var settingsHint: String
    /// Seconds one call may take.
    var timeout: Double = 5

    /// Why a call failed.
    enum Failure: Error, CustomStringConvertible {
        /// No endpoint answered (connection, TLS or time-out failure at every one).
        case unreachable(String)
        /// An endpoint answered with an HTTP error.
        case answered(status: Int, message: String, url: String)

        var description: String {
            switch self {
            case .unreachable(let s): s
            case .answered(let status, let message, let url): "\(url) answered HTTP \(status): \(message)"
            }
        }
    }

    /// The curl arguments of one call, the body and headers read from files.
    func arguments(_ url: String, bodyFile: String, headerFile: String?) -> [String] {
        var args = [
            "-q", "--silent", "--show-error", "--max-time", String(format: "%.1f", timeout), "--connect-timeout",
            String(format: "%.1f", min(timeout, 2)), "--write-out", "\n%{http_code}", "--data-binary", "@" + bodyFile,
        ]
        if let headerFile { args += ["--header", "@" + headerFile] }
        if let caFile { args += ["--cacert", caFile] }
        if let certFile { args += ["--cert", certFile] }
        if let keyFile { args += ["--key", keyFile] }
        return args + ["--", url]
    }

    /// POSTs `json` to `path` at the first endpoint that answers.
    func post(_ path: String, _ json: [String: Any], token: String? = nil) async throws -> [String: Any] {
        let scratch = try SecretScratch()
        defer { scratch.remove() }
        let (body, header) = try files(scratch, json, token: token)
        var failures: [String] = []
        for endpoint in endpoints {
            let result = try await CommandRunner().run(
                PatroniREST.curl, arguments(endpoint + path, bodyFile: body, headerFile: header), timeout: timeout + 5)
            if let answer = try interpret(result.exitCode, result.stdout, result.stderr, url: endpoint + path, failures: &failures) {
                return answer
            }
        }
        throw Failure.unreachable(failures.joined(separator: "; "))
    }

    /// ``post(_:_:token:)`` on the calling thread: for a journal write that must be acknowledged by etcd
    /// before its SQLite transaction commits (a synchronous GRDB write). curl's own `--max-time` bounds it.
    func postBlocking(_ path: String, _ json: [String: Any]) throws -> [String: Any] {
        let scratch = try SecretScratch()
        defer { scratch.remove() }
        let (body, _) = try files(scratch, json, token: nil)
        var failures: [String] = []
        for endpoint in endpoints {
            let out = scratch.directory + "/out"
            let err = scratch.directory + "/err"
            let outFD = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            let errFD = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            defer {
                close(outFD)
                close(errFD)
            }
            let argv = ["curl"] + arguments(endpoint + path, bodyFile: body, headerFile: nil)
            let pid = try Spawner.spawn(
                PatroniREST.curl, argv, environment: ["PATH=\(CommandRunner.searchPath)", "LANG=C.UTF-8"], workingDirectory: "/",
                stdout: outFD, stderr: errFD, commandLine: "curl " + endpoint + path)
            let status = Spawner.waitBlocking(pid)
            let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            if let answer = try interpret(status, stdout, stderr, url: endpoint + path, failures: &failures) { return answer }
        }
        throw Failure.unreachable(failures.joined(separator: "; "))
    }

    private func files(_ scratch: SecretScratch, _ json: [String: Any], token: String?) throws -> (String, String?) {
        let body = try scratch.write("body", JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
        let header = try token.map { try scratch.write("headers", Data("Authorization: \($0)\n".utf8)) }
        return (body, header)
    }

    /// The answer of one endpoint; nil (with the reason appended) when it could not be reached, so that the
    /// next one is tried. An HTTP error is thrown at once: that etcd answered.
    private func interpret(_ exitCode: Int32, _ stdout: String, _ stderr: String, url: String, failures: inout [String]) throws
        -> [String: Any]?
    {
        guard exitCode == 0 else {
            failures.append("\(url): curl exit \(exitCode): \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            return nil
        }
        var lines = stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.popLast().flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        let text = lines.joined(separator: "\n")
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        guard status == 200, let object else {
            let message = (object?["message"] as? String) ?? (object?["error"] as? String) ?? String(text.prefix(300))
            // A member without quorum answers 503 or a time-out error: another member may have it.
            if status == 0 || status >= 500 {
                failures.append("\(url): HTTP \(status): \(message)")
                return nil
            }
            throw Failure.answered(status: status, message: message, url: url)
        }
        return object
    }

    /// `text` as etcd's gateway carries it (base64).
    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// The text of a base64 field.
    static func text(_ field: Any?) -> String? {
        guard let s = field as? String, let d = Data(base64Encoded: s) else { return nil }
        return String(decoding: d, as: UTF8.self)
    }

    /// The end of a prefix range: `prefix` with its last byte incremented (etcd's `range_end` for "every key
    /// starting with prefix").
    static func rangeEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        bytes[bytes.count - 1] += 1
        return Data(bytes).base64EncodedString()
    }

    /// A 64-bit number as the gateway returns it (a string), or as JSON number.
    static func int(_ field: Any?) -> Int64? {
        if let s = field as? String { return Int64(s) }
        if let n = field as? NSNumber { return n.int64Value }
        return nil
    }
}

extension Spawner {
    /// Waits on the calling thread until `pid` exits; returns its exit status, or 128 + the signal.
    static func waitBlocking(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }
}
