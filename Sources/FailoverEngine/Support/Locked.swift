import Foundation

/// A value behind a lock, shared between threads and tasks: the workload's threads record into it and the
/// drill reads it; a child process's exit flag is set by the thread that reaps it.
@_spi(Benchmarks) public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    @_spi(Benchmarks) public init(_ value: Value) { self.value = value }
    @_spi(Benchmarks) public func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
    @_spi(Benchmarks) public var current: Value { withLock { $0 } }
}
