import Foundation

/// Seeing a promotion finish, the same way for every driver: the server itself answers over SQL that it
/// left recovery (`pg_is_in_recovery()` is false once it accepts writes).
///
/// The drivers ask for a promotion with `pg_ctl promote -W` and wait here, every 5 ms, instead of with
/// pg_ctl's `-w`, which looks at pg_control every 100 ms: a switchover's write outage would pay up to 100 ms
/// (50 ms on average) for nothing.
enum PromotionWait {
    /// True when the server answers that it is out of recovery; false when it is in recovery or does not answer.
    static func finished(_ info: ConnInfo) async -> Bool {
        (try? await PGConnection.with(info) { try $0.scalar("SELECT pg_is_in_recovery()") }) == "f"
    }

    /// Waits until the server answers that it left recovery; throws at the deadline, naming `name` and the
    /// last error seen.
    static func wait(for name: String, _ info: ConnInfo, timeout: Double, advice: String = "") async throws {
        let deadline = Date().addingTimeInterval(timeout)
        _ = try await Poll.until("\(name) to leave recovery after promotion", timeout: timeout, interval: 0.005, advice: advice) {
            // One connection asked again and again for as long as it answers: a query costs a fraction of a
            // millisecond, a new connection (a fork and an authentication) several, taken from the server
            // being promoted and from the clients waiting to write to it.
            try await PGConnection.with(info) { connection -> Bool? in
                while Date() < deadline {
                    if try connection.scalar("SELECT pg_is_in_recovery()") == "f" { return true }
                    usleep(5000)
                }
                return nil
            }
        }
    }
}
