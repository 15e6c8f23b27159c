/// Where a drill builds the plan's starting topology: the sandbox on this host, or the lab's hosts in
/// network namespaces for a plan of ssh sites.
protocol DrillEnvironment: Sendable {
    /// A sandbox or a lab.
    var kind: RunningTopology.Kind { get }
    /// True when (part of) it is built: its manifest is in the drill's state directory.
    var exists: Bool { get }
    /// What of the plan's sandbox or lab runs on this host, whichever state directory built it.
    func running() async throws -> RunningTopology?
    /// Builds it.
    func up() async throws
    /// Removes it; returns the removed paths.
    @discardableResult func down() async throws -> [String]
}

extension Sandbox: DrillEnvironment {
    var kind: RunningTopology.Kind { .sandbox }
}

/// The lab as a drill's environment.
struct LabEnvironment: DrillEnvironment {
    let lab: Lab
    var kind: RunningTopology.Kind { .lab }
    var exists: Bool { lab.exists }
    func running() async throws -> RunningTopology? { try await lab.running() }
    func up() async throws { try await lab.up() }
    @discardableResult func down() async throws -> [String] { try await lab.down() }
}
