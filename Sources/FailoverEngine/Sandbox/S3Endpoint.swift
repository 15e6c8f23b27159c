import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A local S3-compatible endpoint for a sandbox whose plan has an s3 repository: moto's server on a free
/// loopback port, behind stunnel on the plan's endpoint and port with a self-signed certificate (pgBackRest
/// 2.45 speaks only TLS to S3, and moto's own TLS server breaks its uploads).
///
/// A test stand-in for a real bucket, for rehearsals and tests on one host; never for production.
/// Both processes run as the sandbox's OS user; their pids and start times are kept in the endpoint's
/// directory, and `stop()` signals only processes that still match them.
struct S3Endpoint: Sendable {
    /// moto's server, installed by scripts/setup.sh into the project's virtual environment.
    static let motoServer = "/opt/failoverd-venv/bin/moto_server"

    let settings: S3Settings
    /// Where the certificate, stunnel's configuration, the logs and the pid files live.
    let directory: String
    let runner: CommandRunner

    var moto: SandboxDaemon {
        SandboxDaemon(name: "moto_server", identityFile: directory + "/moto.identity", logFile: directory + "/moto.log", runner: runner)
    }
    var stunnel: SandboxDaemon {
        SandboxDaemon(name: "stunnel", identityFile: directory + "/stunnel.identity", logFile: directory + "/stunnel.log", runner: runner)
    }
    var port: Int { settings.port ?? 443 }

    /// Refuses settings the sandbox cannot serve: only a loopback address, and an unprivileged port.
    static func check(_ settings: S3Settings) throws {
        guard settings.endpoint == "127.0.0.1" || settings.endpoint == "localhost" else {
            throw FailoverError.invalid(
                "sandbox: $.repository.s3.endpoint is \(settings.endpoint); the sandbox's S3 endpoint listens on loopback only: use 127.0.0.1 (a real bucket is not a sandbox)."
            )
        }
        guard let port = settings.port, port >= 1024 else {
            throw FailoverError.invalid(
                "sandbox: $.repository.s3.port must be set to 1024 or above for the sandbox's S3 endpoint (it does not run as root).")
        }
        guard settings.uriStyle == "path" else {
            throw FailoverError.invalid(
                "sandbox: $.repository.s3.uriStyle must be \"path\" for the sandbox's S3 endpoint (an address has no bucket subdomain).")
        }
    }

    /// Starts moto and stunnel unless they already run, creates the bucket, and waits until the TLS port answers.
    func start() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.motoServer) else {
            throw FailoverError.invalid(
                "sandbox: \(Self.motoServer) is missing; run scripts/setup.sh, which installs moto into /opt/failoverd-venv.")
        }
        let stunnelExecutable = try CommandRunner.resolve("stunnel4")
        if stunnel.live != nil, moto.live != nil { return }
        await stop()
        if !Files.exists(directory + "/cert.pem") {
            try await runner.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=\(settings.endpoint)", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
                ]
            ).checked("Is openssl installed (scripts/setup.sh)?")
        }
        let motoPort = try FreePorts.take(1)[0]
        try await moto.start([Self.motoServer, "-H", "127.0.0.1", "-p", String(motoPort)])
        _ = try await Poll.until(
            "moto_server to answer on 127.0.0.1:\(motoPort)", timeout: 60, interval: 0.1, advice: "See \(directory)/moto.log."
        ) {
            try await runner.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "http://127.0.0.1:\(motoPort)/"]).succeeded ? true : nil
        }
        try await runner.run("/usr/bin/curl", ["-sf", "-o", "/dev/null", "-X", "PUT", "http://127.0.0.1:\(motoPort)/\(settings.bucket)"])
            .checked(
                "Could not create bucket \(settings.bucket) on the sandbox's S3 endpoint; see \(directory)/moto.log.")
        let config = """
            ; Written by failoverd sandbox: TLS in front of moto_server, for pgBackRest's S3 client.
            foreground = no
            pid = \(directory)/stunnel.pid
            output = \(directory)/stunnel.log
            [s3]
            accept = 127.0.0.1:\(port)
            connect = 127.0.0.1:\(motoPort)
            cert = \(directory)/cert.pem
            key = \(directory)/key.pem

            """
        try Files.write(config, to: directory + "/stunnel.conf", mode: 0o600, owner: runner.user)
        try await runner.run(stunnelExecutable, [directory + "/stunnel.conf"]).checked("See \(directory)/stunnel.log.")
        let stunnelPID = try await Poll.until("stunnel to write its pid file", timeout: 20, interval: 0.05) { () -> pid_t? in
            Files.read(directory + "/stunnel.pid").flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        try stunnel.record(stunnelPID)
        _ = try await Poll.until(
            "the S3 endpoint to answer on 127.0.0.1:\(port)", timeout: 30, interval: 0.1, advice: "See \(directory)/stunnel.log."
        ) {
            try await runner.run("/usr/bin/curl", ["-sk", "-o", "/dev/null", "https://127.0.0.1:\(port)/"]).succeeded ? true : nil
        }
    }

    /// Stops stunnel and moto, each only if its pid still has the start time recorded when it started and
    /// runs as the endpoint's OS user (``SandboxDaemon``).
    func stop() async {
        await stunnel.stop(grace: 10)
        await moto.stop(grace: 10)
    }
}
