import Foundation

/// Placeholder until the local driver lands: refuses clearly instead of pretending.
public struct LocalPostgresDriver: SiteDriver {
    public init(plan: Plan) throws {
        throw FailoverError.invalid("the local PostgreSQL driver is not built into this version of failoverd; run with --simulate")
    }
    public func status(of instance: Instance) async throws -> InstanceStatus { fatalError() }
    public func controlData(of instance: Instance) async throws -> ControlData? { fatalError() }
    public func recoverySettings(of instance: Instance) async throws -> RecoverySettings? { fatalError() }
    public func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws { fatalError() }
    public func start(_ instance: Instance) async throws { fatalError() }
    public func stop(_ instance: Instance, mode: StopMode) async throws { fatalError() }
    public func promote(_ instance: Instance) async throws { fatalError() }
    public func checkpoint(_ instance: Instance) async throws { fatalError() }
    public func switchWAL(_ instance: Instance) async throws -> String { fatalError() }
    public func isArchived(_ instance: Instance, segment: String) async throws -> Bool { fatalError() }
    public func restore(_ instance: Instance, delta: Bool) async throws { fatalError() }
    public func rewind(_ instance: Instance, source: Instance) async throws -> String { fatalError() }
    public func writeProbe(_ instance: Instance) async throws -> LSN { fatalError() }
    public func hasData(_ instance: Instance) async throws -> Bool { fatalError() }
}
