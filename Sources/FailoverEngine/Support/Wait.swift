import Foundation

/// Waiting by condition with a deadline, never a bare sleep standing in for a condition.
public enum Wait {
    /// Evaluates `condition` until it returns a value or `timeout` passes; between tries it pauses `interval`.
    ///
    /// - Returns: the condition's value, or nil at the deadline.
    public static func until<T>(
        timeout: Double, interval: Double = 0.05, _ condition: () async throws -> T?
    ) async throws -> T? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while true {
            if let value = try await condition() { return value }
            if ContinuousClock.now >= deadline { return nil }
            try await Task.sleep(for: .milliseconds(Int64(max(interval, 0.001) * 1000)))
        }
    }
}
