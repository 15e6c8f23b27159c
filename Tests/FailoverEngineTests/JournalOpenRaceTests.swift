import Foundation
import Testing

@_spi(Benchmarks) @testable import FailoverEngine

/// Several processes open one new journal at once (`failoverd run` beside `status`, a test beside the CLI):
/// each must open it, whichever creates its tables.
@Suite struct JournalOpenRaceTests {
    @Test("six connections open one new journal at the same instant, 30 times: every one opens it, migrated once")
    func concurrentOpensOfANewJournalAllSucceed() throws {
        for round in 1...30 {
            let state = CLI.tempDirectory("failoverd-journal-race")
            defer { try? FileManager.default.removeItem(atPath: state) }
            let failures = Locked<[String]>([])
            let start = DispatchSemaphore(value: 0)
            let done = DispatchGroup()
            for _ in 0..<6 {
                done.enter()
                Thread.detachNewThread {
                    start.wait()
                    do {
                        _ = try Journal(stateDirectory: state)
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    done.leave()
                }
            }
            for _ in 0..<6 { start.signal() }
            done.wait()
            #expect(failures.withLock { $0 }.isEmpty, "round \(round): \(failures.withLock { $0 })")
            let journal = try Journal(stateDirectory: state)
            let applied = try journal.db.read { try JournalSchema.migrator.appliedIdentifiers($0) }
            #expect(applied == Set(JournalSchema.migrator.migrations))
        }
    }
}
