import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// The pool that shares topologies between crash cases: a topology is reused only while it is ready, a case
/// that throws never hands its topology on, and no more than `width` cases hold one at once.
@Suite struct FixturePoolTests {
    /// What the pool did, recorded by the closures it was given.
    final class Log: Sendable {
        let started = Locked(0)
        let stopped = Locked<[Int]>([])
        let ready = Locked(true)
        let holding = Locked(0)
        let mostHeld = Locked(0)

        func pool(width: Int) -> FixturePool<Int> {
            FixturePool<Int>(
                width: width,
                start: {
                    self.started.withLock {
                        $0 += 1; return $0
                    }
                },
                stop: { id in self.stopped.withLock { $0.append(id) } },
                isReady: { _, _ in self.ready.current })
        }
    }

    @Test func aReadyTopologyIsReusedWithItsRowsAndAnUnreadyOneIsReplaced() async throws {
        let log = Log()
        let pool = log.pool(width: 1)
        let seen = Locked<[String]>([])
        try await pool.use { id, rows in
            seen.withLock { $0.append("\(id):\(rows)") }
            return 21
        }
        try await pool.use { id, rows in
            seen.withLock { $0.append("\(id):\(rows)") }
            return 42
        }
        log.ready.withLock { $0 = false }
        try await pool.use { id, rows in
            seen.withLock { $0.append("\(id):\(rows)") }
            return 21
        }
        #expect(seen.current == ["1:0", "1:21", "2:0"])
        #expect(log.stopped.current == [1], "the topology that was not ready any more is taken down")
        await pool.stopAll()
        #expect(log.stopped.current == [1, 2])
    }

    @Test func aCaseThatThrowsGetsItsTopologyTakenDown() async throws {
        let log = Log()
        let pool = log.pool(width: 1)
        await #expect(throws: CancellationError.self) {
            try await pool.use { _, _ in throw CancellationError() }
        }
        #expect(log.stopped.current == [1])
        let next = Locked(0)
        try await pool.use { id, _ in
            next.withLock { $0 = id }
            return 0
        }
        #expect(next.current == 2, "the next case gets a fresh topology")
    }

    @Test func noMoreThanWidthCasesHoldATopologyAtOnce() async throws {
        let log = Log()
        let pool = log.pool(width: 2)
        let arrived = Locked(0)
        let finished = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    arrived.withLock { $0 += 1 }
                    try await pool.use { _, rows in
                        let now = log.holding.withLock {
                            $0 += 1; return $0
                        }
                        log.mostHeld.withLock { $0 = max($0, now) }
                        // Held until every case has asked for one and another case holds one too (or no other
                        // is left): the cases overlap as far as the pool lets them.
                        _ = try await Wait.until(timeout: 60, interval: 0.001) {
                            arrived.current == 8 && (log.holding.current >= 2 || finished.current >= 7) ? true : nil
                        }
                        log.holding.withLock { $0 -= 1 }
                        finished.withLock { $0 += 1 }
                        return rows + 1
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(log.mostHeld.current == 2)
        #expect(log.started.current == 2, "two topologies served eight cases")
        await pool.stopAll()
        #expect(log.stopped.current.sorted() == [1, 2])
    }
}
