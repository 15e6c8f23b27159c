import Foundation

/// A value behind a lock, shared between threads and tasks: the workload's threads record into it and the
/// drill reads it; a child process's exit flag is set by the thread that reaps it.
@_spi(Benchmarks) public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    /// Holds `value`.
    @_spi(Benchmarks) public init(_ value: Value) { self.value = value }
    /// Runs `body` on the value under the lock.
    @_spi(Benchmarks) public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    /// A copy of the value, read under the lock.
    @_spi(Benchmarks) public var current: Value { withLock { $0 } }
}
