import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// An s3 repository means S3: the plan's settings reach pgBackRest, a configuration file that says
/// otherwise is refused, and credentials never show in the journal, the audit log, a log or a process's
/// arguments. Against the sandbox's S3 endpoint (moto behind stunnel) and real PostgreSQL.
@Suite(.serialized) struct S3RepositoryTests {
    /// The shipped S3 walkthrough, moved under `root`/sb (which the sandbox creates for its OS user) on free ports.
    static func plan(in temporary: String) throws -> Plan {
        let root = temporary + "/sb"
        var plan = try PlanLoader.load(CLI.plan("seed-walkthrough-s3"))
        let ports = try SandboxFixture.freePorts(3)
        plan.name = "s3-test-" + (temporary as NSString).lastPathComponent
        plan.repository.path = "/" + plan.name
        plan.repository.config = root + "/pgbackrest.conf"
        plan.repository.s3?.port = ports[2]
        plan.replication.passfile = root + "/pgpass"
        for s in plan.sites.indices {
            for i in plan.sites[s].instances.indices {
                plan.sites[s].instances[i].port = ports[s]
                plan.sites[s].instances[i].dataDirectory = root + "/" + plan.sites[s].instances[i].name
            }
        }
        return plan
    }

    static func write(_ plan: Plan, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(plan).write(to: URL(fileURLWithPath: path))
    }

    @Test("a plan saying s3 with a configuration file saying posix is refused, and so is one without credentials")
    func typeMismatchAndMissingCredentialsAreRefused() async throws {
        let root = CLI.tempDirectory("failoverd-s3-refusal")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var plan = try Self.plan(in: root)
        try FileManager.default.createDirectory(atPath: root + "/sb", withIntermediateDirectories: true)
        try "[global]\nrepo1-type=posix\nrepo1-path=/srv/repo\n".write(toFile: plan.repository.config!, atomically: true, encoding: .utf8)
        let path = root + "/plan.json"
        try Self.write(plan, to: path)
        let v = try await CLI.run(["validate", path], env: ["PGBACKREST_REPO1_S3_KEY": "k", "PGBACKREST_REPO1_S3_KEY_SECRET": "s"])
        #expect(v.status == 2)
        #expect(
            v.stdout.contains("$.repository.type: the plan says s3 but \(plan.repository.config!) sets repo1-type=posix"), "\(v.stdout)")
        let state = root + "/state"
        let r = try await CLI.run(
            ["run", path, "--state", state], env: ["PGBACKREST_REPO1_S3_KEY": "k", "PGBACKREST_REPO1_S3_KEY_SECRET": "s"])
        #expect(r.status == 2)
        #expect(!FileManager.default.fileExists(atPath: state), "a refused plan changes nothing")

        // s3 in the file too, but no credentials anywhere: named, never printed.
        try "[global]\nrepo1-type=s3\n".write(toFile: plan.repository.config!, atomically: true, encoding: .utf8)
        let missing = try await CLI.run(["validate", path], env: ["PGBACKREST_REPO1_S3_KEY": "", "PGBACKREST_REPO1_S3_KEY_SECRET": ""])
        #expect(missing.status == 2)
        #expect(missing.stdout.contains("PGBACKREST_REPO1_S3_KEY and PGBACKREST_REPO1_S3_KEY_SECRET"))
        let present = try await CLI.run(
            ["validate", path], env: ["PGBACKREST_REPO1_S3_KEY": "AKIAFAILOVERD", "PGBACKREST_REPO1_S3_KEY_SECRET": "fake-secret-7f3a"])
        #expect(present.status == 0, "\(present.stdout)")
        #expect(!(present.stdout + present.stderr).contains("fake-secret-7f3a"))

        // Settings of another store, or none for s3: refused by the validator with the JSON path.
        plan.repository.s3 = nil
        plan.repository.gcs = GCSSettings(bucket: "b", endpoint: nil)
        try Self.write(plan, to: path)
        let shape = try await CLI.run(["validate", path])
        #expect(shape.status == 2)
        #expect(shape.stdout.contains("$.repository.s3: a repository of type s3 needs its \"s3\" settings"))
        #expect(shape.stdout.contains("$.repository.gcs: \"gcs\" settings given for a repository of type s3"))
    }

    @Test("bootstrap from the bucket, archive replay, switchover and failback by rewind; no credential leaks")
    func walkthroughOnTheS3Endpoint() async throws {
        let root = CLI.tempDirectory("failoverd-s3")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        chmod(root, 0o755)
        let plan = try Self.plan(in: root)
        let path = root + "/plan.json"
        try Self.write(plan, to: path)
        let state = root + "/state"
        // `sandbox down` and the directory's removal on every path, failure or not.
        do {
            try await walkthrough(plan, path: path, root: root, state: state)
        } catch {
            _ = try? await CLI.run(["sandbox", "down", path, "--state", state])
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
        _ = try? await CLI.run(["sandbox", "down", path, "--state", state])
        try? FileManager.default.removeItem(atPath: root)
    }

    func walkthrough(_ plan: Plan, path: String, root: String, state: String) async throws {
        let up = try await CLI.run(["sandbox", "up", path, "--state", state])
        #expect(up.status == 0, "\(up.stderr)")
        let driver = try LocalPostgresDriver(plan: plan)
        let prod = plan.sites[0].leader
        let dr = plan.sites[1].leader
        let config = try String(contentsOfFile: plan.repository.config!, encoding: .utf8)
        let secret = try #require(
            config.split(separator: "\n").first { $0.hasPrefix("repo1-s3-key-secret=") }?.split(separator: "=").last.map(String.init))
        #expect(secret.count == 32)

        func sql(_ i: Instance, _ text: String) async throws -> [[String?]] { try await driver.withConnection(i) { try $0.query(text) } }
        _ = try await sql(prod, "CREATE TABLE t (id int PRIMARY KEY)")
        _ = try await sql(prod, "INSERT INTO t SELECT generate_series(1, 100)")

        // Watch every process's arguments while the plan runs.
        let run = try CLI.start(["run", path, "--state", state])
        var seenInArguments: [String] = []
        while run.isRunning {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
                guard let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !data.isEmpty else { continue }
                let args = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
                if args.contains(secret) { seenInArguments.append(args) }
            }
            _ = try await Wait.until(timeout: 0.05, interval: 0.05) { run.isRunning ? nil : true }
        }
        let result = await run.wait()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(seenInArguments.isEmpty, "the secret showed in a process's arguments: \(seenInArguments.first ?? "")")

        // Every row on both sides, the final primary prod-0 on a new timeline, dr-0 streaming again.
        _ = try await sql(prod, "INSERT INTO t VALUES (101)")
        #expect(try await sql(prod, "SELECT count(*) FROM t").first?.first == "101")
        _ = try await Poll.until("dr-0 to have row 101", timeout: 30, interval: 0.05) {
            (try? await sql(dr, "SELECT 1 FROM t WHERE id = 101"))?.isEmpty == false ? true : nil
        }
        #expect(try await driver.status(of: dr).walReceiver?.isStreaming(from: prod) == true)
        // The bucket holds the stanza's archive and backups: pgBackRest read them from S3.
        let info = try await driver.runner.run(driver.backrest.executable, driver.backrest.arguments("info", ["--output=json"])).checked()
        #expect(info.stdout.contains("\"status\":{\"code\":0"), "\(info.stdout)")

        // Nowhere in what failoverd keeps or prints.
        for file in [state + "/journal.sqlite", state + "/journal.sqlite-wal"] {
            if let data = FileManager.default.contents(atPath: file) {
                #expect(!String(decoding: data, as: UTF8.self).contains(secret), "secret in \(file)")
            }
        }
        #expect(!(result.stdout + result.stderr + up.stdout + up.stderr).contains(secret))
        let audit = try await CLI.run(["audit", "--state", state])
        #expect(!audit.stdout.contains(secret))
        var logsRead = 0
        let logs = FileManager.default.enumerator(atPath: root)
        while let relative = logs?.nextObject() as? String {
            guard relative.hasSuffix(".log"), let text = try? String(contentsOfFile: root + "/" + relative, encoding: .utf8) else {
                continue
            }
            logsRead += 1
            #expect(!text.contains(secret), "secret in \(relative)")
        }
        #expect(logsRead >= 3, "the server logs and pgBackRest's logs were read")

        // `sandbox down` stops the S3 endpoint with the servers: no process is left in its directory.
        let down = try await CLI.run(["sandbox", "down", path, "--state", state])
        #expect(down.status == 0, "\(down.stderr)")
        let endpointDirectory = root + "/sb/s3-endpoint"
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
            guard Int32(entry) != nil, let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(endpointDirectory)
        }
        #expect(left.isEmpty, "processes left running: \(left)")
    }
}
