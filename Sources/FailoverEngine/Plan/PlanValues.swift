import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The rules for the strings and numbers of a plan, so that a valid plan means one thing only: every path
/// absolute and normal, every name from a small character set, every host an address or an RFC 1123 name,
/// every number within what failoverd can carry out.
///
/// failoverd runs as root and a plan is input from elsewhere: these rules keep a plan's values from being
/// read as shell syntax, as options, as another spelling of the same directory, or as a way out of a tree.
/// Each check returns nil when the value is acceptable, else what is wrong with it (naming the offending
/// character or part) for the validator to report with its JSON path.
public enum PlanValues {
    /// The characters allowed in a path segment: letters, digits, `.`, `_`, `-` and `+`.
    public static let pathCharacters = "letters A-Z a-z, digits 0-9, and . _ - +"
    /// The characters allowed in a name (plan, site, instance, stanza).
    public static let nameCharacters = "letters A-Z a-z, digits 0-9, and . _ - (starting with a letter or a digit)"
    /// The characters allowed in a PostgreSQL role name.
    public static let roleCharacters = "letters A-Z a-z, digits 0-9 and _ (starting with a letter or _)"
    /// The characters allowed in an OS user name.
    public static let osUserCharacters = "lowercase letters a-z, digits 0-9, _ and - (starting with a letter or _)"

    /// The longest name (PostgreSQL's identifier limit, 63 bytes).
    public static let maximumNameLength = 63
    /// The longest OS user name.
    public static let maximumOSUserLength = 32
    /// The longest path.
    public static let maximumPathLength = 1024
    /// The longest data directory: its unix socket `<dataDirectory>.failoverd/.s.PGSQL.<port>` must fit in
    /// sun_path (107 bytes).
    public static let maximumDataDirectoryLength = 107 - ".failoverd/.s.PGSQL.65535".count
    /// The shortest and longest timeout, in seconds: 1 s to 24 h.
    public static let timeoutRange: ClosedRange<Double> = 1...86_400
    /// The largest byte count (below 2^62, so that sums and differences of LSNs never overflow).
    public static let maximumByteCount: UInt64 = (1 << 62) - 1

    /// A character as shown in messages: `"$" (U+0024)`, or `U+0000` alone for an invisible one.
    public static func describe(_ scalar: Unicode.Scalar) -> String {
        let code =
            "U+" + String(repeating: "0", count: max(0, 4 - String(scalar.value, radix: 16).count))
            + String(scalar.value, radix: 16, uppercase: true)
        return isControl(scalar) || scalar == " " ? "\(code) (\(scalarName(scalar)))" : "\"\(scalar)\" (\(code))"
    }

    /// True for C0 and C1 control characters and DEL.
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func scalarName(_ scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0: "NUL"
        case 0x09: "tab"
        case 0x0A: "line feed"
        case 0x0D: "carriage return"
        case 0x1B: "escape"
        case 0x20: "space"
        case 0x7F: "DEL"
        default: "a control character"
        }
    }

    /// `text` quoted for a message, control characters escaped so that a hostile value cannot drive a terminal.
    public static func quoted(_ text: String) -> String {
        let shown = text.unicodeScalars.count > 80 ? String(String.UnicodeScalarView(text.unicodeScalars.prefix(80))) + "…" : text
        var out = "\""
        for scalar in shown.unicodeScalars {
            if isControl(scalar) || scalar == "\"" || scalar == "\\" {
                out += scalar == "\"" ? "\\\"" : scalar == "\\" ? "\\\\" : String(format: "\\u%04X", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// The first scalar of `text` outside `allowed`, with its position (from 1).
    private static func firstOutside(_ text: String, _ allowed: (Unicode.Scalar) -> Bool) -> (Unicode.Scalar, Int)? {
        for (offset, scalar) in text.unicodeScalars.enumerated() where !allowed(scalar) { return (scalar, offset + 1) }
        return nil
    }

    private static func isLetterOrDigit(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }

    // MARK: Names

    /// A plan, site, instance or stanza name: 1 to 63 of ``nameCharacters``, starting with a letter or digit.
    public static func nameProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if let (scalar, at) = firstOutside(text, { isLetterOrDigit($0) || $0 == "." || $0 == "_" || $0 == "-" }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in a name"
        }
        if let first = text.unicodeScalars.first, !isLetterOrDigit(first) {
            return "starts with \(describe(first)); a name starts with a letter or a digit"
        }
        if text.utf8.count > maximumNameLength { return "is \(text.utf8.count) characters long; at most \(maximumNameLength) are allowed" }
        return nil
    }

    /// A PostgreSQL role: 1 to 63 of ``roleCharacters``.
    public static func roleProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if let (scalar, at) = firstOutside(text, { isLetterOrDigit($0) || $0 == "_" }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in a role name"
        }
        if let first = text.unicodeScalars.first, ("0"..."9").contains(first) {
            return "starts with a digit; a role name starts with a letter or _"
        }
        if text.utf8.count > maximumNameLength { return "is \(text.utf8.count) characters long; at most \(maximumNameLength) are allowed" }
        return nil
    }

    /// An OS user: 1 to 32 of ``osUserCharacters``, and not root.
    public static func osUserProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if let (scalar, at) = firstOutside(text, { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in an OS user name"
        }
        if let first = text.unicodeScalars.first, !(("a"..."z").contains(first) || first == "_") {
            return "starts with \(describe(first)); an OS user name starts with a lowercase letter or _"
        }
        if text.utf8.count > maximumOSUserLength {
            return "is \(text.utf8.count) characters long; at most \(maximumOSUserLength) are allowed"
        }
        if text == "root" { return "is root; PostgreSQL refuses to run as root and failoverd never hands it root's privileges" }
        return nil
    }

    // MARK: Commands

    /// The longest argument of a fencing hook.
    public static let maximumArgumentLength = 1024

    /// A command-line argument passed without a shell: 1 to 1024 characters, no control character.
    public static func argumentProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if let (scalar, at) = firstOutside(text, { !isControl($0) }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in an argument"
        }
        if text.unicodeScalars.count > maximumArgumentLength {
            return "is \(text.unicodeScalars.count) characters long; at most \(maximumArgumentLength) are allowed"
        }
        return nil
    }

    /// A systemd service unit: letters, digits, `@ . _ - :`, starting with a letter or digit, ending in `.service`.
    public static func unitProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if let (scalar, at) = firstOutside(text, { isLetterOrDigit($0) || "@._-:".unicodeScalars.contains($0) }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in a unit name"
        }
        if let first = text.unicodeScalars.first, !isLetterOrDigit(first) { return "starts with \(describe(first))" }
        if !text.hasSuffix(".service") || text.count <= ".service".count { return "does not end in .service" }
        if text.utf8.count > 255 { return "is \(text.utf8.count) characters long; at most 255 are allowed" }
        return nil
    }

    // MARK: Paths

    /// An absolute, normal path: `/` then segments of ``pathCharacters`` separated by single slashes, no `.`
    /// or `..` segment, no trailing slash, not `/` alone, at most `maximumLength` bytes.
    public static func pathProblem(_ text: String, maximumLength: Int = maximumPathLength) -> String? {
        if text.isEmpty { return "is empty" }
        guard text.hasPrefix("/") else { return "is not absolute (it must start with /)" }
        if let (scalar, at) = firstOutside(text, { isLetterOrDigit($0) || "/._-+".unicodeScalars.contains($0) }) {
            return "contains \(describe(scalar)) at character \(at), which is not allowed in a path"
        }
        if text == "/" { return "is the root directory" }
        if text.hasSuffix("/") { return "ends with a slash" }
        if let range = text.range(of: "//") {
            return "has an empty segment (//) at character \(text.distance(from: text.startIndex, to: range.lowerBound) + 1)"
        }
        for segment in text.split(separator: "/") where segment == "." || segment == ".." {
            return "has a \"\(segment)\" segment"
        }
        if text.utf8.count > maximumLength {
            return "is \(text.utf8.count) bytes long; at most \(maximumLength) are allowed"
                + (maximumLength == maximumDataDirectoryLength ? " (its socket path must fit the 107 bytes of a unix socket name)" : "")
        }
        return nil
    }

    /// True when `inner` is `outer` or lies under it (both normal paths).
    public static func isWithin(_ inner: String, _ outer: String) -> Bool {
        inner == outer || inner.hasPrefix(outer + "/")
    }

    // MARK: Hosts

    /// A parsed host: an IPv4 or IPv6 address, or an RFC 1123 host name (lowercased).
    public enum Host: Sendable, Equatable {
        /// Four bytes.
        case ipv4([UInt8])
        /// Sixteen bytes.
        case ipv6([UInt8])
        /// A host name, lowercased.
        case name(String)
    }

    /// `text` parsed as an address or a host name; nil when it is neither (see ``hostProblem(_:)``).
    public static func parseHost(_ text: String) -> Host? {
        if let bytes = ipv4(text) { return .ipv4(bytes) }
        if text.contains(":") { return ipv6(text).map(Host.ipv6) }
        return hostNameProblem(text) == nil ? .name(text.lowercased()) : nil
    }

    /// What is wrong with `text` as a replication slot name (PostgreSQL: lowercase letters, digits, _), or nil.
    public static func slotProblem(_ text: String) -> String? {
        if text.isEmpty || text.utf8.count > 63 { return "is not 1 to 63 characters long" }
        if let bad = text.unicodeScalars.first(where: { !(("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_") }) {
            return "contains \(describe(bad)), which a replication slot name cannot hold"
        }
        return nil
    }

    /// What is wrong with `text` as `HOST:PORT` (an IPv6 address in brackets), or nil.
    public static func endpointProblem(_ text: String) -> String? {
        parseEndpoint(text).problem
    }

    /// `text` as host and port: `HOST:PORT`, `[IPV6]:PORT`.
    public static func parseEndpoint(_ text: String) -> (host: String, port: Int, problem: String?) {
        var host: Substring
        var port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return ("", 0, "is not [IPV6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return ("", 0, "has no :PORT") }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            if host.contains(":") { return ("", 0, "has an IPv6 address without brackets; write [::1]:PORT") }
        }
        if let problem = hostProblem(String(host)) { return ("", 0, "has a host that \(problem)") }
        guard port.allSatisfy({ $0.isASCII && $0.isNumber }), !port.isEmpty, port.count <= 5, let p = Int(port), (1...65535).contains(p),
            !port.hasPrefix("0")
        else { return ("", 0, "has a port that is not a number from 1 to 65535") }
        return (String(host), p, nil)
    }

    /// What is wrong with `text` as a Patroni REST API address (`http://HOST:PORT`, `https://HOST:PORT`,
    /// nothing after the port), or nil.
    public static func urlProblem(_ text: String) -> String? {
        let rest: Substring
        if text.hasPrefix("http://") {
            rest = text.dropFirst(7)
        } else if text.hasPrefix("https://") {
            rest = text.dropFirst(8)
        } else {
            return "does not start with http:// or https://"
        }
        if rest.contains("@") { return "holds a user name; REST credentials belong in the file named by netrcFile" }
        if rest.contains("/") || rest.contains("?") || rest.contains("#") {
            return "has a path, query or fragment; give the scheme, host and port only"
        }
        return endpointProblem(String(rest))
    }

    /// What is wrong with `text` as a host, or nil.
    public static func hostProblem(_ text: String) -> String? {
        if text.isEmpty { return "is empty" }
        if ipv4(text) != nil { return nil }
        if text.contains(":") {
            return ipv6(text) == nil ? "is not an IPv6 address (write it without brackets or zone, e.g. ::1)" : nil
        }
        return hostNameProblem(text)
    }

    private static func hostNameProblem(_ text: String) -> String? {
        if let (scalar, at) = firstOutside(text, { isLetterOrDigit($0) || $0 == "." || $0 == "-" }) {
            return "contains \(describe(scalar)) at character \(at); a host is an IP address or a host name of letters, digits, - and ."
        }
        if text.utf8.count > 253 { return "is \(text.utf8.count) characters long; a host name has at most 253" }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            if label.isEmpty { return "has an empty label (a leading, trailing or doubled dot)" }
            if label.count > 63 { return "has a label of \(label.count) characters; at most 63 are allowed" }
            if label.hasPrefix("-") || label.hasSuffix("-") { return "has a label \"\(label)\" that starts or ends with -" }
        }
        if let last = labels.last, last.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return "looks like an IPv4 address but is not one (four numbers from 0 to 255, e.g. 127.0.0.1)"
        }
        return nil
    }

    /// Four numbers 0-255 in decimal without leading zeros, separated by dots.
    static func ipv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part == "0" || !part.hasPrefix("0"), let value = UInt8(part)
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    /// An IPv6 address in any textual form inet_pton accepts (no brackets, no zone).
    static func ipv6(_ text: String) -> [UInt8]? {
        guard text.utf8.count <= 45, text.unicodeScalars.allSatisfy({ isLetterOrDigit($0) || $0 == ":" || $0 == "." }) else { return nil }
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }
}
