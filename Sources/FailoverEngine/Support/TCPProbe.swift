import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a TCP connection attempt proves.
enum TCPProbe {
    /// True only when the connection was refused (ECONNREFUSED): the host answered that nothing listens on
    /// the port, or a filter answered for it (a REJECT rule's ICMP port unreachable, a middlebox's reset), so
    /// this alone never proves a server stopped. A timeout, a missing route or an unresolvable name are false.
    static func isRefused(host: String, port: Int, timeout: Double = 2) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(list) }
        var refusedAll = true
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let a = entry {
            defer { entry = a.pointee.ai_next }
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype | Int32(SOCK_NONBLOCK.rawValue), a.pointee.ai_protocol)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            if connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return false }
            if errno == ECONNREFUSED { continue }
            guard errno == EINPROGRESS else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return false }
            var error: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0, error == ECONNREFUSED else {
                refusedAll = false
                return false
            }
        }
        return refusedAll
    }
}
