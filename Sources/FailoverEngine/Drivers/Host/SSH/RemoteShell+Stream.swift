import Foundation

extension RemoteShell {
    /// Runs `argv` on the host as the OS user (a one-shot ssh, which carries bytes, unlike the line-based
    /// long-lived sessions) with its standard output written to `fd` on this host: binary copies.
    public func stream(_ argv: [String], to fd: Int32, timeout: Double? = nil) async throws -> HostResult {
        try ensureControlDirectory()
        var result = try await CommandRunner(user: nil, defaultTimeout: defaultTimeout).run(
            Self.sshExecutable, sshOptions + ["--", host, remoteCommandLine(argv)], timeout: timeout, standardOutput: fd)
        result.commandLine = display(argv)
        return HostResult(result: result, host: host)
    }
}
