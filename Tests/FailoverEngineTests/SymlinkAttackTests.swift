import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// The PostgreSQL OS user plants a symbolic link to a root-only file in place of a file failoverd reads or
/// writes as root; failoverd must refuse, naming the link, and the target must keep its contents, mode and owner.
///
/// Runs as root with the OS user `failoverd` (as the suite does); the data directory belongs to that user,
/// and so do the links, exactly as an attacker in that account would leave them.
@Suite(.enabled(if: OSUser.isRoot && OSUser.lookup("failoverd") != nil, "needs root and the OS user failoverd"))
struct SymlinkAttackTests {
    /// A root-only target, a data directory of the OS user with a cluster's PG_VERSION, and a driver for it.
    struct Scene {
        let root: String
        let user: OSUser
        let plan: Plan
        let instance: Instance
        let paths: InstancePaths
        let target: String

        init() throws {
            let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
            self.root = root
            self.plan = plan
            user = try #require(OSUser.lookup("failoverd"))
            instance = plan.sites[0].leader
            paths = InstancePaths(instance)
            target = root + "/root-only"
            try "root secret\n".write(toFile: target, atomically: false, encoding: .utf8)
            chmod(target, 0o600)
            for dir in [root + "/data", paths.dataDirectory, paths.stateDirectory, root + "/secrets"] {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                chmod(dir, 0o700)
                chown(dir, user.uid, user.gid)
            }
            try plant(file: paths.pgVersion, "15\n")
            try plant(file: paths.postgresqlConf, "# postgresql.conf\n")
        }

        /// A file owned by the OS user.
        func plant(file path: String, _ text: String) throws {
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            chown(path, user.uid, user.gid)
        }

        /// A symbolic link owned by the OS user at `path`, pointing at the root-only target.
        func plantLink(_ path: String, to destination: String? = nil) throws {
            unlink(path)
            #expect(symlink(destination ?? target, path) == 0)
            lchown(path, user.uid, user.gid)
        }

        /// Contents, mode and owner of the target.
        func targetState() -> String {
            var s = stat()
            lstat(target, &s)
            return "\(String(s.st_mode, radix: 8)) \(s.st_uid):\(s.st_gid) "
                + ((try? String(contentsOfFile: target, encoding: .utf8)) ?? "?")
        }

        func driver() throws -> LocalPostgresDriver { try LocalPostgresDriver(plan: plan) }

        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    /// Runs `step`, which must throw a refusal naming `link`, and checks the target did not change.
    private func expectRefusal(_ scene: Scene, naming link: String, _ step: () async throws -> Void) async {
        let before = scene.targetState()
        do {
            try await step()
            Issue.record("the step followed the symbolic link \(link)")
        } catch let error as FailoverError {
            #expect(error.code == .refused, "\(error.message)")
            #expect(error.message.contains(link) && error.message.contains("symbolic link"), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(scene.targetState() == before, "the root-only target changed")
        #expect(scene.targetState().hasPrefix("100600 0:0 root secret"))
    }

    @Test func postgresqlConf() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        try scene.plantLink(scene.paths.postgresqlConf)
        await expectRefusal(scene, naming: scene.paths.postgresqlConf) {
            try await scene.driver().configureRecovery(of: scene.instance, RecoverySettings(upstream: nil))
        }
    }

    @Test func postgresqlAutoConf() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        try scene.plantLink(scene.paths.autoConf)
        await expectRefusal(scene, naming: scene.paths.autoConf) {
            try await scene.driver().configureRecovery(of: scene.instance, RecoverySettings(upstream: nil))
        }
    }

    @Test func recoveryFileWrittenAndRead() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        try scene.plantLink(scene.paths.recoveryFile)
        await expectRefusal(scene, naming: scene.paths.recoveryFile) {
            try await scene.driver().configureRecovery(of: scene.instance, RecoverySettings(upstream: nil))
        }
        try scene.plant(file: scene.paths.standbySignal, "")
        await expectRefusal(scene, naming: scene.paths.recoveryFile) {
            _ = try await scene.driver().recoverySettings(of: scene.instance)
        }
    }

    @Test func fenceMarkerSetAndCleared() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        try scene.plantLink(scene.paths.fenceMarker)
        await expectRefusal(scene, naming: scene.paths.fenceMarker) { try await scene.driver().setFenceMarker(scene.instance) }
        await expectRefusal(scene, naming: scene.paths.fenceMarker) { try await scene.driver().clearFenceMarker(scene.instance) }
        // A link in place of the marker still counts as a marker: a fenced instance stays fenced.
        #expect(try await scene.driver().hasFenceMarker(scene.instance))
    }

    @Test func passfileWrittenByTheSandboxAndReadForConnections() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        let passfile = scene.plan.replication.passfile
        try scene.plantLink(passfile)
        await expectRefusal(scene, naming: passfile) {
            _ = try Passfile(path: passfile).ensure(roles: ["postgres"], owner: scene.user)
        }
        await expectRefusal(scene, naming: passfile) {
            _ = try await PGConnection.with(scene.driver().adminConnInfo(scene.instance)) { _ in true }
        }
    }

    @Test func aDataDirectoryReplacedByALink() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        // The whole data directory becomes a link to a root-only directory: nothing is written through it.
        let rootOnly = scene.root + "/root-only-dir"
        try FileManager.default.createDirectory(atPath: rootOnly, withIntermediateDirectories: true)
        chmod(rootOnly, 0o700)
        try "15\n".write(toFile: rootOnly + "/PG_VERSION", atomically: false, encoding: .utf8)
        try "# root's\n".write(toFile: rootOnly + "/postgresql.conf", atomically: false, encoding: .utf8)
        try FileManager.default.removeItem(atPath: scene.paths.dataDirectory)
        try scene.plantLink(scene.paths.dataDirectory, to: rootOnly)
        await expectRefusal(scene, naming: scene.paths.dataDirectory) {
            try await scene.driver().configureRecovery(of: scene.instance, RecoverySettings(upstream: nil))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: rootOnly).sorted() == ["PG_VERSION", "postgresql.conf"])
        #expect(try String(contentsOfFile: rootOnly + "/postgresql.conf", encoding: .utf8) == "# root's\n")
    }

    @Test func sandboxManifest() async throws {
        let scene = try Scene()
        defer { scene.remove() }
        let state = scene.root + "/state"
        try StateDirectory.prepare(state)
        let sandbox = Sandbox(plan: scene.plan, stateDirectory: state)
        try scene.plantLink(sandbox.manifestPath)
        await expectRefusal(scene, naming: sandbox.manifestPath) { try await sandbox.down() }
        await expectRefusal(scene, naming: sandbox.manifestPath) { try await sandbox.up() }
    }

    @Test func theLogTailIsNotReadThroughALink() throws {
        let scene = try Scene()
        defer { scene.remove() }
        try scene.plantLink(scene.paths.logFile)
        #expect(Files.tail(scene.paths.logFile) == "")
        #expect(Files.read(scene.paths.logFile) == nil)
    }
}

/// `sandbox down` trusts only a manifest of failoverd's own, and removes only what `up` created.
@Suite(.enabled(if: OSUser.isRoot && OSUser.lookup("failoverd") != nil, "needs root and the OS user failoverd"))
struct PlantedManifestTests {
    private func write(_ manifest: [String], plan: Plan, state: String, mode: mode_t = 0o600, owner: OSUser? = nil) throws {
        try StateDirectory.prepare(state)
        let path = SandboxManifest.path(for: plan, in: state)
        let json = try JSONSerialization.data(withJSONObject: ["plan": plan.name, "created": manifest])
        FileManager.default.createFile(atPath: path, contents: json)
        chmod(path, mode)
        chown(path, owner?.uid ?? 0, owner?.gid ?? 0)
    }

    @Test func aManifestListingPathsOutsideThePlanRemovesNothing() async throws {
        let canary = try Canary.make()
        defer { canary.remove() }
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write([root + "/repo", canary.root + "/victim", canary.root + "/secret"], plan: plan, state: root + "/state")
        let before = canary.snapshot()
        do {
            try await Sandbox(plan: plan, stateDirectory: root + "/state").down()
            Issue.record("sandbox down accepted a manifest listing \(canary.root)/victim")
        } catch let error as FailoverError {
            #expect(error.code == .refused && error.message.contains("not under the plan's directories"), "\(error.message)")
        }
        #expect(canary.snapshot() == before)
    }

    /// The first sandbox on a machine creates the shared parent of its directories (/tmp/failoverd-sandbox for
    /// the shipped plans). up does not list it, so down removes the sandbox and leaves that parent, where other
    /// plans' sandboxes may live, instead of refusing a manifest that names a path outside the plan.
    @Test func aParentCreatedAboveThePlansDirectoriesIsNotListedAndDownWorks() async throws {
        let (root, base) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let shared = root + "/shared"
        var plan = base
        plan.repository.path = shared + "/plan/repo"
        plan.replication.passfile = shared + "/plan/secrets/pgpass"
        plan.sites[0].instances[0].dataDirectory = shared + "/plan/data/prod-0"
        #expect(!FileManager.default.fileExists(atPath: shared))
        let sandbox = Sandbox(plan: plan, stateDirectory: root + "/state")
        do {
            try await sandbox.up()
            let created = try #require(try SandboxManifest.load(for: plan, in: root + "/state")).created
            #expect(created.contains(shared + "/plan") && !created.contains(shared), "\(created)")
            try await sandbox.down()
        } catch {
            if sandbox.exists { _ = try? await sandbox.down() }
            throw error
        }
        #expect(FileManager.default.fileExists(atPath: shared), "the shared parent stays")
        #expect(!FileManager.default.fileExists(atPath: shared + "/plan"), "the sandbox is gone")
    }

    @Test func aManifestTheOSUserOwnsOrOthersCanWriteIsRefused() async throws {
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let victim = root + "/repo"
        try FileManager.default.createDirectory(atPath: victim + "/keep", withIntermediateDirectories: true)
        let user = try #require(OSUser.lookup("failoverd"))
        for (mode, owner) in [(mode_t(0o600), Optional(user)), (0o666, nil)] {
            try write([victim], plan: plan, state: root + "/state", mode: mode, owner: owner)
            do {
                try await Sandbox(plan: plan, stateDirectory: root + "/state").down()
                Issue.record("sandbox down accepted a manifest of mode \(String(mode, radix: 8)) owned by \(owner?.name ?? "root")")
            } catch let error as FailoverError {
                #expect(error.code == .refused && error.message.contains("only trusts a file of its own state"), "\(error.message)")
            }
            #expect(FileManager.default.fileExists(atPath: victim + "/keep"))
        }
    }

    @Test func aManifestBesideTheRepositoryIsIgnored() async throws {
        // Where older versions kept it, in a directory the OS user (or anyone, in /tmp) can write.
        let canary = try Canary.make()
        defer { canary.remove() }
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let planted = try JSONSerialization.data(withJSONObject: ["plan": plan.name, "created": [canary.root + "/victim"]])
        FileManager.default.createFile(atPath: root + "/failoverd-sandbox-fo.json", contents: planted)
        let before = canary.snapshot()
        await expectFailure(.refused, "sandbox down: no sandbox of plan") {
            try await Sandbox(plan: plan, stateDirectory: root + "/state").down()
        }
        #expect(canary.snapshot() == before)
    }

    @Test func downSignalsNoProcessAPidFileNames() async throws {
        // A postmaster.pid naming a live process that is not that data directory's postmaster (here: this test).
        let (root, plan) = try SandboxFixture.makePlan([SiteLayout(name: "prod", role: .primary)], archiveTimeout: 60)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = plan.sites[0].leader.dataDirectory
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let start = Int(Date().timeIntervalSince1970)
        try "\(getpid())\n\(data)\n\(start)\n".write(toFile: data + "/postmaster.pid", atomically: false, encoding: .utf8)
        try write([root + "/data", data], plan: plan, state: root + "/state")
        #expect(Postmaster.verifiedPID(in: data, user: OSUser.lookup("failoverd")) == nil)
        let removed = try await Sandbox(plan: plan, stateDirectory: root + "/state").down()
        #expect(removed == [data, root + "/data"])
        #expect(kill(getpid(), 0) == 0)
    }
}
