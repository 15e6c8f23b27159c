import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The fence's write of `standby_cluster` into a Patroni cluster's etcd: mandatory when no member answers,
/// and done the way real deployments need it (TLS, etcd authentication, Patroni's namespace). Real etcd.
@Suite(.serialized) struct PatroniDCSTests {
    /// Runs `body` with an etcd on loopback serving https with a certificate of a CA made here.
    static func withTLSEtcd(_ body: (_ endpoint: String, _ directory: String) async throws -> Void) async throws {
        let (root, _) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = CommandRunner(user: nil, defaultTimeout: 60)
        let ssl = ["-days", "1", "-nodes", "-newkey", "rsa:2048"]
        try await run.run(
            "/usr/bin/openssl",
            ["req", "-x509"] + ssl + ["-keyout", root + "/ca.key", "-out", root + "/ca.pem", "-subj", "/CN=failoverd-test-ca"]
        )
        .checked()
        try await run.run(
            "/usr/bin/openssl", ["req"] + ssl + ["-keyout", root + "/server.key", "-out", root + "/server.csr", "-subj", "/CN=127.0.0.1"]
        )
        .checked()
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: root + "/san.ext", atomically: true, encoding: .utf8)
        try await run.run(
            "/usr/bin/openssl",
            [
                "x509", "-req", "-in", root + "/server.csr", "-CA", root + "/ca.pem", "-CAkey", root + "/ca.key", "-CAcreateserial",
                "-days", "1",
                "-out", root + "/server.pem", "-extfile", root + "/san.ext",
            ]
        ).checked()
        let ports = try FreePorts.take(2)
        let endpoint = "127.0.0.1:\(ports[0])"
        let peer = "http://127.0.0.1:\(ports[1])"
        // The library's own child process: reaped by a thread of Blocking, never waited for on the cooperative pool.
        let etcd = try ChildProcess.start(
            Sandbox.etcdExecutable,
            [
                Sandbox.etcdExecutable, "--name", "t", "--data-dir", root + "/etcd", "--listen-client-urls", "https://" + endpoint,
                "--advertise-client-urls", "https://" + endpoint, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", "t=" + peer, "--cert-file", root + "/server.pem", "--key-file", root + "/server.key", "--log-level",
                "warn",
            ], environment: ["PATH=" + CommandRunner.searchPath, "HOME=" + root], workingDirectory: root, commandLine: "etcd (TLS)")
        do {
            _ = try await Poll.until("etcd to answer on \(endpoint)", timeout: 60, interval: 0.1) {
                let r = try await CommandRunner().run(
                    "/usr/bin/curl", ["-sf", "--max-time", "2", "--cacert", root + "/ca.pem", "https://\(endpoint)/health"])
                return r.succeeded && r.stdout.contains("true") ? true : nil
            }
            try await body(endpoint, root)
        } catch {
            etcd.signal(SIGKILL)
            _ = await etcd.wait()
            throw error
        }
        etcd.signal(SIGKILL)
        _ = await etcd.wait()
    }

    @Test("standby_cluster is written over TLS, with etcd authentication, under Patroni's namespace; without them it is refused plainly")
    func tlsAuthenticationNamespace() async throws {
        try await Self.withTLSEtcd { endpoint, root in
            let open = PatroniCluster(scope: "prod", etcd: endpoint, etcdCaFile: root + "/ca.pem")
            let setup = PatroniDCS(endpoint: endpoint, cluster: open, runner: CommandRunner())
            // The cluster's configuration under namespace "pgns", then authentication switched on.
            let key = Data("/pgns/prod/config".utf8).base64EncodedString()
            let config = Data(#"{"loop_wait": 1, "ttl": 30}"#.utf8).base64EncodedString()
            _ = try await setup.post("/v3/kv/put", ["key": key, "value": config], token: nil)
            _ = try await setup.post("/v3/auth/user/add", ["name": "root", "password": "s3cret-root"], token: nil)
            _ = try await setup.post("/v3/auth/user/grant", ["user": "root", "role": "root"], token: nil)
            _ = try await setup.post("/v3/auth/enable", [:], token: nil)
            try "machine 127.0.0.1 login root password s3cret-root\n".write(toFile: root + "/etcd.netrc", atomically: true, encoding: .utf8)

            var cluster = open
            cluster.namespace = "pgns"
            cluster.etcdNetrcFile = root + "/etcd.netrc"
            let dcs = PatroniDCS(endpoint: endpoint, cluster: cluster, runner: CommandRunner())
            try await dcs.setStandbyCluster(["restore_command": "/bin/false", "host": NSNull()])
            let section = try await dcs.standbyCluster()
            #expect(section?["restore_command"] as? String == "/bin/false")
            #expect(section?.keys.sorted() == ["restore_command"])

            // Without credentials: etcd refuses, and so does failoverd, naming the setting.
            var anonymous = cluster
            anonymous.etcdNetrcFile = nil
            await expectFailure(.refused, "etcdNetrcFile") {
                try await PatroniDCS(endpoint: endpoint, cluster: anonymous, runner: CommandRunner()).setStandbyCluster([
                    "restore_command": "/bin/false"
                ])
            }
            // Plain http to a TLS endpoint: refused, naming the TLS settings.
            var plain = cluster
            plain.etcdCaFile = nil
            await expectFailure(.refused, "etcdCaFile") {
                try await PatroniDCS(endpoint: endpoint, cluster: plain, runner: CommandRunner()).setStandbyCluster([
                    "restore_command": "/bin/false"
                ])
            }
            // Patroni's default namespace holds nothing here: refused, naming the key.
            var defaultNamespace = cluster
            defaultNamespace.namespace = nil
            await expectFailure(.refused, "/service/prod/config") {
                try await PatroniDCS(endpoint: endpoint, cluster: defaultNamespace, runner: CommandRunner()).setStandbyCluster([
                    "restore_command": "/bin/false"
                ])
            }
        }
    }

    @Test("a Patroni site none of whose members answers is not fenced when its etcd does not take standby_cluster: the fence refuses")
    func dcsWriteIsMandatory() async throws {
        // Members on this host with no postmaster (proven stopped), no Patroni, and no etcd on its endpoint.
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60, patroni: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let site = plan.sites[0]
        let driver = PatroniSite(plan: plan, timeout: 5, pollInterval: 0.1)
        #expect(try await driver.memberStatus(site, site.leader) == .stopped)
        await expectFailure(.refused, "could not write standby_cluster") { _ = try await driver.fence(site, reason: "test") }
    }
}
