import Foundation

/// Blocking work off Swift's cooperative thread pool: the one way failoverd (and its tests) wait for libpq,
/// waitpid, a socket or an fsync from async code.
///
/// The cooperative pool has one thread per core, two on a small CI machine. A thread blocked in a system
/// call is a thread no task can run on: two of them stall every task of the process, and the deadlines of
/// unrelated waits run out meanwhile. ``run(_:)`` hands the work to a thread of its own and suspends the
/// calling task until the work returns.
///
/// Those threads never queue work behind blocked work: a job that finds no idle thread starts a new one,
/// because what runs here waits on other processes, disks and the network rather than on the CPU. A thread
/// left idle for ``idleLifetime`` seconds ends. Dispatch's global queues are not used for this: on Linux
/// their pool is sized to the cores too and grows past that only when its monitor notices blocked threads,
/// about once a second.
///
/// The work cannot be cancelled: it runs to its end, so it should carry its own deadline (libpq's
/// connect_timeout, a poll timeout, a process the caller can signal).
enum Blocking {
    /// Seconds an idle thread waits for more work before it ends.
    static let idleLifetime: Double = 10

    /// Runs `work` on a thread of its own and returns (or throws) what it returns (or throws).
    @discardableResult
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            BlockingThreads.shared.submit { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Runs `work` on a thread of its own and returns what it returns.
    @discardableResult
    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            BlockingThreads.shared.submit { continuation.resume(returning: work()) }
        }
    }

    /// Starts `work` on a thread of its own and returns at once, from synchronous code: for work that must
    /// begin now whatever the cooperative pool is doing (reaping a child the moment it exits).
    static func start(_ work: @escaping @Sendable () -> Void) {
        BlockingThreads.shared.submit(work)
    }
}

/// The threads behind ``Blocking``: as many as there are jobs at once, kept while work keeps coming.
private final class BlockingThreads: @unchecked Sendable {
    static let shared = BlockingThreads()

    private let condition = NSCondition()
    /// Jobs not yet taken by a thread (guarded by `condition`).
    private var jobs: [@Sendable () -> Void] = []
    /// Threads waiting for a job (guarded by `condition`).
    private var idle = 0

    /// Queues `job`; wakes an idle thread, or starts one when every thread is busy.
    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        let startThread = jobs.count > idle
        if !startThread { condition.signal() }
        condition.unlock()
        if startThread {
            let thread = Thread { [self] in work() }
            thread.name = "failoverd-blocking"
            thread.start()
        }
    }

    /// A thread's life: take jobs while there are any, wait for more, end after a quiet ``Blocking/idleLifetime``.
    private func work() {
        condition.lock()
        while true {
            if !jobs.isEmpty {
                let job = jobs.removeFirst()
                condition.unlock()
                job()
                condition.lock()
                continue
            }
            idle += 1
            let woken = condition.wait(until: Date(timeIntervalSinceNow: Blocking.idleLifetime))
            idle -= 1
            if !woken && jobs.isEmpty { break }
        }
        condition.unlock()
    }
}
