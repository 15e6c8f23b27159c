import Foundation
import Synchronization

@testable import FailoverEngine

/// An instance driver whose servers are the simulated ones, with a script of faults: the next call of a
/// named primitive on a named instance throws. Every call is logged, so a test can say what ran.
final class ScriptedDriver: InstanceDriver {
    struct Fault: Sendable {
        var call: String
        var instance: String
        var message: String
    }

    let world: SimulatedDriver
    private let state = Mutex<(faults: [Fault], calls: [String], cutOff: Set<String>)>((faults: [], calls: [], cutOff: []))

    init(plan: Plan, stateDirectory: String) throws {
        world = try SimulatedDriver(plan: plan, stateDirectory: stateDirectory)
    }

    /// The next `call` on `instance` throws `message`.
    func failNext(_ call: String, on instance: String, _ message: String) {
        state.withLock { $0.faults.append(Fault(call: call, instance: instance, message: message)) }
    }

    /// Every call so far, as `name instance`.
    var calls: [String] { state.withLock { $0.calls } }

    /// Cuts `instance` off, as a partition would: it keeps running, unseen, and every call that would act on
    /// its host fails; its status is running and unreachable.
    func cutOff(_ instance: String) { state.withLock { _ = $0.cutOff.insert(instance) } }

    private func record(_ call: String, _ instance: Instance) throws {
        let fault: Fault? = state.withLock { s in
            s.calls.append("\(call) \(instance.name)")
            if s.cutOff.contains(instance.name), call != "status" {
                return Fault(call: call, instance: instance.name, message: "cannot reach \(instance.name): no route to host")
            }
            guard let i = s.faults.firstIndex(where: { $0.call == call && $0.instance == instance.name }) else { return nil }
            return s.faults.remove(at: i)
        }
        if let fault { throw FailoverError.failed(fault.message) }
    }

    func status(of instance: Instance) async throws -> InstanceStatus {
        try record("status", instance)
        if state.withLock({ $0.cutOff.contains(instance.name) }) {
            var unseen = InstanceStatus.stopped
            unseen.running = true
            unseen.unreachableReason = "no route to host"
            return unseen
        }
        return try await world.status(of: instance)
    }
    func controlData(of instance: Instance) async throws -> ControlData? {
        try record("controlData", instance)
        return try await world.controlData(of: instance)
    }
    func recoverySettings(of instance: Instance) async throws -> RecoverySettings? {
        try record("recoverySettings", instance)
        return try await world.recoverySettings(of: instance)
    }
    func configureRecovery(of instance: Instance, _ settings: RecoverySettings) async throws {
        try record("configureRecovery", instance)
        try await world.configureRecovery(of: instance, settings)
    }
    func start(_ instance: Instance) async throws {
        try record("start", instance)
        try await world.start(instance)
    }
    func stop(_ instance: Instance, mode: StopMode) async throws {
        try record("stop", instance)
        try await world.stop(instance, mode: mode)
    }
    func promote(_ instance: Instance) async throws {
        try record("promote", instance)
        try await world.promote(instance)
    }
    func checkpoint(_ instance: Instance) async throws {
        try record("checkpoint", instance)
        try await world.checkpoint(instance)
    }
    func switchWAL(_ instance: Instance) async throws -> String {
        try record("switchWAL", instance)
        return try await world.switchWAL(instance)
    }
    func isArchived(_ instance: Instance, segment: String) async throws -> Bool {
        try record("isArchived", instance)
        return try await world.isArchived(instance, segment: segment)
    }
    func restore(_ instance: Instance, delta: Bool) async throws {
        try record("restore", instance)
        try await world.restore(instance, delta: delta)
    }
    func rewind(_ instance: Instance, source: Instance) async throws -> String {
        try record("rewind", instance)
        return try await world.rewind(instance, source: source)
    }
    func writeProbe(_ instance: Instance) async throws -> LSN {
        try record("writeProbe", instance)
        return try await world.writeProbe(instance)
    }
    func hasData(_ instance: Instance) async throws -> Bool {
        try record("hasData", instance)
        return try await world.hasData(instance)
    }
    func setFenceMarker(_ instance: Instance, reason: String) async throws {
        try record("setFenceMarker", instance)
        try await world.setFenceMarker(instance, reason: reason)
    }
    func endOfWAL(_ instance: Instance) async throws -> LSN? {
        try record("endOfWAL", instance)
        return try await world.endOfWAL(instance)
    }
    func repositorySystemIdentifier() async throws -> String? { try await world.repositorySystemIdentifier() }
    func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        try record("dataFiles", instance)
        return try await world.dataFiles(of: instance, in: directory)
    }
    func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        try record("copyFiles", instance)
        return try await world.copyFiles(of: instance, paths, into: localDirectory)
    }
    func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        try await world.fetchArchivedWAL(name, using: reader, into: localDirectory)
    }
    func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer {
        try record("catalogNames", instance)
        return try await world.catalogNames(on: instance, query)
    }
    func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        try record("inspectIsolatedCopy", instance)
        return try await world.inspectIsolatedCopy(of: instance, request)
    }
    func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState {
        try record("lostSlots", instance)
        return try await world.lostSlots(on: instance, action)
    }
}

/// Gives the executor one scripted driver; journaled as `simulated`, the servers it drives.
struct ScriptedDrivers: DriverProvider {
    let driver: ScriptedDriver
    func kind(plan: Plan) -> DriverKind { .simulated }
    func make(plan: Plan, kind: DriverKind) throws -> any InstanceDriver { driver }
    func pollInterval(_ driver: any InstanceDriver) -> Double { 0.001 }
    /// The plan's site-level sites (driver `patroni`) are driven as ``ManagedSite``s over the scripted servers.
    func siteDrivers(plan: Plan, kind: DriverKind) throws -> [String: any SiteDriver] {
        var sites: [String: any SiteDriver] = [:]
        for site in plan.sites where DriverRegistry.expansion(of: site) == .siteSteps {
            sites[site.name] = ManagedSite(inner: InstanceSite(driver: driver, timeout: 5, pollInterval: 0.001))
        }
        return sites
    }
}

/// A managed site as a Patroni driver will present one: each operation is one request for the whole site
/// (here carried out on the scripted servers, so that a test can make one fail).
struct ManagedSite: SiteDriver {
    let inner: InstanceSite
    func status(of site: Site) async throws -> SiteStatus { try await inner.status(of: site) }
    func demote(_ site: Site, toStandbyOf upstream: Site) async throws -> DemotionToken {
        try await inner.demote(site, toStandbyOf: upstream)
    }
    func promote(_ site: Site, proving token: DemotionToken?) async throws -> Promotion {
        try await inner.promote(site, proving: token)
    }
    func follow(_ site: Site, upstream: Site?) async throws { try await inner.follow(site, upstream: upstream) }
    func fence(_ site: Site, reason: String) async throws -> [String: FenceEvidence] { try await inner.fence(site, reason: reason) }
    func rejoin(_ site: Site, from source: Site, by method: RejoinMethod) async throws {
        try await inner.rejoin(site, from: source, by: method)
    }
}

extension Plan {
    /// The plan with `sites` driven by `kind` (e.g. `.patroni`: their transitions expand into site steps).
    func driving(_ sites: Set<String>, by kind: DriverKind) -> Plan {
        var plan = self
        for i in plan.sites.indices where sites.contains(plan.sites[i].name) { plan.sites[i].driver = kind }
        return plan
    }
}
