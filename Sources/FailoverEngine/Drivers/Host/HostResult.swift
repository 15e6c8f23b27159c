import Foundation

/// What a command run through a ``HostTransport`` left behind: its own result, and whether the transport
/// could tell it at all.
public struct HostResult: Sendable {
    /// The command's result (for SSH: the remote command's exit status, or 255 when ssh itself failed).
    public var result: CommandResult
    /// The host it ran on, for messages; nil on this host.
    public var host: String?

    /// A result of `result` on `host` (nil: this host).
    public init(result: CommandResult, host: String? = nil) {
        self.result = result
        self.host = host
    }

    /// True when the transport could not reach the host or lost it mid-command (ssh's exit 255): the
    /// command's outcome is unknown, never a "no". Always false on this host.
    public var unreachable: Bool { host != nil && result.exitCode == 255 }
    /// The command's exit status.
    public var exitCode: Int32 { result.exitCode }
    /// True when the command exited with status 0.
    public var succeeded: Bool { result.succeeded }
    /// Standard output.
    public var stdout: String { result.stdout }
    /// Standard error.
    public var stderr: String { result.stderr }
    /// The last lines of output, for messages.
    public var outputTail: String { result.outputTail.replacingOccurrences(of: "\r", with: "") }

    /// Returns self when the command succeeded; throws naming the command, where it ran and its output
    /// otherwise (an unreachable host says so: its state is unknown, never assumed).
    @discardableResult
    public func checked(_ hint: String = "") throws -> HostResult {
        guard let host else {
            try result.checked(hint)
            return self
        }
        if unreachable {
            throw FailoverError.failed(
                "cannot reach \(host) over SSH to run `\(result.commandLine)`: \(outputTail.isEmpty ? "(no output)" : outputTail). Check the network, sshd and the plan's ssh settings (user, identityFile, knownHostsFile)."
            )
        }
        guard result.succeeded else {
            throw FailoverError.failed(
                "`\(result.commandLine)` failed on \(host) with exit code \(exitCode): \(outputTail.isEmpty ? "(no output)" : outputTail).\(hint.isEmpty ? "" : " " + hint)"
            )
        }
        return self
    }
}
