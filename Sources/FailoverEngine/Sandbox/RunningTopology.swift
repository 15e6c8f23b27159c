import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A plan's sandbox or lab found running on this host: what was seen, and the state directory whose
/// manifest lists it when failoverd can tell. A verb that would build it (`sandbox up`, `lab up`, `drill`)
/// refuses with ``refusal(_:planPath:reuse:)`` instead of building over it, or tearing it down on its way
/// out: only the state directory that built it may take it down.
public struct RunningTopology: Sendable, Equatable {
    /// A local sandbox, or a lab of network namespaces.
    public enum Kind: String, Sendable { case sandbox, lab }

    /// Which of the two it is.
    public var kind: Kind
    /// The plan's name.
    public var plan: String
    /// The (absolute) state directory whose manifest lists it, when failoverd could tell.
    public var stateDirectory: String?
    /// What was seen running, one phrase each (`postmaster 4242 of prod-0`, `namespace fodlab-…-0`).
    public var evidence: [String]

    /// The command that takes it down: `failoverd sandbox down PLAN --state DIR` (or `lab down`).
    public func downCommand(planPath: String) -> String {
        "failoverd \(kind.rawValue) down \(Self.word(planPath)) --state \(stateDirectory.map(Self.word) ?? "STATE")"
    }

    /// The refusal (exit 3) of `verb`, naming what runs, where it was built, the command that takes it down
    /// and `reuse`: how to use it instead (a whole sentence, or empty).
    public func refusal(_ verb: String, planPath: String, reuse: String) -> FailoverError {
        let built =
            stateDirectory.map { "built with --state \($0)" }
            ?? "built with a state directory failoverd cannot find (STATE below: the --state of the `\(kind.rawValue) up` that built it)"
        return FailoverError.refused(
            "\(verb): the \(kind.rawValue) of plan \(PlanValues.quoted(plan)) is already running on this host (\(evidence.joined(separator: ", "))), \(built). Nothing was changed. Take it down with `\(downCommand(planPath: planPath))`\(reuse.isEmpty ? "." : ", or \(reuse)")"
        )
    }

    /// `text` as one shell word: as it is when it needs no quoting, else in single quotes.
    public static func word(_ text: String) -> String {
        let plain =
            !text.isEmpty && text.unicodeScalars.allSatisfy { CharacterSet(charactersIn: "/._-+=:@%,").contains($0) || $0.isASCIIAlnum }
        return plain ? text : ShellQuote.quote(text)
    }

    /// `path` made absolute against the working directory, and normalized.
    static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return URL(fileURLWithPath: full).standardizedFileURL.path
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIIAlnum: Bool { isASCII && (properties.isAlphabetic || ("0"..."9").contains(self)) }
}

// MARK: The sandbox

extension Sandbox {
    /// The file beside the first data directory that names the state directory whose manifest lists this
    /// sandbox (written by `up()`, removed by `down()`). It lies in a directory of the OS user, so it is read
    /// only to name a state directory in a message, and only when that directory holds this plan's manifest.
    var builderNotePath: String {
        let parent = ((plan.allInstances.first?.instance.dataDirectory ?? plan.repository.path) as NSString).deletingLastPathComponent
        return parent + "/.failoverd-sandbox-\(plan.name).state"
    }

    /// Writes the builder note (recorded in the manifest first) unless it already names this state directory.
    func writeBuilderNote(user: OSUser, manifest: inout SandboxManifest) throws {
        let text = RunningTopology.absolute(stateDirectory) + "\n"
        try manifest.record([builderNotePath], for: plan, in: stateDirectory)
        if (try? Files.readText(builderNotePath, owner: user)) ?? nil != text {
            try Files.write(text, to: builderNotePath, mode: 0o644, owner: user)
        }
    }

    /// The state directory that built this plan's sandbox: this one when its manifest is here, else the one
    /// the builder note names if that directory holds this plan's manifest; nil when neither says.
    func builderStateDirectory() -> String? {
        if exists { return RunningTopology.absolute(stateDirectory) }
        let user: OSUser? = OSUser.isRoot ? (try? OSUser.postgresUser(for: plan)) : .current
        guard let text = (try? Files.readText(builderNotePath, owner: user)) ?? nil else { return nil }
        let named = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard PlanValues.pathProblem(named) == nil, (try? SandboxManifest.load(for: plan, in: named)) ?? nil != nil else { return nil }
        return named
    }

    /// What of this plan's sandbox runs on this host, whichever state directory built it: a postmaster in
    /// one of the plan's data directories, or a Patroni, etcd or S3 endpoint process the sandbox started
    /// (each identified by its recorded pid and start time). Nil when none runs. Reads /proc only: it
    /// answers in milliseconds.
    public func running() -> RunningTopology? {
        var evidence: [String] = []
        for (_, instance) in plan.allInstances {
            if let pid = Postmaster.livePID(in: InstancePaths(instance).dataDirectory) {
                evidence.append("postmaster \(pid) of \(instance.name) in \(instance.dataDirectory)")
            }
        }
        evidence += liveDaemons().map { "\($0.name) (pid \($0.pid))" }
        guard !evidence.isEmpty else { return nil }
        return RunningTopology(kind: .sandbox, plan: plan.name, stateDirectory: builderStateDirectory(), evidence: evidence)
    }

    /// The Patroni, etcd, moto and stunnel processes of this plan's sandbox that still run.
    func liveDaemons() -> [(name: String, pid: pid_t)] {
        guard let user = OSUser.isRoot ? (try? OSUser.postgresUser(for: plan)) : .current,
            let driver = try? LocalPostgresDriver(plan: plan, binDirectory: binDirectory, logger: logger)
        else { return [] }
        var daemons: [SandboxDaemon] = []
        if isPatroni {
            daemons += plan.allInstances.map { patroniDaemon($0.instance, user: user) }
            daemons += Set(plan.sites.compactMap { $0.patroni?.etcd }).sorted().map {
                etcdDaemon($0, directory: etcdDirectory($0, driver: driver), user: user)
            }
        }
        if let endpoint = s3Endpoint(driver) { daemons += [endpoint.moto, endpoint.stunnel] }
        return daemons.compactMap { d in d.live.map { (d.name, $0.pid) } }
    }

    /// Refuses, before anything is built, a TCP port the sandbox would listen on that something else holds:
    /// an instance's port (unless its own postmaster runs there), a Patroni REST API or etcd port, or the S3
    /// endpoint's port (unless the sandbox's own process runs). A server started there would fail only after
    /// its start timeout, and a client would talk to the wrong server. Local sites only: lab hosts listen
    /// inside namespaces of their own.
    func refuseTakenPorts() throws {
        guard starter == nil else { return }
        let live = Set(liveDaemons().map(\.name))
        var ports: [(host: String, port: Int, what: String)] = []
        for (_, instance) in plan.allInstances where !live.contains("Patroni of \(instance.name)") {
            if Postmaster.livePID(in: InstancePaths(instance).dataDirectory) == nil {
                ports.append((instance.host, instance.port, "the port of instance \(instance.name)"))
            }
            if isPatroni {
                let rest = patroniListen(instance)
                ports.append((rest.host, rest.port, "the Patroni REST API of \(instance.name)"))
            }
        }
        if isPatroni {
            for endpoint in Set(plan.sites.compactMap { $0.patroni?.etcd }).sorted() where !live.contains("etcd on \(endpoint)") {
                let parsed = PlanValues.parseEndpoint(endpoint)
                ports.append((parsed.host, parsed.port, "etcd's client port"))
            }
        }
        if let s3 = plan.repository.s3, plan.repository.type == "s3", !live.contains("stunnel") {
            ports.append((s3.endpoint, s3.port ?? 443, "the S3 endpoint"))
        }
        for (host, port, what) in ports where HostAddress.isLoopback(host) && !TCPProbe.isRefused(host: host, port: port, timeout: 1) {
            let holder = ListeningSocket.owner(port: port).map { " by pid \($0.pid) (\($0.command))" } ?? ""
            throw FailoverError.refused(
                "sandbox up: \(host):\(port) (\(what)) is already in use\(holder), not by this plan's sandbox; nothing was built. Stop what listens there, or give plan \(PlanValues.quoted(plan.name)) other ports."
            )
        }
    }
}

// MARK: The lab

extension Lab {
    /// What of this plan's lab runs on this host, whichever state directory built it: its bridge, the
    /// namespaces of its hosts with the sshd in each, and the sandbox's postmasters. The state directory is
    /// read from the sshd's own command line (`-f STATE/lab-PLAN/host-N/sshd_config`, written by `up()`).
    /// Nil when none of it exists.
    public func running() async throws -> RunningTopology? {
        var evidence: [String] = []
        var builtWith: String?
        if try await linkExists(bridge) { evidence.append("bridge \(bridge)") }
        let namespaces = try await existingNamespaces()
        for (index, host) in hosts.enumerated() where namespaces.contains(namespace(index)) {
            evidence.append("namespace \(namespace(index))")
            let pids = ((try? await ip(["netns", "pids", namespace(index)]).stdout) ?? "").split(separator: "\n").compactMap { pid_t($0) }
            for pid in pids {
                // The listening sshd rewrites its command line into one string ("sshd: /usr/sbin/sshd -f CONFIG
                // -E LOG [listener] …"): read it as words.
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
                let argv = data.split(whereSeparator: { $0 == 0 || $0 == 32 }).map { String(decoding: $0, as: UTF8.self) }
                guard argv.prefix(2).contains(where: { ($0 as NSString).lastPathComponent == "sshd" || $0 == "sshd:" }),
                    let f = argv.firstIndex(of: "-f"), f + 1 < argv.count
                else { continue }
                evidence.append("sshd \(pid) of \(host)")
                let suffix = "/lab-\(plan.name)/host-\(index)/sshd_config"
                if argv[f + 1].hasSuffix(suffix), argv[f + 1].count > suffix.count {
                    builtWith = String(argv[f + 1].dropLast(suffix.count))
                }
            }
        }
        if witnessAddress != nil, namespaces.contains(witnessNamespace) { evidence.append("namespace \(witnessNamespace) (etcd witness)") }
        let sandbox = try? sandbox()
        evidence += sandbox?.running()?.evidence ?? []
        guard !evidence.isEmpty else { return nil }
        if builtWith == nil, let own = try LabManifest.load(for: plan, in: stateDirectory),
            own.namespaces.contains(where: namespaces.contains)
        {
            builtWith = RunningTopology.absolute(stateDirectory)
        }
        return RunningTopology(
            kind: .lab, plan: plan.name, stateDirectory: builtWith ?? sandbox?.builderStateDirectory(), evidence: evidence)
    }

    /// Refuses, before anything is created, a bridge, namespace or link of this plan's lab that exists but
    /// that this state directory's manifest does not list: another `lab up` (another state directory, or a
    /// drill) built it, and only its own `lab down` may remove it. Refuses another plan's lab too: every lab's
    /// control host is 198.18.0.1.
    func refuseForeignParts(_ manifest: LabManifest?) async throws {
        var foreign = false
        if try await linkExists(bridge), manifest?.bridge != bridge { foreign = true }
        let namespaces = try await existingNamespaces()
        for index in hosts.indices {
            if namespaces.contains(namespace(index)), manifest?.namespaces.contains(namespace(index)) != true { foreign = true }
            if try await linkExists(link(index)), manifest?.links.contains(link(index)) != true { foreign = true }
        }
        if namespaces.contains(witnessNamespace), manifest?.namespaces.contains(witnessNamespace) != true { foreign = true }
        if foreign, let running = try await running() {
            let path = planPath ?? "PLAN"
            throw running.refusal(
                "lab up", planPath: path,
                reuse:
                    "drill it as it is with `failoverd drill \(RunningTopology.word(path)) --reuse` (`lab up --reuse` completes only a lab built with its own --state)."
            )
        }
        let bridges = try await ip(["-o", "link", "show", "type", "bridge"]).stdout.split(separator: "\n").compactMap {
            $0.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces)
        }
        if let other = bridges.first(where: { $0.hasPrefix("flb") && $0 != bridge }) {
            throw FailoverError.refused(
                "lab up: another lab is up on this machine (bridge \(other)); labs share the control address \(Self.controlAddress). Take it down first (failoverd lab down with its plan)."
            )
        }
    }
}

// MARK: Who listens on a port

/// The process listening on a TCP port of this host, from /proc/net/tcp{,6} and the processes' descriptors.
enum ListeningSocket {
    /// The pid and command name of a process holding a listening socket on `port`, when /proc tells.
    static func owner(port: Int) -> (pid: pid_t, command: String)? {
        var inodes: Set<String> = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let lines = ((try? String(contentsOfFile: table, encoding: .utf8)) ?? "").split(separator: "\n").dropFirst()
            for line in lines {
                let fields = line.split(separator: " ")
                // sl local_address rem_address st … inode (field 9); st 0A is LISTEN.
                guard fields.count > 9, fields[3] == "0A", let hex = fields[1].split(separator: ":").last, Int(hex, radix: 16) == port
                else { continue }
                inodes.insert("socket:[\(fields[9])]")
            }
        }
        guard !inodes.isEmpty else { return nil }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(entry)/fd") else {
                continue
            }
            for fd in fds {
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/fd/\(fd)"),
                    inodes.contains(target)
                {
                    return (pid, ProcessIdentity.commandName(pid) ?? "?")
                }
            }
        }
        return nil
    }
}
