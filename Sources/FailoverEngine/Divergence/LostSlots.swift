import Foundation
import Logging

/// failoverd's logical slots (`policy.captureLostRows`): one per database of the primary, named
/// `failoverd_lost_<database OID>`, so that after an unplanned failover the changes the new primary never got
/// can be decoded from an isolated copy of the old primary. Over libpq, for every driver that reaches
/// PostgreSQL with SQL.
public enum LostSlots {
    /// The output plugin failoverd creates its slots with (its text is what the report parses).
    public static let plugin = "test_decoding"

    /// Carries out `action` on the instance that `connInfo` reaches.
    public static func run(_ action: LostSlotAction, connInfo: ConnInfo) async throws -> LostSlotState {
        var state = try await status(connInfo)
        switch action {
        case .status:
            return state
        case .recreate(let plugin), .ensure(let plugin):
            let recreate = action == .recreate(plugin: plugin)
            guard state.walLevel == "logical" else {
                throw FailoverError.refused(
                    "policy.captureLostRows needs wal_level=logical, but \(connInfo.host):\(connInfo.port) has wal_level=\(state.walLevel); set wal_level = logical on every instance (a restart) or turn captureLostRows off."
                )
            }
            guard !state.inRecovery else {
                throw FailoverError.failed(
                    "cannot create failoverd's logical slots on \(connInfo.host):\(connInfo.port): it is in recovery")
            }
            if recreate { try await drop(state.slots, connInfo: connInfo) }
            let existing = recreate ? [] : Set(state.slots.map(\.name))
            let databases = try await PGConnection.with(connInfo) {
                try $0.query("SELECT oid, datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY oid")
            }
            for row in databases {
                guard let oid = row[0].flatMap({ UInt32($0) }), let name = row[1], !existing.contains(LostSlotState.slotName(database: oid))
                else { continue }
                var info = connInfo
                info.dbname = name
                _ = try await PGConnection.with(info) {
                    try $0.query(
                        "SELECT pg_create_logical_replication_slot($1, $2)", [LostSlotState.slotName(database: oid), plugin],
                        name: "create logical slot")
                }
            }
            return try await status(connInfo)
        case .advance(let target):
            for slot in state.slots where (slot.confirmedFlushLSN ?? .zero) < target {
                var info = connInfo
                info.dbname = slot.database
                _ = try await PGConnection.with(info) {
                    try $0.query(
                        "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", [slot.name, target.description], name: "advance slot")
                }
            }
            return try await status(connInfo)
        case .drop:
            try await drop(state.slots, connInfo: connInfo)
            state.slots = []
            return state
        }
    }

    /// Refuses a run of a plan that asks for row images (policy.captureLostRows) on an instance without
    /// wal_level=logical: every running instance of the plan is asked, before anything changes.
    public static func preflight(plan: Plan, driver: any InstanceDriver) async throws {
        guard plan.policy.captureLostRows == true else { return }
        for (site, instance) in plan.allInstances {
            guard let status = try? await driver.status(of: instance), status.running, status.reachable else { continue }
            let level = try await driver.lostSlots(on: instance, .status).walLevel
            if level != "logical" {
                throw FailoverError.refused(
                    "plan \"\(plan.name)\" sets policy.captureLostRows, but \(instance.name) (site \(site.name)) runs with wal_level=\(level): row images need wal_level=logical on every instance. Set wal_level = logical (a restart) or turn captureLostRows off; nothing was changed."
                )
            }
        }
    }

    static func drop(_ slots: [LostSlotState.Slot], connInfo: ConnInfo) async throws {
        guard !slots.isEmpty else { return }
        _ = try await PGConnection.with(connInfo) { c in
            for slot in slots { try c.query("SELECT pg_drop_replication_slot($1)", [slot.name], name: "drop slot") }
        }
    }

    static func status(_ connInfo: ConnInfo) async throws -> LostSlotState {
        try await PGConnection.with(connInfo) { c in
            let head = try c.query(
                """
                SELECT current_setting('wal_level'), pg_is_in_recovery(),
                       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,
                       (SELECT last_archived_wal FROM pg_stat_archiver)
                """)
            let slots = try c.query(CatalogSQL.slots).map { r in
                LostSlotState.Slot(
                    name: r[0] ?? "", database: r[1] ?? "", plugin: r[2] ?? "", restartLSN: r[3].flatMap(LSN.init),
                    confirmedFlushLSN: r[4].flatMap(LSN.init))
            }
            let flush = try c.query("SELECT flush_lsn FROM pg_stat_replication WHERE state = 'streaming' AND flush_lsn IS NOT NULL")
                .compactMap { $0[0].flatMap(LSN.init) }
            return LostSlotState(
                walLevel: head.first?[0] ?? "", inRecovery: head.first?[1] == "t", slots: slots, standbyFlushLSNs: flush,
                lastArchivedWAL: head.first?[3] ?? nil, currentLSN: head.first?[2].flatMap(LSN.init))
        }
    }

    /// How far the slots may advance: never past what every standby has flushed, nor past the last
    /// archived segment (an archive standby has no more), nor past the primary's own position. Nil when
    /// nothing bounds it yet (no standby streams and nothing is archived): the slots stay where they are.
    public static func safeAdvance(_ state: LostSlotState, segmentSize: UInt64 = 16 << 20) -> LSN? {
        var bounds = state.standbyFlushLSNs
        if let last = state.lastArchivedWAL, let (_, segment) = WALSegments.segment(of: last, segmentSize: segmentSize) {
            bounds.append(WALSegments.start(of: segment + 1, segmentSize: segmentSize))
        }
        if let current = state.currentLSN { bounds.append(current) }
        guard !state.standbyFlushLSNs.isEmpty || state.lastArchivedWAL != nil else { return nil }
        return bounds.min()
    }
}

/// Keeps failoverd's logical slots advanced while a run (or a drill) is active: every few seconds, on the
/// instance of the plan that accepts writes, to ``LostSlots/safeAdvance(_:segmentSize:)``.
public struct LostSlotKeeper: Sendable {
    /// The plan.
    public let plan: Plan
    /// The driver that reaches its instances.
    public let driver: any InstanceDriver
    /// Seconds between two advances.
    public var interval: Double = 2
    /// Where failures are logged (they are never fatal: a stalled slot costs retention, not correctness).
    public let logger: Logger

    /// Creates a keeper.
    public init(plan: Plan, driver: any InstanceDriver, interval: Double = 2, logger: Logger) {
        self.plan = plan
        self.driver = driver
        self.interval = interval
        self.logger = logger
    }

    /// Advances the slots of the writable primary once; returns where they were asked to go.
    @discardableResult
    public func advanceOnce() async -> LSN? {
        for (_, instance) in plan.allInstances {
            guard let status = try? await driver.status(of: instance), status.isWritablePrimary else { continue }
            do {
                let state = try await driver.lostSlots(on: instance, .status)
                guard !state.slots.isEmpty, let target = LostSlots.safeAdvance(state) else { return nil }
                _ = try await driver.lostSlots(on: instance, .advance(to: target))
                return target
            } catch {
                logger.info("could not advance failoverd's logical slots", metadata: ["instance": "\(instance.name)", "error": "\(error)"])
                return nil
            }
        }
        return nil
    }

    /// Advances every ``interval`` seconds until the task is cancelled.
    public func keep() async {
        while !Task.isCancelled {
            await advanceOnce()
            try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
        }
    }
}
