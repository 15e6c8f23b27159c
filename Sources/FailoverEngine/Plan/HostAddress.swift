import Foundation

/// Whether an address names this host: loopback, localhost, this host's name, or one of its interfaces.
///
/// Decided on the parsed address (``PlanValues/parseHost(_:)``), never on a prefix of the text:
/// `127.0.0.1` and `::ffff:127.0.0.1` are local, `127.evil.example` is a host name like any other.
enum HostAddress {
    static func isLocal(_ host: String) -> Bool {
        guard let parsed = PlanValues.parseHost(host) else { return false }
        switch parsed {
        case .ipv4(let bytes):
            if bytes[0] == 127 { return true }
        case .ipv6(let bytes):
            if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
            // An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 address.
            if bytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] {
                return isLocal(bytes.suffix(4).map(String.init).joined(separator: "."))
            }
        case .name(let name):
            let bare = name.hasSuffix(".") ? String(name.dropLast()) : name
            return bare == "localhost" || bare == ProcessInfo.processInfo.hostName.lowercased()
        }
        return interfaceAddresses().compactMap(PlanValues.parseHost).contains(parsed)
    }

    /// True for a loopback address (127.0.0.0/8, ::1) or localhost: the sandbox's daemons listen only there.
    static func isLoopback(_ host: String) -> Bool {
        switch PlanValues.parseHost(host) {
        case .ipv4(let bytes)?: bytes[0] == 127
        case .ipv6(let bytes)?: bytes == [UInt8](repeating: 0, count: 15) + [1]
        case .name(let name)?: name == "localhost"
        case nil: false
        }
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
                let length = socklen_t(
                    addr.pointee.sa_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
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
