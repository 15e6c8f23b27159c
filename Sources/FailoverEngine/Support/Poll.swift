import Foundation

/// Waiting by condition with a deadline for the local driver and the sandbox: never a bare sleep.
enum Poll {
    /// Thrown from a condition to stop waiting at once: the wrapped error is rethrown as it is.
    struct Abort: Error {
        /// The error to rethrow.
        var error: any Error
    }

    /// Evaluates `condition` every `interval` seconds until it returns a value; throws once `timeout` passes.
    ///
    /// - Parameter what: what is awaited, for the error (`"dr-0 to accept connections"`).
    /// - Parameter advice: what to do, appended to the timeout error, which also names the last error seen.
    static func until<T>(
        _ what: String, timeout: Double, interval: Double = 0.05, advice: String = "",
        _ condition: () async throws -> T?
    ) async throws -> T {
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int64(timeout * 1000))
        var lastError: (any Error)?
        while true {
            do {
                if let value = try await condition() { return value }
                lastError = nil
            } catch is CancellationError {
                throw CancellationError()
            } catch let abort as Abort {
                throw abort.error
            } catch {
                lastError = error
            }
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(Int64(max(interval, 0.001) * 1000)))
        }
        let seen = lastError.map { " (last attempt: \(String(describing: $0)))" } ?? ""
        throw FailoverError.failed(
            "timed out after \(String(format: "%.1f", timeout)) s waiting for \(what)\(seen).\(advice.isEmpty ? "" : " " + advice)")
    }
}
