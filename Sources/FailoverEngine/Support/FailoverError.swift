import Foundation

/// An error a user can act on: what went wrong, where, and what to do, with the exit code it maps to.
public struct FailoverError: Error, Sendable, CustomStringConvertible {
    /// The class of failure, which decides the process exit code.
    public enum Code: Int32, Sendable {
        /// A step failed; the run is left resumable. Exit 1.
        case stepFailed = 1
        /// The input (plan, flag, state directory) is invalid. Exit 2.
        case invalidInput = 2
        /// The state machine or a safety gate refused. Exit 3.
        case refused = 3
        /// Another live run holds the run lock. Exit 4.
        case lockHeld = 4
    }

    /// The class of failure.
    public var code: Code
    /// The message shown to the user.
    public var message: String

    /// Creates an error of the given class.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Invalid input (exit 2).
    public static func invalid(_ message: String) -> FailoverError { .init(.invalidInput, message) }
    /// A refusal by the state machine or a gate (exit 3).
    public static func refused(_ message: String) -> FailoverError { .init(.refused, message) }
    /// A failed step (exit 1).
    public static func failed(_ message: String) -> FailoverError { .init(.stepFailed, message) }
}
