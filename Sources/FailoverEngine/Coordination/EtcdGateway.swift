import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's v3 JSON gateway: the one HTTP plumbing failoverd has for etcd, shared by the Patroni fence
/// (``PatroniDCS``) and the coordination of runs (``Coordinator``).
///
/// An `http://` endpoint is called over an HTTP/1.1 connection kept alive between calls (``EtcdConnections``,
/// shared by every copy of this gateway): a coordinated run writes every journal record through it, and a
/// process per record (curl) cost more than etcd's own commit. An `https://` endpoint is called with curl.
///
/// Keys and values travel base64; 64-bit numbers come back as JSON strings; fields at their default value
/// are left out (a missing `succeeded` means false). TLS files come from the plan; a body (which may hold a
/// password) and a token reach curl only through files in a private directory, never its command line, and
/// go over a kept-alive connection only inside the request.
///
/// Endpoints are tried in order; a connection failure, a time-out or an HTTP status of 500 or more moves on
/// to the next one. A request whose answer was lost (sent, then a time-out or a closed connection) is sent
/// to the next member as well, as curl's time-out always did: every call failoverd makes is safe to repeat.
/// A fenced put is (same compare, same values), a read, keepalive or revoke is, a lease granted twice leaves
/// an unused lease that expires by itself, and the lock's create-if-absent transaction is read knowing that
/// the first try may have landed (``Coordinator/acquire(_:wait:)`` recognises its own lease on the key). The
/// same member is asked again only when the request cannot have reached it: a kept-alive connection that
/// the member had closed while idle.
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
    /// Seconds one call may take at one endpoint.
    var timeout: Double = 5
    /// The kept-alive connections to the `http://` endpoints.
    let connections = EtcdConnections()

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

    /// What one endpoint did with a call.
    enum Reply: Sendable {
        /// It answered with this HTTP status and body.
        case answered(status: Int, body: String)
        /// It could not be reached, or its answer was lost; the reason.
        case failed(String)
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

    /// POSTs `json` to `path` at the first endpoint that answers; the kept-alive connection's wait runs off
    /// the cooperative pool (``Blocking``).
    func post(_ path: String, _ json: [String: Any], token: String? = nil) async throws -> [String: Any] {
        let body = try Self.encode(json, token: token)
        var curlFiles: CurlFiles?
        defer { curlFiles?.scratch.remove() }
        var failures: [String] = []
        for endpoint in endpoints {
            let reply: Reply
            if let target = Self.plainHTTP(endpoint) {
                let gateway = self
                reply = await Blocking.run { gateway.exchange(endpoint, target, path, body, token: token) }
            } else {
                if curlFiles == nil { curlFiles = try CurlFiles(body, token: token) }
                let result = try await CommandRunner().run(
                    PatroniREST.curl, arguments(endpoint + path, bodyFile: curlFiles!.body, headerFile: curlFiles!.header),
                    timeout: timeout + 5)
                reply = Self.curlReply(result.exitCode, result.stdout, result.stderr)
            }
            if let answer = try interpret(reply, url: endpoint + path, failures: &failures) { return answer }
        }
        throw Failure.unreachable(failures.joined(separator: "; "))
    }

    /// ``post(_:_:token:)`` on the calling thread: for a journal write that must be acknowledged by etcd
    /// before its SQLite transaction commits (a synchronous GRDB write). ``timeout`` bounds each endpoint.
    func postBlocking(_ path: String, _ json: [String: Any]) throws -> [String: Any] {
        let body = try Self.encode(json, token: nil)
        var curlFiles: CurlFiles?
        defer { curlFiles?.scratch.remove() }
        var failures: [String] = []
        for endpoint in endpoints {
            let reply: Reply
            if let target = Self.plainHTTP(endpoint) {
                reply = exchange(endpoint, target, path, body, token: nil)
            } else {
                if curlFiles == nil { curlFiles = try CurlFiles(body, token: nil) }
                reply = try curlBlocking(endpoint + path, curlFiles!)
            }
            if let answer = try interpret(reply, url: endpoint + path, failures: &failures) { return answer }
        }
        throw Failure.unreachable(failures.joined(separator: "; "))
    }

    // MARK: kept-alive connections (http://)

    /// The host and port of an `http://HOST:PORT` endpoint; nil for any other (https goes through curl).
    static func plainHTTP(_ endpoint: String) -> (host: String, port: Int)? {
        guard endpoint.hasPrefix("http://") else { return nil }
        let parsed = PlanValues.parseEndpoint(String(endpoint.dropFirst("http://".count)))
        return parsed.problem == nil ? (parsed.host, parsed.port) : nil
    }

    /// The request's body; refuses a token that would break out of its header line.
    static func encode(_ json: [String: Any], token: String?) throws -> Data {
        if let token, token.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw Failure.unreachable("etcd gave a token with a control character; it is not sent")
        }
        return try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
    }

    /// One POST over a kept-alive connection to `endpoint`.
    func exchange(_ endpoint: String, _ target: (host: String, port: Int), _ path: String, _ body: Data, token: String?) -> Reply {
        let authority = target.host.contains(":") ? "[\(target.host)]:\(target.port)" : "\(target.host):\(target.port)"
        var head = "POST \(path) HTTP/1.1\r\nHost: \(authority)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        if let token { head += "Authorization: \(token)\r\n" }
        head += "\r\n"
        do {
            let answer = try connections.exchange(
                endpoint: endpoint, host: target.host, port: target.port, request: Array(head.utf8) + Array(body), timeout: timeout)
            return .answered(status: answer.status, body: String(decoding: answer.body, as: UTF8.self))
        } catch let trouble as EtcdConnection.Trouble {
            switch trouble {
            case .notSent(let reason): return .failed(reason)
            case .lost(let reason): return .failed("request sent, then \(reason)")
            }
        } catch {
            return .failed("\(error)")
        }
    }

    // MARK: curl (https://)

    /// The body and the token header of a curl call, in files of a private directory.
    struct CurlFiles {
        let scratch: SecretScratch
        let body: String
        let header: String?

        init(_ body: Data, token: String?) throws {
            let scratch = try SecretScratch()
            do {
                self.body = try scratch.write("body", body)
                header = try token.map { try scratch.write("headers", Data("Authorization: \($0)\n".utf8)) }
            } catch {
                scratch.remove()
                throw error
            }
            self.scratch = scratch
        }
    }

    /// One curl call on the calling thread, its output in the private directory.
    private func curlBlocking(_ url: String, _ files: CurlFiles) throws -> Reply {
        let out = files.scratch.directory + "/out"
        let err = files.scratch.directory + "/err"
        let outFD = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let errFD = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer {
            close(outFD)
            close(errFD)
        }
        let argv = ["curl"] + arguments(url, bodyFile: files.body, headerFile: files.header)
        let pid = try Spawner.spawn(
            PatroniREST.curl, argv, environment: ["PATH=\(CommandRunner.searchPath)", "LANG=C.UTF-8"], workingDirectory: "/",
            stdout: outFD, stderr: errFD, commandLine: "curl " + url)
        let status = Spawner.waitBlocking(pid)
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        return Self.curlReply(status, stdout, stderr)
    }

    /// curl's exit status and output (the body, then the status code on a line of its own) as a reply.
    static func curlReply(_ exitCode: Int32, _ stdout: String, _ stderr: String) -> Reply {
        guard exitCode == 0 else { return .failed("curl exit \(exitCode): \(stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
        var lines = stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.popLast().flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return .answered(status: status, body: lines.joined(separator: "\n"))
    }

    /// The answer of one endpoint; nil (with the reason appended) when it could not be reached, so that the
    /// next one is tried. An HTTP error is thrown at once: that etcd answered.
    private func interpret(_ reply: Reply, url: String, failures: inout [String]) throws -> [String: Any]? {
        guard case .answered(let status, let text) = reply else {
            if case .failed(let reason) = reply { failures.append("\(url): \(reason)") }
            return nil
        }
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
