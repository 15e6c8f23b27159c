import Foundation

/// Whether an address names this host: loopback, localhost, this host's name, or one of its interfaces.
enum LocalHost {
    static func isLocal(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "::1" || h.hasPrefix("127.") || h.hasPrefix("/") { return true }
        if h == ProcessInfo.processInfo.hostName.lowercased() { return true }
        return interfaceAddresses().contains(h)
    }

    /// The IPv4 and IPv6 addresses of this host's interfaces.
    static func interfaceAddresses() -> Set<String> {
        var result: Set<String> = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return result }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            if let addr = entry.pointee.ifa_addr {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                let length = socklen_t(addr.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
                if [sa_family_t(AF_INET), sa_family_t(AF_INET6)].contains(addr.pointee.sa_family),
                    getnameinfo(addr, length, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0
                {
                    result.insert(String(cString: buffer).split(separator: "%").first.map(String.init)?.lowercased() ?? "")
                }
            }
            cursor = entry.pointee.ifa_next
        }
        return result
    }
}
