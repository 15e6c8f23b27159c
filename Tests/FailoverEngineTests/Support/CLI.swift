import Foundation
import Testing

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
        var status: Int32
        var killedBySignal: Bool
        var stdout: String
        var stderr: String
    }

    /// Runs failoverd with `args` and waits for it.
    static func run(_ args: [String], env: [String: String] = [:]) throws -> Result {
        let p = try start(args, env: env)
        return p.wait()
    }

    /// A running failoverd process.
    final class Running: @unchecked Sendable {
        let process: Process
        let out: URL
        let err: URL
        init(process: Process, out: URL, err: URL) {
            self.process = process
            self.out = out
            self.err = err
        }
        var pid: Int32 { process.processIdentifier }
        func wait() -> Result {
            process.waitUntilExit()
            defer {
                try? FileManager.default.removeItem(at: out)
                try? FileManager.default.removeItem(at: err)
            }
            return Result(
                status: process.terminationStatus, killedBySignal: process.terminationReason == .uncaughtSignal,
                stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "", stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
            )
        }
        /// Reads standard output so far.
        func outputSoFar() -> String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
    }

    /// Starts failoverd without waiting; output goes to temporary files so a long run cannot block on a pipe.
    static func start(_ args: [String], env: [String: String] = [:]) throws -> Running {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        // No test shares the machine's state directory (/var/lib/failoverd as root): a verb given no --state
        // gets a fresh one of its own, unless the test sets FAILOVERD_STATE itself.
        var environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        if env["FAILOVERD_STATE"] == nil {
            environment["FAILOVERD_STATE"] =
                FileManager.default.temporaryDirectory.path + "/failoverd-cli-state-\(getpid())/\(UUID().uuidString.prefix(8))"
        }
        p.environment = environment
        let tmp = FileManager.default.temporaryDirectory
        let out = tmp.appendingPathComponent("failoverd-out-\(UUID().uuidString)")
        let err = tmp.appendingPathComponent("failoverd-err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return Running(process: p, out: out, err: err)
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
    static func roles(state: String) throws -> [String: String] {
        let r = try run(["status", "--json", "--state", state])
        #expect(r.status == 0, "status failed: \(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let sites = json?["sites"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: sites.map { ($0["name"] as! String, $0["role"] as! String) })
    }
}
