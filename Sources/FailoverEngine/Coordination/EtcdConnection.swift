import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP/1.1 connection to an etcd member's client URL (`http://HOST:PORT`), kept alive between calls:
/// a blocking POSIX socket with TCP_NODELAY, every read and write bounded by the call's deadline (poll).
/// One request at a time: ``EtcdConnections`` hands a connection to one caller until its answer is read.
final class EtcdConnection {
    /// `HOST:PORT` as the Host header carries it.
    let authority: String
    private var fd: Int32
    /// Bytes read past the last answer (none with etcd, which answers one request at a time).
    private var buffer: [UInt8] = []

    private init(fd: Int32, authority: String) {
        self.fd = fd
        self.authority = authority
    }

    deinit { close() }

    /// Closes the socket (again: harmless).
    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// The socket's local port: what the kernel shows of this connection (tests tell a reused connection by it).
    var localPort: Int? {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { return nil }
        return withUnsafePointer(to: &address) { p -> Int? in
            switch Int32(p.pointee.ss_family) {
            case AF_INET: return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            case AF_INET6:
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            default: return nil
            }
        }
    }

    /// Why an exchange failed, and whether the request can have reached the server.
    enum Trouble: Error, CustomStringConvertible {
        /// Nothing was sent: the connection could not be made, or the socket refused the request's bytes.
        case notSent(String)
        /// The request was sent (it may have been applied) but no whole answer came back.
        case lost(String)

        var description: String {
            switch self {
            case .notSent(let s), .lost(let s): s
            }
        }
    }

    /// A connection to `host`:`port`, made within `connectTimeout` seconds (and before `deadline`).
    static func open(host: String, port: Int, connectTimeout: Double, deadline: Double) throws -> EtcdConnection {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            throw Trouble.notSent("cannot resolve \(host): \(String(cString: gai_strerror(resolved)))")
        }
        defer { freeaddrinfo(list) }
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let until = min(deadline, Coordinator.now() + connectTimeout)
        var reason = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let a = entry {
            entry = a.pointee.ai_next
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else {
                reason = "socket: \(Self.errorText(errno))"
                continue
            }
            var error: Int32 = 0
            if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 {
                error = errno
                if error == EINPROGRESS {
                    error = Self.wait(fd, for: Int16(POLLOUT), until: until) ? Self.socketError(fd) : ETIMEDOUT
                }
            }
            guard error == 0 else {
                _ = Glibc.close(fd)
                reason = error == ETIMEDOUT ? "connection not made within \(Self.seconds(connectTimeout))" : Self.errorText(error)
                continue
            }
            // Blocking from now on; every read and write still waits in poll first, bounded by the deadline.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return EtcdConnection(fd: fd, authority: authority)
        }
        throw Trouble.notSent("cannot connect: \(reason)")
    }

    /// Whether the connection still looks usable before a request: the server has not closed it (nor sent
    /// anything unasked) while it sat idle.
    var isQuiet: Bool {
        guard fd >= 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0 && buffer.isEmpty
    }

    /// Sends `request` whole, before `deadline`. A failure means the server cannot have received the whole
    /// request, so cannot have acted on it.
    func send(_ request: [UInt8], deadline: Double) throws {
        var offset = 0
        while offset < request.count {
            guard Self.wait(fd, for: Int16(POLLOUT), until: deadline) else { throw Trouble.notSent("could not send the request in time") }
            let n = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, request.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Trouble.notSent("sending: \(Self.errorText(errno))")
            }
            offset += n
        }
    }

    /// One HTTP answer.
    struct Answer {
        /// The status code.
        var status: Int
        /// The body, decoded from chunks when it came chunked.
        var body: [UInt8]
        /// Whether the connection can carry another request.
        var keepAlive: Bool
    }

    /// Reads one answer before `deadline`: the status line, the headers, then a body of `Content-Length`
    /// bytes, in chunks (`Transfer-Encoding: chunked`), or up to the end of the connection.
    func receive(deadline: Double, timeout: Double) throws -> Answer {
        let head = try readHead(deadline: deadline, timeout: timeout)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw Trouble.lost("not an HTTP answer: \(String(head.prefix(80)))")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces).lowercased()
        }
        var keepAlive = statusLine[0] == "HTTP/1.1" ? headers["connection"] != "close" : headers["connection"] == "keep-alive"
        let body: [UInt8]
        if let coding = headers["transfer-encoding"], coding != "identity" {
            guard coding.hasSuffix("chunked") else { throw Trouble.lost("unsupported Transfer-Encoding: \(coding)") }
            body = try readChunked(deadline: deadline, timeout: timeout)
        } else if let text = headers["content-length"] {
            guard let length = Int(text), length >= 0, length <= Self.maxBody else { throw Trouble.lost("bad Content-Length: \(text)") }
            body = try read(exactly: length, deadline: deadline, timeout: timeout)
        } else if status == 204 || status == 304 || (100..<200).contains(status) {
            body = []
        } else {
            body = try readToEnd(deadline: deadline, timeout: timeout)
            keepAlive = false
        }
        return Answer(status: status, body: body, keepAlive: keepAlive && buffer.isEmpty)
    }

    /// The largest body accepted (etcd's own limit on a request is 1.5 MiB; a range answer can be larger).
    static let maxBody = 256 << 20

    // MARK: reading

    /// Reads more bytes into the buffer; false at the end of the connection.
    private func fill(deadline: Double, timeout: Double) throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            guard Self.wait(fd, for: Int16(POLLIN), until: deadline) else {
                throw Trouble.lost("no answer within \(Self.seconds(timeout))")
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Trouble.lost("reading the answer: \(Self.errorText(errno))")
            }
            if n == 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
    }

    private func readHead(deadline: Double, timeout: Double) throws -> String {
        let end: [UInt8] = [13, 10, 13, 10]
        var searched = 0
        while true {
            if buffer.count >= 4 {
                for i in max(0, searched - 3)...(buffer.count - 4) where buffer[i..<(i + 4)].elementsEqual(end) {
                    let head = String(decoding: buffer[0..<i], as: UTF8.self)
                    buffer.removeFirst(i + 4)
                    return head
                }
                searched = buffer.count
            }
            guard buffer.count < 64 << 10 else { throw Trouble.lost("the answer's headers exceed 64 KiB") }
            guard try fill(deadline: deadline, timeout: timeout) else {
                throw Trouble.lost(
                    buffer.isEmpty ? "the connection was closed without an answer" : "the connection was closed inside the answer's headers"
                )
            }
        }
    }

    private func read(exactly count: Int, deadline: Double, timeout: Double) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill(deadline: deadline, timeout: timeout) else {
                throw Trouble.lost("the connection was closed after \(buffer.count) of \(count) bytes of the answer")
            }
        }
        let out = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return out
    }

    private func readLine(deadline: Double, timeout: Double) throws -> String {
        while true {
            if let i = buffer.indices.dropLast().first(where: { buffer[$0] == 13 && buffer[$0 + 1] == 10 }) {
                let line = String(decoding: buffer[0..<i], as: UTF8.self)
                buffer.removeFirst(i + 2)
                return line
            }
            guard buffer.count < 64 << 10 else { throw Trouble.lost("a chunk line exceeds 64 KiB") }
            guard try fill(deadline: deadline, timeout: timeout) else {
                throw Trouble.lost("the connection was closed inside a chunked answer")
            }
        }
    }

    private func readChunked(deadline: Double, timeout: Double) throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let line = try readLine(deadline: deadline, timeout: timeout)
            let size = line.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard let count = Int(size, radix: 16), count >= 0, body.count + count <= Self.maxBody else {
                throw Trouble.lost("bad chunk size: \(String(line.prefix(40)))")
            }
            if count == 0 {
                // Trailers, up to the empty line.
                while try !readLine(deadline: deadline, timeout: timeout).isEmpty {}
                return body
            }
            body += try read(exactly: count, deadline: deadline, timeout: timeout)
            guard try readLine(deadline: deadline, timeout: timeout).isEmpty else { throw Trouble.lost("a chunk does not end with CRLF") }
        }
    }

    private func readToEnd(deadline: Double, timeout: Double) throws -> [UInt8] {
        while try fill(deadline: deadline, timeout: timeout) {
            guard buffer.count <= Self.maxBody else { throw Trouble.lost("the answer exceeds \(Self.maxBody >> 20) MiB") }
        }
        defer { buffer = [] }
        return buffer
    }

    // MARK: the socket

    /// Waits until `fd` is ready for `events` (or has an error or hang-up to report), at most until `deadline`.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: Double) -> Bool {
        while true {
            let left = deadline - Coordinator.now()
            guard left > 0 else { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&p, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }
        }
    }

    private static func socketError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 ? error : errno
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }

    static func seconds(_ s: Double) -> String { String(format: "%.1f s", s) }
}

/// The kept-alive connections of one ``EtcdGateway``, by endpoint: a caller takes an idle one (or opens a
/// new one) for one request and gives it back once the answer is read, so the keepalive task and the
/// journal, calling at once, each use their own and never interleave two requests on one socket.
final class EtcdConnections: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [String: [EtcdConnection]] = [:]
    private var openedCount: [String: Int] = [:]

    /// Idle connections kept per endpoint.
    static let keptPerEndpoint = 4

    /// How many connections were opened to `endpoint` so far.
    func opened(_ endpoint: String) -> Int { lock.withLock { openedCount[endpoint] ?? 0 } }

    /// The local ports of the idle connections to `endpoint` (what the kernel shows of them).
    func idlePorts(_ endpoint: String) -> [Int] { lock.withLock { (idle[endpoint] ?? []).compactMap(\.localPort) } }

    /// Closes every idle connection.
    func closeAll() {
        let all = lock.withLock { () -> [EtcdConnection] in
            defer { idle = [:] }
            return idle.values.flatMap { $0 }
        }
        for c in all { c.close() }
    }

    /// Sends `request` to `host`:`port` and reads its answer, over an idle connection when there is one.
    ///
    /// A connection found closed before the request goes out is dropped and another made. When sending fails
    /// on a reused connection (the server closed it while it sat idle), the request cannot have been
    /// received: it is sent once more over a new connection. Once the request was sent, a failure is
    /// ``EtcdConnection/Trouble/lost(_:)``: never repeated here, since the server may have applied it.
    func exchange(endpoint: String, host: String, port: Int, request: [UInt8], timeout: Double) throws
        -> EtcdConnection.Answer
    {
        let deadline = Coordinator.now() + timeout
        let connectTimeout = min(timeout, 2)
        var reused: EtcdConnection?
        while let c = take(endpoint) {
            if c.isQuiet {
                reused = c
                break
            }
            c.close()
        }
        var connection: EtcdConnection
        if let reused {
            connection = reused
            do {
                try connection.send(request, deadline: deadline)
            } catch {
                connection.close()
                connection = try connect(endpoint, host, port, connectTimeout, deadline)
                try sendOrClose(connection, request, deadline)
            }
        } else {
            connection = try connect(endpoint, host, port, connectTimeout, deadline)
            try sendOrClose(connection, request, deadline)
        }
        let answer: EtcdConnection.Answer
        do {
            answer = try connection.receive(deadline: deadline, timeout: timeout)
        } catch {
            connection.close()
            throw error
        }
        if answer.keepAlive { give(endpoint, connection) } else { connection.close() }
        return answer
    }

    private func connect(_ endpoint: String, _ host: String, _ port: Int, _ connectTimeout: Double, _ deadline: Double)
        throws -> EtcdConnection
    {
        let c = try EtcdConnection.open(host: host, port: port, connectTimeout: connectTimeout, deadline: deadline)
        lock.withLock { openedCount[endpoint, default: 0] += 1 }
        return c
    }

    private func sendOrClose(_ c: EtcdConnection, _ request: [UInt8], _ deadline: Double) throws {
        do { try c.send(request, deadline: deadline) } catch {
            c.close()
            throw error
        }
    }

    private func take(_ endpoint: String) -> EtcdConnection? {
        lock.withLock { idle[endpoint]?.popLast() }
    }

    private func give(_ endpoint: String, _ c: EtcdConnection) {
        let extra = lock.withLock { () -> EtcdConnection? in
            guard (idle[endpoint]?.count ?? 0) < Self.keptPerEndpoint else { return c }
            idle[endpoint, default: []].append(c)
            return nil
        }
        extra?.close()
    }
}
