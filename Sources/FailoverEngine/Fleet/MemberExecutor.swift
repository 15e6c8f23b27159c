import Foundation

/// The executor a member's run prefers: a serial queue of its own, so that the blocking calls of one
/// member's run (a journal commit with synchronous=FULL waits for fsync; a simulated driver never suspends)
/// never hold up the others. On a 2-core machine the shared cooperative pool has two threads: without
/// this, two members busy in blocking work would stall every other member of the fleet.
final class MemberExecutor: TaskExecutor, @unchecked Sendable {
    private let queue: DispatchQueue

    /// An executor on a queue named after the member.
    init(member: String) {
        queue = DispatchQueue(label: "failoverd.fleet.member.\(member)")
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
