import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The lab's network faults and its status.
extension Lab {
    /// Cuts the links of `site`'s hosts (a clean partition: packets are dropped, connections time out).
    public func partition(site: String) async throws {
        for index in try hostIndexes(of: site) { try await root("/usr/sbin/ip", ["link", "set", link(index), "down"]) }
    }

    /// Restores the links of `site`'s hosts.
    public func heal(site: String) async throws {
        for index in try hostIndexes(of: site) { try await root("/usr/sbin/ip", ["link", "set", link(index), "up"]) }
        try await forgetFailedNeighbours()
    }

    /// Flushes the neighbour caches of the bridge and of every host: addresses that did not answer while a
    /// link was cut stay FAILED for a while ("No route to host") after it is back.
    func forgetFailedNeighbours() async throws {
        _ = try await ip(["neigh", "flush", "dev", bridge])
        for index in hosts.indices { _ = try await ip(["-n", namespace(index), "neigh", "flush", "all"]) }
        if witnessAddress != nil { _ = try await ip(["-n", witnessNamespace, "neigh", "flush", "all"]) }
    }

    /// Cuts the control host off every site (its address leaves the bridge); the sites still reach each other.
    public func isolateControl() async throws {
        try await root("/usr/sbin/ip", ["addr", "del", Self.controlAddress + "/15", "dev", bridge])
    }

    /// Gives the control host its address on the bridge again.
    public func reconnectControl() async throws {
        try await root("/usr/sbin/ip", ["addr", "replace", Self.controlAddress + "/15", "dev", bridge])
        try await forgetFailedNeighbours()
    }

    /// The sshd log of every host (sshd logs each session it starts, with the client's address).
    func sshdLogs() -> [String] { hosts.indices.map { directory + "/host-\($0)/sshd.log" } }

    /// The size of a file in bytes, 0 when it does not exist.
    static func fileSize(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// The lines `path` gained past `offset` (a log read back after a fault).
    static func lines(of path: String, after offset: UInt64) -> [String] {
        guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.readToEnd() else { return [] }
        return String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init)
    }

    /// One line per host: namespace, link state, sshd; the witness and the etcd members of a coordinated plan;
    /// then one per instance as the SSH driver sees it.
    public func status() async throws -> [String] {
        guard let manifest = try LabManifest.load(for: plan, in: stateDirectory) else {
            return ["lab \(plan.name): down (no \(manifestPath))"]
        }
        var lines: [String] = []
        let namespaces = try await existingNamespaces()
        for (index, host) in hosts.enumerated() {
            let up = try await ip(["-o", "link", "show", "dev", link(index)]).stdout.contains("state UP")
            let sshd = manifest.processes.first { $0.what == "sshd \(host)" }
            let alive = sshd.map { ProcessIdentity.matches(pid: $0.pid, startTime: $0.startTime, tolerance: 0.01) } ?? false
            lines.append(
                "host \(host): namespace \(namespace(index)) \(namespaces.contains(namespace(index)) ? "present" : "missing"), link \(link(index)) \(up ? "up" : "down (cut)"), sshd \(alive ? "pid \(sshd!.pid)" : "not running")"
            )
        }
        if let witness = witnessAddress {
            let up = try await ip(["-o", "link", "show", "dev", witnessLink]).stdout.contains("state UP")
            lines.append(
                "witness \(witness): namespace \(witnessNamespace) \(namespaces.contains(witnessNamespace) ? "present" : "missing"), link \(witnessLink) \(up ? "up" : "down (cut)")"
            )
        }
        lines += await etcdStatus(manifest)
        let driver = try SSHPostgresDriver(plan: plan, stateDirectory: stateDirectory, logger: logger)
        for (site, instance) in plan.allInstances {
            let status = try await driver.status(of: instance)
            lines.append("\(site.name)/\(instance.name) on \(instance.host):\(instance.port): \(status.seen)")
        }
        return lines
    }
}
