import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Free TCP ports on loopback, for the servers the sandbox and the tests start.
///
/// A port is only free until someone binds it: between this answer and the server's own bind, every
/// outgoing connection on the machine (libpq, ssh, curl) takes a source port from the kernel's ephemeral
/// range, and a port `bind(0)` hands out lies in that very range. So ports are drawn at random below the
/// ephemeral range (from 10000 up to `ip_local_port_range`'s lower bound), checked free by binding them,
/// and never handed out twice by one process; only when that range is too small does it fall back to bind(0).
@_spi(Benchmarks) public enum FreePorts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut: Set<Int> = []

    /// `count` distinct free TCP ports on 127.0.0.1; the sockets are held open until all are found, so
    /// that they differ.
    @_spi(Benchmarks) public static func take(_ count: Int) throws -> [Int] {
        guard let range = quietRange() else { return try ephemeral(count) }
        return try lock.withLock {
            var sockets: [Int32] = []
            defer { sockets.forEach { close($0) } }
            var ports: [Int] = []
            var attempts = 0
            while ports.count < count {
                attempts += 1
                guard attempts <= 10_000 else {
                    throw FailoverError.failed("could not find \(count) free ports in \(range.lowerBound)–\(range.upperBound)")
                }
                let port = Int.random(in: range)
                guard !handedOut.contains(port), !ports.contains(port), let fd = bound(port) else { continue }
                sockets.append(fd)
                ports.append(port)
            }
            handedOut.formUnion(ports)
            return ports
        }
    }

    /// 10000 up to just below the kernel's ephemeral ports, when that leaves at least 2000 ports.
    static func quietRange() -> ClosedRange<Int>? {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        guard let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap({ Int($0) }),
            low - 1 - 10_000 >= 2000
        else { return nil }
        return 10_000...(low - 1)
    }

    /// A socket bound to 127.0.0.1:`port` (0: the kernel's choice), or nil when it is taken; the caller closes it.
    static func bound(_ port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !ok {
            close(fd)
            return nil
        }
        return fd
    }

    /// `count` ports by bind(0), the kernel's choice.
    private static func ephemeral(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [Int] = []
        for _ in 0..<count {
            guard let fd = bound(0) else { throw FailoverError.failed("could not find a free port: \(String(cString: strerror(errno)))") }
            sockets.append(fd)
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}
