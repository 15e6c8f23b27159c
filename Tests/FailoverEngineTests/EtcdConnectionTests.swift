import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's JSON gateway over kept-alive HTTP/1.1 connections (``EtcdGateway``, ``EtcdConnections``), against
/// a real three-member etcd: one connection reused across calls (seen in the kernel's table of this
/// process's TCP connections), a stopped, a frozen (SIGSTOP) and a restarted member.
struct EtcdConnectionCoordinationTests {
    /// The local ports of this process's established TCP connections to `port` on loopback, from
    /// /proc/net/tcp and /proc/self/fd: what the kernel says, not what the gateway says.
    static func connections(to port: Int) -> [Int] {
        var inodes = Set<String>()
        for fd in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd), link.hasPrefix("socket:[") {
                inodes.insert(String(link.dropFirst("socket:[".count).dropLast()))
            }
        }
        var ports: [Int] = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in (Files.read(table) ?? "").split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                // sl, local address, remote address, state (01 established), ..., inode (field 9).
                guard f.count > 9, f[3] == "01", inodes.contains(String(f[9])),
                    let remote = f[2].split(separator: ":").last.flatMap({ Int($0, radix: 16) }), remote == port,
                    let local = f[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) })
                else { continue }
                ports.append(local)
            }
        }
        return ports.sorted()
    }

    static func port(_ endpoint: String) -> Int { Int(endpoint.split(separator: ":").last!)! }

    static func range(_ gateway: EtcdGateway, _ key: String) throws -> [String: Any] {
        try gateway.postBlocking("/v3/kv/range", ["key": EtcdGateway.b64(key)])
    }

    @Test("many calls answered over one kept-alive connection: one connection in the kernel's table, its port the same throughout")
    func oneConnection() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let endpoint = etcd.endpoints[0]
            let gateway = EtcdGateway(endpoints: [endpoint], settingsHint: "test")
            #expect(Self.connections(to: Self.port(endpoint)).isEmpty)
            _ = try await gateway.post("/v3/kv/put", ["key": EtcdGateway.b64("/t/a"), "value": EtcdGateway.b64("1")])
            let first = Self.connections(to: Self.port(endpoint))
            #expect(first.count == 1, "\(first)")
            var seen = Set(first)
            for i in 0..<50 {
                let answer =
                    try i % 2 == 0 ? Self.range(gateway, "/t/a") : await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64("/t/a")])
                #expect(EtcdGateway.text((answer["kvs"] as? [[String: Any]])?.first?["value"]) == "1")
                seen.formUnion(Self.connections(to: Self.port(endpoint)))
            }
            #expect(seen == Set(first), "connections seen: \(seen), first \(first)")
            #expect(gateway.connections.opened(endpoint) == 1)
            #expect(gateway.connections.idlePorts(endpoint) == first)
        }
    }

    @Test("two callers at once (the keepalive and the journal) each get a connection of their own: every answer whole and right")
    func concurrentCallers() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let endpoint = etcd.endpoints[0]
            let gateway = EtcdGateway(endpoints: [endpoint], settingsHint: "test")
            // A value large enough that etcd answers its range in chunks (Transfer-Encoding: chunked).
            let big = String(repeating: "x", count: 150_000)
            _ = try await gateway.post("/v3/kv/put", ["key": EtcdGateway.b64("/t/big"), "value": EtcdGateway.b64(big)])
            _ = try await gateway.post("/v3/kv/put", ["key": EtcdGateway.b64("/t/small"), "value": EtcdGateway.b64("s")])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (key, value) in [("/t/big", big), ("/t/small", "s")] {
                    group.addTask {
                        for _ in 0..<20 {
                            let read = try await Blocking.run {
                                EtcdGateway.text((try Self.range(gateway, key)["kvs"] as? [[String: Any]])?.first?["value"])
                            }
                            #expect(read == value)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect((1...2).contains(gateway.connections.opened(endpoint)), "\(gateway.connections.opened(endpoint))")
        }
    }

    @Test("a stopped member: the next endpoint answers; with every member stopped, the error names each one and why")
    func stoppedMember() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let gateway = EtcdGateway(endpoints: etcd.endpoints, settingsHint: "test", timeout: 3)
            _ = try Self.range(gateway, "/t/a")
            #expect(gateway.connections.opened(etcd.endpoints[0]) == 1)
            await etcd.stop(0)
            let answer = try Self.range(gateway, "/t/a")
            #expect(answer["header"] != nil)
            #expect(gateway.connections.opened(etcd.endpoints[1]) == 1)
            await etcd.stop(1)
            await etcd.stop(2)
            do {
                _ = try Self.range(gateway, "/t/a")
                Issue.record("a call with every member stopped succeeded")
            } catch EtcdGateway.Failure.unreachable(let reason) {
                for endpoint in etcd.endpoints {
                    #expect(reason.contains(endpoint + "/v3/kv/range: cannot connect: Connection refused"), "\(reason)")
                }
            }
        }
    }

    @Test("a frozen member (SIGSTOP): the call to it ends within the timeout and the next endpoint answers")
    func frozenMember() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let timeout = 2.0
            let gateway = EtcdGateway(endpoints: etcd.endpoints, settingsHint: "test", timeout: 5)
            _ = try Self.range(gateway, "/t/a")
            let pid = try #require(etcd.pid(0))
            kill(pid, SIGSTOP)
            defer { kill(pid, SIGCONT) }
            // Only the frozen member: the call fails, after the timeout, saying so.
            let alone = EtcdGateway(endpoints: [etcd.endpoints[0]], settingsHint: "test", timeout: timeout)
            let start = Coordinator.now()
            do {
                _ = try Self.range(alone, "/t/a")
                Issue.record("a frozen member answered")
            } catch {
                #expect("\(error)".contains("no answer within 2.0 s"), "\(error)")
                #expect(Coordinator.now() - start < timeout + 1)
            }
            // The gateway's kept-alive connection to it is answered by no one; the next member answers. A frozen
            // leader leaves the others to elect a new one first (etcd's election timeout, 1 s), within the timeout.
            let answer = try Self.range(gateway, "/t/a")
            #expect(answer["header"] != nil)
        }
    }

    @Test("a restarted member: the next call finds its kept-alive connection closed and connects again, without an error")
    func restartedMember() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let endpoint = etcd.endpoints[0]
            let gateway = EtcdGateway(endpoints: [endpoint], settingsHint: "test", timeout: 5)
            _ = try Self.range(gateway, "/t/a")
            let before = Self.connections(to: Self.port(endpoint))
            #expect(before.count == 1)
            await etcd.stop(0)
            try await etcd.start(0)
            let answer = try Self.range(gateway, "/t/a")
            #expect(answer["header"] != nil)
            let after = Self.connections(to: Self.port(endpoint))
            #expect(after.count == 1 && after != before, "before \(before), after \(after)")
            #expect(gateway.connections.opened(endpoint) == 2)
        }
    }

    @Test("a token goes in the request's Authorization header: etcd with authentication answers with it, and refuses without it")
    func token() async throws {
        try await EtcdFixture.with(members: 1) { etcd in
            let gateway = EtcdGateway(endpoints: etcd.endpoints, settingsHint: "test")
            _ = try await gateway.post("/v3/auth/role/add", ["name": "root"])
            _ = try await gateway.post("/v3/auth/user/add", ["name": "root", "password": "secret-word"])
            _ = try await gateway.post("/v3/auth/user/grant", ["user": "root", "role": "root"])
            _ = try await gateway.post("/v3/auth/enable", [:])
            await #expect(throws: EtcdGateway.Failure.self) {
                _ = try await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64("/t/a")])
            }
            let login = try await gateway.post("/v3/auth/authenticate", ["name": "root", "password": "secret-word"])
            let token = try #require(login["token"] as? String)
            let answer = try await gateway.post("/v3/kv/range", ["key": EtcdGateway.b64("/t/a")], token: token)
            #expect(answer["header"] != nil)
        }
    }

    @Test("the lock's transaction sent twice (its first answer lost): the second finds the key on its own lease and takes the token")
    func acquireRecognisesItsOwnLease() async throws {
        try await EtcdFixture.with(members: 3) { etcd in
            let gateway = EtcdGateway(endpoints: etcd.endpoints, settingsHint: "test")
            let key = EtcdGateway.b64("/t/lock")
            let other = try #require(EtcdGateway.int(try await gateway.post("/v3/lease/grant", ["TTL": 30])["ID"]))
            let lease = try #require(EtcdGateway.int(try await gateway.post("/v3/lease/grant", ["TTL": 30])["ID"]))
            let txn: [String: Any] = [
                "compare": [["key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"]],
                "success": [["request_put": ["key": key, "value": EtcdGateway.b64("me"), "lease": String(lease)]]],
                "failure": [["request_range": ["key": key]]],
            ]
            let first = try await gateway.post("/v3/kv/txn", txn)
            let token = try #require(Coordinator.acquiredRevision(first, lease: String(lease)))
            let second = try await gateway.post("/v3/kv/txn", txn)
            #expect(second["succeeded"] as? Bool != true)
            #expect(Coordinator.acquiredRevision(second, lease: String(lease)) == token)
            #expect(Coordinator.acquiredRevision(second, lease: String(other)) == nil)
        }
    }
}
