import Foundation
import Testing

@testable import FailoverEngine

/// Runs the real `failoverd` executable, as a user or a script would.
enum CLI {
    /// The package root, from this file's path.
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The built executable: $FAILOVERD_BIN, else next to the test bundle, else .build/debug.
    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["FAILOVERD_BIN"], !b.isEmpty { return b }
        let candidates = [
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("failoverd").path,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("failoverd").path,
            packageRoot + "/.build/debug/failoverd",
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
    }()

    /// What a finished process left.
    struct Result: Sendable {
        /// The exit status, or the signal's number when a signal killed it.
        var status: Int32
        var killedBySignal: Bool
        var stdout: String
        var stderr: String
    }

    /// Runs failoverd with `args` and waits for it, without holding a thread of the cooperative pool.
    static func run(_ args: [String], env: [String: String] = [:]) async throws -> Result {
        try await start(args, env: env).wait()
    }

    /// A running failoverd process (the library's own ``ChildProcess``: posix_spawn, output to files,
    /// awaited on a thread of ``Blocking``).
    final class Running: Sendable {
        let child: ChildProcess
        init(child: ChildProcess) { self.child = child }
        var pid: Int32 { child.pid }
        /// Waits until it exits.
        func wait() async -> Result {
            switch await child.wait() {
            case .exited(let code):
                Result(status: code, killedBySignal: false, stdout: child.outputSoFar(), stderr: child.errorSoFar())
            case .signalled(let signal):
                Result(status: signal, killedBySignal: true, stdout: child.outputSoFar(), stderr: child.errorSoFar())
            }
        }
        /// True until it has exited.
        var isRunning: Bool { child.isRunning }
        /// Reads standard output so far.
        func outputSoFar() -> String { child.outputSoFar() }
        /// Sends `signal` while it runs (never to a pid reused after it exited); false when it has exited.
        @discardableResult
        func signal(_ signal: Int32) -> Bool { child.signal(signal) }
    }

    /// Starts failoverd without waiting; output goes to temporary files so a long run cannot block on a pipe.
    static func start(_ args: [String], env: [String: String] = [:]) throws -> Running {
        // No test shares the machine's state directory (/var/lib/failoverd as root): a verb given no --state
        // gets a fresh one of its own, unless the test sets FAILOVERD_STATE itself.
        var environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        if env["FAILOVERD_STATE"] == nil {
            environment["FAILOVERD_STATE"] =
                FileManager.default.temporaryDirectory.path + "/failoverd-cli-state-\(getpid())/\(UUID().uuidString.prefix(8))"
        }
        let child = try ChildProcess.start(
            binary, [binary] + args, environment: environment.map { "\($0.key)=\($0.value)" }, workingDirectory: packageRoot,
            commandLine: (["failoverd"] + args).joined(separator: " "))
        return Running(child: child)
    }

    /// Runs `sql` on the database `db` through the sqlite3 shell, as someone tampering by hand would.
    static func sqlite3(_ db: String, _ sql: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let r = try await CommandRunner().run("/usr/bin/sqlite3", [db, sql])
        #expect(r.succeeded, "sqlite3 failed on \(sql.prefix(200)): \(r.outputTail)", sourceLocation: sourceLocation)
    }

    /// A fresh, empty state directory.
    static func tempDirectory(_ prefix: String = "failoverd-test") -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A plan file from the package's plans/ directory.
    static func plan(_ name: String) -> String { packageRoot + "/plans/\(name).json" }

    /// `status --json` decoded as a dictionary of site → role.
    static func roles(state: String) async throws -> [String: String] {
        let r = try await run(["status", "--json", "--state", state])
        #expect(r.status == 0, "status failed: \(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let sites = json?["sites"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: sites.map { ($0["name"] as! String, $0["role"] as! String) })
    }
}
