import Foundation
import Testing

@testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// A directory whose every entry's contents, mode and owner are recorded, so that a test can prove a command
/// changed nothing in it.
struct Canary {
    let root: String

    /// A fresh canary: a victim directory with files, a root-only secret, an empty `sandbox` directory.
    static func make() throws -> Canary {
        let root = CLI.tempDirectory("failoverd-canary")
        chmod(root, 0o755)
        try FileManager.default.createDirectory(atPath: root + "/victim/deep", withIntermediateDirectories: true)
        try "victim data\n".write(toFile: root + "/victim/data", atomically: false, encoding: .utf8)
        try "deeper\n".write(toFile: root + "/victim/deep/file", atomically: false, encoding: .utf8)
        try "root secret\n".write(toFile: root + "/secret", atomically: false, encoding: .utf8)
        chmod(root + "/secret", 0o600)
        try FileManager.default.createDirectory(atPath: root + "/sandbox", withIntermediateDirectories: true)
        return Canary(root: root)
    }

    /// Every path under the root (the root included) with its type, mode, owner, group and contents or link target.
    func snapshot() -> [String: String] {
        var result: [String: String] = [:]
        func visit(_ path: String) {
            var s = stat()
            guard lstat(path, &s) == 0 else { return }
            var entry = "mode \(String(s.st_mode, radix: 8)) uid \(s.st_uid) gid \(s.st_gid)"
            switch s.st_mode & S_IFMT {
            case S_IFDIR:
                for name in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() { visit(path + "/" + name) }
            case S_IFLNK:
                entry += " -> " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
            default:
                entry += " " + (FileManager.default.contents(atPath: path)?.base64EncodedString() ?? "?")
            }
            result[path] = entry
        }
        visit(root)
        return result
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }
}

/// One attack of the hostile-plan corpus (Tests/HostilePlans/*.json): what it tries, the exit code and the
/// message failoverd must answer with, and the plan, in which `@CANARY@` stands for a canary directory.
struct HostilePlan: Sendable, CustomTestStringConvertible {
    var file: String
    var attack: String
    var exit: Int32
    var message: String
    var planText: String
    var testDescription: String { file }

    static let directory = PlanFixtures.repository.appendingPathComponent("Tests/HostilePlans").path

    /// Every file of the corpus. `"plan"` is the last member and is taken as raw text, so that an attack may
    /// be anything a file can hold (duplicate keys, nesting deeper than any parser takes, huge numbers).
    static var corpus: [HostilePlan] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        return names.compactMap { name in
            guard let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8),
                let key = text.range(of: "\n  \"plan\": "), let end = text.range(of: "}", options: .backwards)
            else { return nil }
            let head = String(text[..<key.lowerBound]).trimmingCharacters(in: .whitespacesAndNewlines).dropLast(
                text[..<key.lowerBound].hasSuffix(",") ? 1 : 0)
            guard let object = try? JSONSerialization.jsonObject(with: Data((head + "}").utf8)) as? [String: Any],
                let attack = object["attack"] as? String, let exit = object["exit"] as? Int, let message = object["message"] as? String
            else { return nil }
            return HostilePlan(
                file: name, attack: attack, exit: Int32(exit), message: message, planText: String(text[key.upperBound..<end.lowerBound]))
        }
    }
}

/// Hostile and careless plans: each is refused with exit 2 and its message by every verb that reads a plan,
/// and nothing under the canary directory it aims at changes.
struct HostilePlanTests {
    @Test func theCorpusCoversEveryKindOfAttack() {
        let corpus = HostilePlan.corpus
        #expect(corpus.count >= 50, "Tests/HostilePlans/*.json: \(corpus.count) files read")
        let files = Set(corpus.map(\.file))
        for kind in [
            "traversal-data-directory.json", "shell-command-substitution-data-directory.json", "nul-in-data-directory.json",
            "very-long-name.json", "huge-port.json", "fractional-port.json", "deep-nesting.json", "duplicate-key.json",
            "same-data-directory-two-hosts.json", "same-data-directory-dot-spelling.json", "prefix-local-host.json", "root-os-user.json",
        ] {
            #expect(files.contains(kind), "missing \(kind)")
        }
    }

    @Test(arguments: HostilePlan.corpus) func isRefusedByEveryVerbWithNoSideEffect(_ hostile: HostilePlan) async throws {
        let canary = try Canary.make()
        defer { canary.remove() }
        let state = CLI.tempDirectory("failoverd-hostile-state")
        defer { try? FileManager.default.removeItem(atPath: state) }
        let planFile = state + "/plan.json"
        try hostile.planText.replacingOccurrences(of: "@CANARY@", with: canary.root).write(
            toFile: planFile, atomically: false, encoding: .utf8)
        let before = canary.snapshot()
        let verbs: [[String]] = [
            ["validate", planFile], ["plan", planFile], ["run", planFile, "--simulate", "--state", state + "/run"],
            ["sandbox", "up", planFile, "--state", state + "/sandbox"],
        ]
        for verb in verbs {
            let r = try await CLI.run(verb)
            #expect(r.status == hostile.exit, "\(verb[0]): exit \(r.status), \(r.stderr)")
            #expect(
                (r.stdout + r.stderr).contains(hostile.message), "\(verb[0]) did not say \"\(hostile.message)\": \(r.stdout) \(r.stderr)")
        }
        #expect(canary.snapshot() == before, "the canary changed")
        #expect(!FileManager.default.fileExists(atPath: state + "/run/journal.sqlite"), "run opened a journal for an invalid plan")
    }

    @Test func theCorpusPlanWithoutItsAttackIsValid() throws {
        // The attacks are edits of one good plan: refused for the attack, not for something else.
        let canary = try Canary.make()
        defer { canary.remove() }
        let text = try #require(HostilePlan.corpus.first { $0.file == "traversal-data-directory.json" }).planText
        let good = text.replacingOccurrences(of: "@CANARY@/sandbox/../victim", with: "@CANARY@/sandbox/prod-0")
            .replacingOccurrences(of: "@CANARY@", with: canary.root)
        let validation = PlanValidator.validate(Data(good.utf8))
        #expect(validation.isValid, "\(validation.problems)")
    }
}

/// Exit codes as `failoverd --help` documents them: a usage error is invalid input, exit 2.
struct UsageErrorTests {
    @Test(arguments: [
        ["--no-such-flag"], ["no-such-verb"], ["validate"], ["run"], ["drill", "plans/switchover.json", "--writers", "many"],
        ["run", "plans/switchover.json", "--simulate", "--crash-at", "soon"], ["status", "--state"], ["audit", "list", "--limit", "x"],
    ])
    func exitsTwo(_ arguments: [String]) async throws {
        let r = try await CLI.run(arguments)
        #expect(r.status == 2, "\(arguments): exit \(r.status), \(r.stderr)")
        #expect(!r.stderr.isEmpty)
    }

    @Test func helpExitsZeroAndListsTheCodes() async throws {
        let r = try await CLI.run(["--help"])
        #expect(r.status == 0)
        for line in ["0  success", "1  a step failed", "2  invalid input", "3  refused", "4  the run lock is held"] {
            #expect(r.stdout.contains(line), "--help lacks \(line)")
        }
        #expect(try await CLI.run(["validate", "--help"]).status == 0)
    }
}

/// The state directory: one per machine by default, 0700, journal 0600, refused when someone else could change it.
struct StateDirectoryTests {
    @Test func theDefaultIsOnePerMachine() {
        #expect(StateDirectory.defaultPath(environment: [:], isRoot: true, home: "/root") == "/var/lib/failoverd")
        #expect(
            StateDirectory.defaultPath(environment: ["XDG_STATE_HOME": "/home/ann/.state"], isRoot: false, home: "/home/ann")
                == "/home/ann/.state/failoverd")
        #expect(StateDirectory.defaultPath(environment: [:], isRoot: false, home: "/home/ann") == "/home/ann/.local/state/failoverd")
        #expect(StateDirectory.defaultPath(environment: ["FAILOVERD_STATE": "/srv/fo"], isRoot: true, home: "/root") == "/srv/fo")
        #expect(StateDirectory.defaultPath(environment: ["FAILOVERD_STATE": ""], isRoot: true, home: "/root") == "/var/lib/failoverd")
        // Not the working directory: two operators in different directories share one journal and one run lock.
        #expect(!StateDirectory.defaultPath(environment: [:], isRoot: false, home: "/home/ann").hasPrefix("."))
    }

    @Test func isCreated0700WithAJournal0600() async throws {
        let root = CLI.tempDirectory("failoverd-state-mode")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", root + "/state"])
        #expect(r.status == 0, "\(r.stderr)")
        var s = stat()
        #expect(stat(root + "/state", &s) == 0 && s.st_mode & 0o777 == 0o700)
        for name in ["journal.sqlite", "journal.sqlite-wal"] where FileManager.default.fileExists(atPath: root + "/state/" + name) {
            #expect(
                stat(root + "/state/" + name, &s) == 0 && s.st_mode & 0o777 == 0o600, "\(name) mode \(String(s.st_mode & 0o777, radix: 8))")
        }
    }

    @Test func refusesAStateDirectoryOthersCanWrite() async throws {
        let root = CLI.tempDirectory("failoverd-state-open")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/state", withIntermediateDirectories: true)
        chmod(root + "/state", 0o777)
        let r = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", root + "/state"])
        #expect(r.status == 2 && r.stderr.contains("writable by everyone"), "\(r.status) \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/state").isEmpty)
    }

    @Test(.enabled(if: OSUser.isRoot && OSUser.lookup("failoverd") != nil, "needs root and the OS user"))
    func refusesAStateDirectoryOwnedByTheOSUser() async throws {
        let root = CLI.tempDirectory("failoverd-state-owner")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let user = try #require(OSUser.lookup("failoverd"))
        try FileManager.default.createDirectory(atPath: root + "/state", withIntermediateDirectories: true)
        chmod(root + "/state", 0o700)
        chown(root + "/state", user.uid, user.gid)
        let r = try await CLI.run(["status", "--state", root + "/state"])
        let run = try await CLI.run(["run", CLI.plan("switchover"), "--simulate", "--quiet", "--state", root + "/state"])
        #expect(run.status == 2 && run.stderr.contains("not by the user running failoverd"), "\(run.status) \(run.stderr)")
        #expect(r.status == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/state").isEmpty)
    }
}

/// `drill --state X` empties X before each drill, so it refuses a non-empty directory it did not create.
struct DrillStateTests {
    @Test func refusesANonEmptyDirectoryItDidNotCreate() async throws {
        let root = CLI.tempDirectory("failoverd-drill-state")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/mine", withIntermediateDirectories: true)
        try "precious\n".write(toFile: root + "/mine/notes.txt", atomically: false, encoding: .utf8)
        let r = try await CLI.run(["drill", CLI.plan("switchover"), "--report", root + "/report", "--state", root + "/mine"])
        #expect(r.status == 2 && r.stderr.contains("was not created by a drill"), "\(r.status) \(r.stderr)")
        #expect(try String(contentsOfFile: root + "/mine/notes.txt", encoding: .utf8) == "precious\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/mine") == ["notes.txt"])
    }
}
