import Foundation
import Testing

@testable import FailoverEngine

/// Topologies shared by test cases that each start from a plan's declared topology and end in it (the
/// crash-and-resume cases: a plan that changes the roles is followed by a plain switchover back).
///
/// Building one (initdb, a backup, a restore, servers started and streaming; with Patroni, etcd and two
/// clusters; in the lab, over SSH) costs far more than a case's own run, so a case takes a topology a previous
/// case left in the declared state, and builds a fresh one only when there is none: the first time, or when
/// the one it got is not in that state any more (see ``DeclaredTopology``). So a failing case costs at most one
/// rebuild, and never hands its failure to the next case. `width` topologies serve the cases at once; the
/// others wait for one. ``stopAll()`` takes them down.
actor FixturePool<Fixture: Sendable> {
    /// A topology and the rows of table t (ids 1...rows) every instance of it holds.
    private struct Slot {
        var fixture: Fixture?
        var rows = 0
    }

    private let start: @Sendable () async throws -> Fixture
    private let stop: @Sendable (Fixture) async -> Void
    private let isReady: @Sendable (Fixture, _ rows: Int) async -> Bool
    private var idle: [Slot]
    private var waiting: [CheckedContinuation<Slot, Never>] = []

    /// A pool of `width` topologies built by `start`, taken down by `stop`, and reused while `isReady`.
    init(
        width: Int, start: @escaping @Sendable () async throws -> Fixture, stop: @escaping @Sendable (Fixture) async -> Void,
        isReady: @escaping @Sendable (Fixture, _ rows: Int) async -> Bool
    ) {
        self.start = start
        self.stop = stop
        self.isReady = isReady
        idle = Array(repeating: Slot(), count: max(width, 1))
    }

    /// Runs `body` with a topology in the declared state and the number of rows it holds; `body` returns the
    /// number it holds afterwards (on every instance). A body that throws gets its topology taken down.
    func use(_ body: @Sendable (Fixture, _ rows: Int) async throws -> Int) async throws {
        var slot = await take()
        do {
            if let fixture = slot.fixture, await !isReady(fixture, slot.rows) {
                print("a shared topology left its declared state; building a fresh one")
                await stop(fixture)
                slot = Slot()
            }
            if slot.fixture == nil { slot.fixture = try await start() }
            slot.rows = try await body(slot.fixture!, slot.rows)
        } catch {
            if let fixture = slot.fixture { await stop(fixture) }
            give(Slot())
            throw error
        }
        give(slot)
    }

    /// Takes every topology down (their cases have ended).
    func stopAll() async {
        let fixtures = idle.compactMap(\.fixture)
        idle = idle.map { _ in Slot() }
        for fixture in fixtures { await stop(fixture) }
    }

    private func take() async -> Slot {
        if let slot = idle.popLast() { return slot }
        return await withCheckedContinuation { waiting.append($0) }
    }

    private func give(_ slot: Slot) {
        if waiting.isEmpty {
            idle.append(slot)
        } else {
            waiting.removeFirst().resume(returning: slot)
        }
    }
}

/// Whether a topology is still in its plan's declared state.
enum DeclaredTopology {
    /// The declared roles, as recorded in `state`'s journal (or nothing recorded yet), no unfinished run, the
    /// declared primary accepting writes with `rows` rows in table t, every other instance streaming from it
    /// with as many.
    static func holds(
        _ plan: Plan, state: String, rows: Int, status: (Instance) async throws -> InstanceStatus,
        count: (Instance) async throws -> String?
    ) async -> Bool {
        do {
            if FileManager.default.fileExists(atPath: state + "/journal.sqlite") {
                let journal = try Journal(stateDirectory: state)
                let declared = Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, $0.role) })
                let recorded = try journal.recordedRoles()
                guard try journal.unfinishedRun() == nil, recorded.isEmpty || recorded == declared else { return false }
            }
            guard let primary = plan.declaredPrimary?.leader, try await status(primary).isWritablePrimary else { return false }
            for (_, instance) in plan.allInstances {
                if instance != primary, try await status(instance).walReceiver?.isStreaming(from: primary) != true { return false }
                if rows > 0, try await count(instance) != String(rows) { return false }
            }
            return true
        } catch {
            return false
        }
    }
}

/// The suite's shared sandboxes (``SandboxPoolTrait``).
enum SandboxPool {
    @TaskLocal static var current: FixturePool<SandboxFixture>?
}

/// `width` shared sandboxes of `layout` for the suite's cases (see ``FixturePool``), taken down when it ends.
struct SandboxPoolTrait: SuiteTrait, TestScoping {
    let layout: [SiteLayout]
    let patroni: Bool
    let width: Int

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let (layout, patroni) = (layout, patroni)
        let pool = FixturePool<SandboxFixture>(
            width: width, start: { try await SandboxFixture.start(layout, patroni: patroni) }, stop: { await $0.stop() },
            isReady: { fx, rows in
                await DeclaredTopology.holds(
                    fx.plan, state: fx.state, rows: rows, status: { try await fx.driver.status(of: $0) },
                    count: { try await fx.sql($0, "SELECT count(*) FROM t").first?.first ?? nil })
            })
        do {
            try await SandboxPool.$current.withValue(pool) { try await function() }
        } catch {
            await pool.stopAll()
            throw error
        }
        await pool.stopAll()
    }
}

extension Trait where Self == SandboxPoolTrait {
    /// `width` sandboxes of `layout`, shared by the suite's cases.
    static func sandboxPool(_ layout: [SiteLayout], patroni: Bool = false, width: Int) -> Self {
        Self(layout: layout, patroni: patroni, width: width)
    }
}
