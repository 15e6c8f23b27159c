import Foundation
import Testing

@testable import FailoverEngine

/// Sandboxes shared by the cases of a suite that each start from the layout's declared topology and end in it
/// (the crash-and-resume cases: a plan that changes the roles is followed by a plain switchover back).
///
/// Building a sandbox (initdb, a backup, a restore, both servers started and streaming; with Patroni, etcd
/// and two clusters) costs far more than a case's own run, so a case takes a sandbox a previous case left in
/// the declared topology, and builds a fresh one only when there is none: the first time, or when the one it
/// got is not in that topology any more (recorded roles differ, a run is unfinished, the declared primary does
/// not accept writes, another instance does not stream from it, or a row is missing). So a failing case
/// costs at most one rebuild, and never hands its failure to the next case. `width` sandboxes serve the
/// suite's cases at once; the others wait for one. All are taken down when the suite ends.
actor SandboxPool {
    @TaskLocal static var current: SandboxPool?

    /// A sandbox and the rows of table t (ids 1...rows) every instance of it holds.
    private struct Slot {
        var fixture: SandboxFixture?
        var rows = 0
    }

    let layout: [SiteLayout]
    let patroni: Bool
    private var idle: [Slot]
    private var waiting: [CheckedContinuation<Slot, Never>] = []

    init(layout: [SiteLayout], patroni: Bool, width: Int) {
        self.layout = layout
        self.patroni = patroni
        idle = Array(repeating: Slot(), count: max(width, 1))
    }

    /// Runs `body` with a sandbox in the declared topology and the number of rows it holds; `body` returns the
    /// number it holds afterwards (on every instance). A body that throws gets its sandbox taken down.
    func use(_ body: @Sendable (SandboxFixture, _ rows: Int) async throws -> Int) async throws {
        var slot = await take()
        do {
            if let fixture = slot.fixture, await !isInDeclaredTopology(fixture, rows: slot.rows) {
                print("sandbox \(fixture.root) left the declared topology; building a fresh one")
                await fixture.stop()
                slot = Slot()
            }
            if slot.fixture == nil { slot.fixture = try await SandboxFixture.start(layout, patroni: patroni) }
            slot.rows = try await body(slot.fixture!, slot.rows)
        } catch {
            await slot.fixture?.stop()
            give(Slot())
            throw error
        }
        give(slot)
    }

    /// Takes every sandbox down (the suite has ended).
    func stopAll() async {
        let fixtures = idle.compactMap(\.fixture)
        idle = idle.map { _ in Slot() }
        for fixture in fixtures { await fixture.stop() }
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

    /// The declared roles, as recorded (or nothing recorded yet), no unfinished run, the declared primary
    /// accepting writes with `rows` rows, every other instance streaming from it with as many.
    private func isInDeclaredTopology(_ fx: SandboxFixture, rows: Int) async -> Bool {
        do {
            if FileManager.default.fileExists(atPath: fx.state + "/journal.sqlite") {
                let journal = try Journal(stateDirectory: fx.state)
                let declared = Dictionary(uniqueKeysWithValues: fx.plan.sites.map { ($0.name, $0.role) })
                let recorded = try journal.recordedRoles()
                guard try journal.unfinishedRun() == nil, recorded.isEmpty || recorded == declared else { return false }
            }
            guard let primary = fx.plan.declaredPrimary?.leader else { return false }
            guard try await fx.driver.status(of: primary).isWritablePrimary else { return false }
            for (_, instance) in fx.plan.allInstances {
                if instance != primary, try await fx.driver.status(of: instance).walReceiver?.isStreaming(from: primary) != true {
                    return false
                }
                if rows > 0, try await fx.sql(instance, "SELECT count(*) FROM t").first?.first != String(rows) { return false }
            }
            return true
        } catch {
            return false
        }
    }
}

/// `width` shared sandboxes of `layout` for the suite's cases (see ``SandboxPool``), taken down when it ends.
struct SandboxPoolTrait: SuiteTrait, TestScoping {
    let layout: [SiteLayout]
    let patroni: Bool
    let width: Int

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let pool = SandboxPool(layout: layout, patroni: patroni, width: width)
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
