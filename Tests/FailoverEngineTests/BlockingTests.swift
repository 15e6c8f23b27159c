import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

#if canImport(Glibc)
    import Glibc
#endif

/// Blocking work runs off Swift's cooperative pool (``Blocking``), and child processes are awaited there
/// (``ChildProcess``): a test or a driver that waits on libpq, waitpid or a socket never takes a thread
/// that other tasks need.
@Suite struct BlockingTests {
    /// Eight jobs that each block until all eight are blocking at once, released by a task of the
    /// cooperative pool once it sees them all: they finish only if each got a thread of its own and the
    /// pool stayed free (run on the pool's one or two threads, or queued behind each other, they would
    /// hold each other until their deadline and report it).
    @Test func moreBlockedJobsThanCoresRunAtOnceAndLeaveThePoolFree() async throws {
        let jobs = 8
        let arrived = Locked(0)
        let release = DispatchSemaphore(value: 0)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<jobs {
                group.addTask {
                    await Blocking.run { () -> Bool in
                        arrived.withLock { $0 += 1 }
                        // Bounded, so a failing run reports instead of hanging: a passing one is released at once.
                        return release.wait(timeout: .now() + 60) == .success
                    }
                }
            }
            let all = try await Wait.until(timeout: 60, interval: 0.01) { arrived.current == jobs ? true : nil }
            #expect(all == true, "only \(arrived.current) of \(jobs) blocking jobs ran at once")
            for _ in 0..<jobs { release.signal() }
            var released = 0
            for try await ok in group where ok { released += 1 }
            #expect(released == jobs)
        }
    }

    @Test func whatTheWorkThrowsReachesTheCaller() async {
        await expectFailure(.stepFailed, "from the blocking thread") {
            try await Blocking.run { () throws -> Int in throw FailoverError.failed("from the blocking thread") }
        }
        #expect(await Blocking.run { 6 * 7 } == 42)
    }

    /// A child's output can be read while it runs; it is awaited, its signal death reported as such; once
    /// it has exited no signal is sent to its pid any more.
    @Test func aChildProcessIsReadWhileItRunsAwaitedAndSignalledOnlyWhileItLives() async throws {
        let child = try ChildProcess.start(
            "/bin/sh", ["sh", "-c", "echo started; echo to-stderr >&2; exec sleep 300"], environment: ["PATH=/usr/bin:/bin"],
            workingDirectory: "/", commandLine: "sh -c …")
        let started = try await Wait.until(timeout: 60, interval: 0.01) { child.outputSoFar() == "started\n" ? true : nil }
        #expect(started == true, "output so far: \(child.outputSoFar())")
        #expect(child.isRunning)
        #expect(child.signal(SIGKILL))
        #expect(await child.wait() == .signalled(SIGKILL))
        #expect(child.errorSoFar() == "to-stderr\n")
        #expect(!child.isRunning)
        #expect(!child.signal(SIGKILL), "a signal after the child was reaped could reach another process with its pid")

        let exited = try ChildProcess.start(
            "/bin/sh", ["sh", "-c", "exit 7"], environment: [], workingDirectory: "/", commandLine: "sh -c 'exit 7'")
        #expect(await exited.wait() == .exited(7))
        #expect(await exited.wait().status == 7, "waiting again gives the same answer")
    }

    /// The output files belong to the child object: gone once it is.
    @Test func aChildProcessRemovesItsOutputFiles() async throws {
        var child: ChildProcess? = try ChildProcess.start(
            "/bin/echo", ["echo", "hello"], environment: [], workingDirectory: "/", commandLine: "echo hello")
        let paths = [child!.stdoutPath, child!.stderrPath]
        #expect(await child!.wait() == .exited(0))
        #expect(child!.outputSoFar() == "hello\n")
        child = nil
        #expect(paths.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
    }
}
