import Foundation

/// Patroni's REST API, called with curl: credentials from the netrc file the plan names, TLS files from
/// the plan, never a password on a command line or in a log.
@_spi(Benchmarks) public struct PatroniREST: Sendable {
    /// The curl failoverd calls Patroni's REST API and etcd with (``HostTool/curl``).
    static let curl = "/usr/bin/curl"

    /// An answer: the HTTP status and the body.
    @_spi(Benchmarks) public struct Response: Sendable {
        /// The HTTP status.
        @_spi(Benchmarks) public var status: Int
        var body: String

        /// The body as a JSON object, or nil.
        var object: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }
    }

    /// Why a call got no answer.
    enum Failure: Error, CustomStringConvertible {
        /// The connection was refused: nothing listens there, or a filter (a REJECT rule, a middlebox's reset)
        /// answered for the host. No proof of anything on its own.
        case refused(String)
        /// No answer in time, no route, TLS or name failure: nothing is known.
        case unreachable(String)

        var description: String {
            switch self {
            case .refused(let s): "connection refused (\(s))"
            case .unreachable(let s): s
            }
        }
    }

    let cluster: PatroniCluster
    let runner: CommandRunner
    /// Seconds one call may take.
    var timeout: Double = 5

    /// GET `path` of the member at `url`.
    func get(_ url: String, _ path: String) async throws -> Response {
        try await call("GET", url, path, body: nil)
    }

    /// PATCH `path` with a JSON body.
    @_spi(Benchmarks) public func patch(_ url: String, _ path: String, json: Any) async throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        return try await call("PATCH", url, path, body: String(decoding: data, as: UTF8.self))
    }

    /// POST `path` with a JSON body.
    func post(_ url: String, _ path: String, json: Any) async throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        return try await call("POST", url, path, body: String(decoding: data, as: UTF8.self))
    }

    /// The curl arguments of one call; exposed for the test that no secret reaches them.
    func arguments(_ method: String, _ url: String, _ path: String, body: String?) -> [String] {
        var args = [
            "-q",  // first, or curl reads a curlrc (root's own, or CURL_HOME's) that adds options to every call
            "--silent", "--show-error", "--max-time", String(Int(timeout.rounded(.up))), "--connect-timeout", "3", "--request", method,
            "--write-out", "\n%{http_code}", "--header", "Accept: application/json",
        ]
        if let body { args += ["--header", "Content-Type: application/json", "--data-binary", body] }
        if let netrc = cluster.netrcFile { args += ["--netrc-file", netrc] }
        if let ca = cluster.caFile { args += ["--cacert", ca] }
        if let cert = cluster.certFile { args += ["--cert", cert] }
        if let key = cluster.keyFile { args += ["--key", key] }
        args += ["--", url + path]
        return args
    }

    func call(_ method: String, _ url: String, _ path: String, body: String?) async throws -> Response {
        let result = try await runner.run(Self.curl, arguments(method, url, path, body: body), timeout: timeout + 5)
        guard result.succeeded else {
            let reason = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            // 7: could not connect, for a refusal and a missing route alike: ask the socket itself, so that the
            // message says which (a refusal still proves nothing: a filter refuses for the host).
            // (A connect that may wait up to its timeout: off the cooperative pool.)
            if result.exitCode == 7, let endpoint = Self.endpoint(of: url),
                await Blocking.run({ TCPProbe.isRefused(host: endpoint.host, port: endpoint.port) })
            {
                throw Failure.refused("\(method) \(url)\(path)")
            }
            throw Failure.unreachable("\(method) \(url)\(path): curl exit \(result.exitCode): \(reason)")
        }
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = lines.popLast().flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
        return Response(status: status, body: lines.joined(separator: "\n"))
    }

    /// The host and port of `http(s)://HOST:PORT`.
    static func endpoint(of url: String) -> (host: String, port: Int)? {
        let rest = url.hasPrefix("https://") ? String(url.dropFirst(8)) : url.hasPrefix("http://") ? String(url.dropFirst(7)) : ""
        let e = PlanValues.parseEndpoint(rest)
        return e.problem == nil ? (e.host, e.port) : nil
    }
}
