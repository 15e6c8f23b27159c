import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// A host behind a firewall's REJECT rule, on this machine: a network namespace (`fodpat-*`, never the lab's
/// `fodlab-*`) with the address 198.19.254.10 (a /24 of 198.18.0.0/15 the lab does not use), listeners on
/// `ports` in it (the servers run), and an nftables rule that rejects TCP to those ports with ICMP port
/// unreachable, as iptables' and nft's REJECT do by default: a client gets ECONNREFUSED while the servers run.
/// Built by `with`, removed on every path. Needs root and nft; run under `flock /work/.lab.lock`.
struct FilteredHost {
    static let address = "198.19.254.10"
    static let controlAddress = "198.19.254.1"

    let namespace = "fodpat-\(getpid())"
    let link = "fph\(getpid())"

    static func with(ports: [Int], _ body: () async throws -> Void) async throws {
        let host = FilteredHost()
        let root = CommandRunner(user: nil, defaultTimeout: 30)
        var listener: ChildProcess?
        do {
            try await root.run("/usr/sbin/ip", ["netns", "add", host.namespace]).checked()
            try await root.run(
                "/usr/sbin/ip", ["link", "add", host.link, "type", "veth", "peer", "name", "fpn\(getpid())", "netns", host.namespace]
            )
            .checked()
            try await root.run("/usr/sbin/ip", ["addr", "add", controlAddress + "/24", "dev", host.link]).checked()
            try await root.run("/usr/sbin/ip", ["link", "set", host.link, "up"]).checked()
            try await root.run("/usr/sbin/ip", ["-n", host.namespace, "addr", "add", address + "/24", "dev", "fpn\(getpid())"]).checked()
            try await root.run("/usr/sbin/ip", ["-n", host.namespace, "link", "set", "fpn\(getpid())", "up"]).checked()
            try await root.run("/usr/sbin/ip", ["-n", host.namespace, "link", "set", "lo", "up"]).checked()
            let rules = """
                table inet failoverd_test {
                    chain input {
                        type filter hook input priority 0; policy accept;
                        tcp dport { \(ports.map(String.init).joined(separator: ", ")) } reject with icmpx type port-unreachable
                    }
                }
                """
            let file = NSTemporaryDirectory() + "fodpat-\(getpid()).nft"
            try rules.write(toFile: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await root.run("/usr/sbin/ip", ["netns", "exec", host.namespace, "/usr/sbin/nft", "-f", file]).checked()
            // The servers run: a listener on every port, behind the filter.
            let code = """
                import socket, time
                s = []
                for p in [\(ports.map(String.init).joined(separator: ", "))]:
                    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("\(address)", p)); l.listen(); s.append(l)
                print("listening", flush=True)
                time.sleep(600)
                """
            let p = try ChildProcess.start(
                "/usr/sbin/ip", ["ip", "netns", "exec", host.namespace, "/usr/bin/python3", "-c", code],
                environment: ["PATH=" + CommandRunner.searchPath], workingDirectory: "/",
                commandLine: "python3 listener in \(host.namespace)")
            listener = p
            // "listening": the sockets are bound.
            _ = try await Poll.until("the listeners in \(host.namespace)", timeout: 30, interval: 0.05) { () throws -> Bool? in
                if p.outputSoFar().contains("listening") { return true }
                guard p.isRunning else {
                    throw Poll.Abort(error: FailoverError.failed("the listeners exited: \(p.errorSoFar())"))
                }
                return nil
            }
            try await body()
        } catch {
            await host.remove(listener)
            throw error
        }
        await host.remove(listener)
    }

    func remove(_ listener: ChildProcess?) async {
        if let listener {
            listener.signal(SIGKILL)
            _ = await listener.wait()
        }
        let root = CommandRunner(user: nil, defaultTimeout: 30)
        _ = try? await root.run("/usr/sbin/ip", ["link", "del", link])
        _ = try? await root.run("/usr/sbin/ip", ["netns", "del", namespace])
    }
}

/// #20: a refused connection over the network is not "stopped", and Patroni plans are seen through Patroni.
/// Network namespaces with nftables; run under `flock /work/.lab.lock`.
@Suite(.serialized) struct PatroniNetworkTests {
    static let ports = (postgres: 5432, rest: 8008, etcd: 2379, drPostgres: 5433, drRest: 8009)

    /// A plan whose two Patroni sites live on the filtered host.
    static func filteredPlan() throws -> (String, Plan) {
        let (root, base) = try SandboxFixture.makePlan(
            [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)], archiveTimeout: 60, patroni: true)
        var plan = base
        let a = FilteredHost.address
        plan.sites[0].instances[0].host = a
        plan.sites[0].instances[0].port = ports.postgres
        plan.sites[0].instances[0].patroni = PatroniMember(url: "http://\(a):\(ports.rest)")
        plan.sites[0].patroni?.etcd = "\(a):\(ports.etcd)"
        plan.sites[1].instances[0].host = a
        plan.sites[1].instances[0].port = ports.drPostgres
        plan.sites[1].instances[0].patroni = PatroniMember(url: "http://\(a):\(ports.drRest)")
        plan.sites[1].patroni?.etcd = "\(a):\(ports.etcd)"
        return (root, plan)
    }

    static func write(_ plan: Plan, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(plan).write(to: URL(fileURLWithPath: path))
    }

    @Test("members behind a REJECT filter are unknown, never stopped: the fence refuses, check says unreachable, adopt refuses")
    func rejectIsNotStopped() async throws {
        let (root, plan) = try Self.filteredPlan()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try await FilteredHost.with(ports: [
            Self.ports.postgres, Self.ports.rest, Self.ports.etcd, Self.ports.drPostgres, Self.ports.drRest,
        ]) {
            let prod = plan.sites[0]
            let driver = PatroniSite(plan: plan, timeout: 5, pollInterval: 0.1)
            let status = try await driver.memberStatus(prod, prod.leader)
            #expect(status.running && !status.reachable, "\(status.seen)")
            #expect(status.unreachableReason?.contains("connection refused") == true, "\(status.unreachableReason ?? "")")
            await #expect(throws: UnseenMembers.self) { _ = try await driver.fence(prod, reason: "test") }

            let path = root + "/filtered.json"
            try Self.write(plan, to: path)
            let state = root + "/state"
            let check = try await CLI.run(["check", path, "--json", "--state", state])
            #expect(check.status == 1, "\(check.stdout)\(check.stderr)")
            let report = try JSONDecoder().decode(TopologyCheck.Report.self, from: Data(check.stdout.utf8))
            #expect(report.instances.allSatisfy { $0.seen == "unreachable" }, "\(report.instances.map(\.seen))")
            let adopt = try await CLI.run(["adopt", path, "--state", state])
            #expect(adopt.status == 3, "\(adopt.stdout)\(adopt.stderr)")
            #expect(adopt.stderr.contains("dr-0"), "\(adopt.stderr)")
            #expect(try Journal(stateDirectory: state).recordedRoles().isEmpty)
        }
    }

    @Test("a failover away from a Patroni site behind a REJECT filter is refused (exit 3): it is not recorded fenced, nothing is promoted")
    func failoverAwayFromFilteredSiteIsRefused() async throws {
        try await SandboxFixture.with(
            [SiteLayout(name: "prod", role: .primary), SiteLayout(name: "dr", role: .streamingStandby)], patroni: true
        ) { fx in
            let dr = fx.instance("dr-0")
            var plan = fx.plan
            let a = FilteredHost.address
            plan.sites[0].instances[0].host = a
            plan.sites[0].instances[0].port = Self.ports.postgres
            plan.sites[0].instances[0].patroni = PatroniMember(url: "http://\(a):\(Self.ports.rest)")
            plan.sites[0].patroni?.etcd = "\(a):\(Self.ports.etcd)"
            plan.transitions = [Transition(action: .failover, to: "dr")]
            let path = fx.root + "/filtered-failover.json"
            try Self.write(plan, to: path)
            try await FilteredHost.with(ports: [Self.ports.postgres, Self.ports.rest, Self.ports.etcd]) {
                let run = try await fx.failoverd(["run", path, "--quiet"])
                #expect(run.status == 3, "\(run.stderr)")
                #expect(run.stderr.contains("prod-0") && run.stderr.contains("--assume-fenced prod"), "\(run.stderr)")
                #expect(run.stderr.contains("Nothing was changed"), "\(run.stderr)")
            }
            #expect(try await fx.driver.status(of: dr).inRecovery, "dr-0 was promoted")
            #expect(try Journal(stateDirectory: fx.state).recordedRoles()["dr"] != .primary)
        }
    }
}
