import Foundation

/// The list of paths `Sandbox.up()` created, so that `down()` removes exactly those and nothing else.
///
/// It is saved after every addition: an `up` that fails half-way still leaves a manifest that `down`
/// can clean up after.
struct SandboxManifest: Codable, Sendable {
    /// The plan the sandbox was built for.
    var plan: String
    /// Created paths, in creation order (parents before children).
    var created: [String]

    /// Where the manifest of `plan` lives: next to the repository.
    static func path(for plan: Plan) -> String {
        var repository = plan.repository.path
        while repository.count > 1 && repository.hasSuffix("/") { repository.removeLast() }
        let parent = (repository as NSString).deletingLastPathComponent
        return (parent.isEmpty ? "." : parent) + "/failoverd-sandbox-\(plan.repository.stanza).json"
    }

    /// The saved manifest of `plan`, or an empty one.
    static func load(for plan: Plan) -> SandboxManifest {
        if let data = FileManager.default.contents(atPath: path(for: plan)),
            let manifest = try? JSONDecoder().decode(SandboxManifest.self, from: data)
        {
            return manifest
        }
        return SandboxManifest(plan: plan.name, created: [])
    }

    /// Adds `paths` (skipping ones already listed) and saves.
    mutating func record(_ paths: [String], for plan: Plan) throws {
        let new = paths.filter { !created.contains($0) }
        guard !new.isEmpty else { return }
        created += new
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try Files.write(String(decoding: try encoder.encode(self), as: UTF8.self), to: Self.path(for: plan), mode: 0o644, owner: nil)
    }
}
