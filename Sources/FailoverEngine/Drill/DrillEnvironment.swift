/// Where a drill builds the plan's starting topology: the sandbox on this host, or the lab's hosts in
/// network namespaces for a plan of ssh sites.
protocol DrillEnvironment: Sendable {
    /// True when (part of) it is built.
    var exists: Bool { get }
    /// Builds it.
    func up() async throws
    /// Removes it; returns the removed paths.
    @discardableResult func down() async throws -> [String]
}

extension Sandbox: DrillEnvironment {}

/// The lab as a drill's environment.
struct LabEnvironment: DrillEnvironment {
    let lab: Lab
    var exists: Bool { lab.exists }
    func up() async throws { try await lab.up() }
    @discardableResult func down() async throws -> [String] { try await lab.down() }
}
