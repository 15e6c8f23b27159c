import Foundation

/// Waiting by condition with a deadline for the local driver and the sandbox: never a bare sleep.
@_spi(Benchmarks) public enum Poll {
    /// Thrown from a condition to stop waiting at once: the wrapped error is rethrown as it is.
    struct Abort: Error {
        /// The error to rethrow.
        var error: any Error
    }

    /// Evaluates `condition` every `interval` seconds until it returns a value; throws once `timeout` passes.
    ///
    /// - Parameter what: what is awaited, for the error (`"dr-0 to accept connections"`).
    /// - Parameter advice: what to do, appended to the timeout error, which also names the last error seen.
    @_spi(Benchmarks) public static func until<T>(
        _ what: String, timeout: Double, interval: Double = 0.05, advice: String = "",
        _ condition: () async throws -> T?
    ) async throws -> T {
        var lastError: (any Error)?
        // One waiting loop for the project (Wait.until); here an error only means "not yet".
        let value: T? = try await Wait.until(timeout: timeout, interval: interval) {
            do {
                let v = try await condition()
                lastError = nil
                return v
            } catch is CancellationError {
                throw CancellationError()
            } catch let abort as Abort {
                throw abort.error
            } catch {
                lastError = error
                return nil
            }
        }
        if let value { return value }
        let seen = lastError.map { " (last attempt: \(String(describing: $0)))" } ?? ""
        throw FailoverError.failed(
            "timed out after \(String(format: "%.1f", timeout)) s waiting for \(what)\(seen).\(advice.isEmpty ? "" : " " + advice)")
    }
}
