import Foundation

/// The plan's hosts reached over OpenSSH, as a ``HostTransport``: each instance's commands run on its own
/// host as the plan's OS user through ``RemoteShell`` (one multiplexed connection and long-lived shells per
/// host); file work and the postmaster check are fixed POSIX shell scripts whose every value is a positional
/// parameter, one round trip each.
///
/// Fail closed: a host SSH cannot reach answers ``HostResult/unreachable`` or ``PostmasterState/unknown(_:)``,
/// and a path behind a directory the OS user cannot search is "cannot tell", never "absent"
/// (``provenAbsent``).
public struct SSHHost: HostTransport {
    /// Sites of driver `ssh` are reached through it.
    public static let driverKind = DriverKind.ssh
    /// pg_ctl, pg_ctlcluster or a systemd unit, as each instance's `service` says.
    public static let startsServices = true

    // Built by ``SSHPostgresDriver``'s init (the memberwise init): the control directory is created at the
    // first command, not by merely building a transport.

    /// The plan, whose sites hold each host's ssh settings, OS user and step timeout.
    public let plan: Plan
    /// Where the ControlMaster sockets live.
    public let controlDirectory: String
    /// PostgreSQL's bin directory on the hosts (`pg_ctl status` is how a postmaster is seen there).
    public let binDirectory: String

    /// The OS user that runs PostgreSQL on the hosts: the plan's, else `failoverd`.
    public var osUser: String { plan.osUser ?? "failoverd" }
    /// The timeout of a command that gets none: the plan's step timeout and 15 s for SSH itself.
    public var defaultTimeout: Double { max(plan.policy.stepTimeoutSeconds, 1) + 15 }

    public var postgresUser: String { osUser }

    public func onHost(_ instance: Instance) -> String { " on \(instance.host)" }

    /// The shell on `instance`'s host.
    public func shell(for instance: Instance) throws -> RemoteShell {
        guard let site = plan.allInstances.first(where: { $0.instance.name == instance.name })?.site else {
            throw FailoverError.invalid("instance \(instance.name) is not in plan \"\(plan.name)\"")
        }
        guard let ssh = site.ssh else {
            throw FailoverError.invalid("site \"\(site.name)\" has no ssh settings; the ssh driver reaches only ssh sites.")
        }
        return RemoteShell(
            host: instance.host, ssh: ssh, osUser: osUser, controlDirectory: controlDirectory, defaultTimeout: defaultTimeout)
    }

    /// Opens the multiplexed connection to every host of the plan in the background, so that the first
    /// command a step sends to a host (a promotion, inside the write-unavailability window) does not pay for
    /// the SSH handshake. Failures are left for the steps to meet.
    public func warmUp() {
        var hosts: [String: Instance] = [:]
        for (site, instance) in plan.allInstances where site.driver == Self.driverKind && hosts[instance.host] == nil {
            hosts[instance.host] = instance
        }
        for instance in hosts.values {
            Task { _ = try? await shell(for: instance).run(["true"], timeout: 10) }
        }
    }

    /// Closes the multiplexed connection to every host of the plan.
    public func closeConnections() async {
        RemoteSession.closeAll(controlDirectory: controlDirectory)
        for (site, instance) in plan.allInstances where site.driver == Self.driverKind {
            if let shell = try? shell(for: instance) { await shell.closeMaster() }
        }
    }

    // MARK: Commands

    public func run(
        _ argv: [String], on instance: Instance, as user: HostUser, environment: [String: String], workingDirectory: String,
        timeout: Double?
    ) async throws -> HostResult {
        let shell = try shell(for: instance)
        switch user {
        case .postgres: return try await shell.run(argv, workingDirectory: workingDirectory, environment: environment, timeout: timeout)
        case .root:
            precondition(environment.isEmpty && workingDirectory == "/", "a command run as root over SSH is its argv alone")
            return try await shell.runPrivileged(argv, timeout: timeout)
        }
    }

    /// A one-shot ssh (``RemoteShell/stream(_:to:timeout:)``): the long-lived sessions carry lines, not bytes.
    public func stream(_ argv: [String], on instance: Instance, to fd: Int32, timeout: Double?) async throws -> HostResult {
        try await shell(for: instance).stream(argv, to: fd, timeout: timeout)
    }

    // MARK: Files

    public func read(_ paths: [String], on instance: Instance) async throws -> [String?] {
        guard !paths.isEmpty else { return [] }
        let token = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let r = try await script(Self.provenAbsent + Self.readFiles, [token] + paths, on: instance)
        if r.unreachable { try r.checked() }
        guard r.exitCode == 0 else {
            throw FailoverError.failed(
                "cannot read \(paths.joined(separator: ", "))\(onHost(instance)): \(r.outputTail.isEmpty ? "exit \(r.exitCode)" : r.outputTail). Check that \(osUser) can search every directory above it and read it."
            )
        }
        guard let texts = Self.parseFiles(r.stdout, token: token), texts.count == paths.count else {
            throw FailoverError.failed("reading \(paths.joined(separator: ", "))\(onHost(instance)) printed output failoverd cannot read")
        }
        return texts
    }

    public func write(_ files: [HostFile], on instance: Instance) async throws {
        guard !files.isEmpty else { return }
        let r = try await script(
            Self.writeFiles, files.flatMap { [$0.path, $0.text, String($0.mode, radix: 8)] }, on: instance)
        try r.checked(
            "Check that \(osUser) can write \(Set(files.map { ($0.path as NSString).deletingLastPathComponent }).sorted().joined(separator: " and "))\(onHost(instance))."
        )
    }

    public func append(_ text: String, to path: String, on instance: Instance) async throws {
        let r = try await script(
            #"[ -f "$1" ] || { echo "$1 is not a file" >&2; exit 3; }; printf '%s' "$2" >> "$1""#, [path, text], on: instance)
        try r.checked("Check that \(osUser) can write \(path)\(onHost(instance)).")
    }

    public func remove(_ path: String, on instance: Instance) async throws {
        try await run(["rm", "-f", "--", path], on: instance).checked()
    }

    public func makeDirectory(_ path: String, mode: Int, on instance: Instance) async throws {
        try await run(["mkdir", "-p", "-m", String(mode, radix: 8), "--", path], on: instance).checked()
    }

    public func exists(_ path: String, on instance: Instance) async throws -> Bool {
        let r = try await script(
            Self.provenAbsent + #"{ [ -e "$1" ] || [ -L "$1" ]; } && exit 0; absent "$1" && exit 3; exit 5"#, [path], on: instance)
        switch (r.unreachable, r.exitCode) {
        case (false, 0): return true
        case (false, 3): return false
        case (false, 5):
            throw FailoverError.failed(
                "cannot tell whether \(path) exists\(onHost(instance)): \(osUser) cannot reach it. Give \(osUser) search permission on every directory above \(path)\(onHost(instance))."
            )
        default:
            try r.checked()
            return false
        }
    }

    // MARK: The postmaster

    /// A round trip to the host.
    public var postmasterCheck: PostmasterCheckCost { .roundTrip }

    /// `pg_ctl status` on the host (``postmasterStatus``).
    public func postmaster(of dataDirectory: String, on instance: Instance) async -> PostmasterState {
        let r: HostResult
        do {
            r = try await script(
                Self.provenAbsent + Self.postmasterStatus + #"pm "$1" "$2""#, [binDirectory + "/pg_ctl", dataDirectory], on: instance)
        } catch {
            return .unknown("`pg_ctl status` on \(instance.host) could not be run (\(error))")
        }
        return Self.state(r, instance)
    }

    /// What a `pm` exit status says (0 running, 3 or 4 stopped; anything else unknown, with why).
    static func state(_ r: HostResult, _ instance: Instance) -> PostmasterState {
        state(exitCode: r.exitCode, unreachable: r.unreachable, output: r.outputTail, instance)
    }

    static func state(exitCode: Int32, unreachable: Bool, output: String, _ instance: Instance) -> PostmasterState {
        switch (unreachable, exitCode) {
        case (false, 0): return .running
        case (false, 3), (false, 4): return .stopped
        case (false, _):
            // SSH answers but the probe fails (sudo refused, data directory unreadable): unknown, not stopped.
            return .unknown("`pg_ctl status` on \(instance.host) failed with exit \(exitCode) (\(output.isEmpty ? "no output" : output))")
        default:
            // The host may be cut off with a primary still running behind the cut.
            return .unknown("host \(instance.host) cannot be reached over SSH (\(output.isEmpty ? "exit \(exitCode)" : output))")
        }
    }

    /// One script: `pm`, the request, then a wait every 10 ms until postmaster.pid is gone or names a process
    /// that is (the test pg_ctl's own `-w` makes, every 100 ms), then `pm` again. The request's exit status
    /// is the script's; its last line of output says what `pm` saw (`failoverd-stop: …`).
    public func stopPostmaster(
        of dataDirectory: String, request: [String], environment: [String: String], timeout: Double, on instance: Instance
    ) async throws -> PostmasterStop {
        let r = try await script(
            Self.provenAbsent + Self.postmasterStatus + Self.stopAndWait,
            [binDirectory + "/pg_ctl", dataDirectory, String(Int(timeout))] + request, on: instance, environment: environment,
            timeout: timeout + 15)
        return Self.stopOutcome(r, instance)
    }

    /// What ``stopAndWait``'s output and exit status say: its last line is what `pm` saw
    /// (`failoverd-stop: absent|unknown N|gone|running|still-unknown N`), its exit status the request's.
    static func stopOutcome(_ r: HostResult, _ instance: Instance) -> PostmasterStop {
        var lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        let seen = lines.last.flatMap { $0.hasPrefix("failoverd-stop: ") ? $0.dropFirst(16) : nil }
        var request = r
        request.result.stdout = lines.dropLast(seen == nil ? 0 : 1).joined(separator: "\n")
        func seenBy(_ status: Substring) -> PostmasterState {
            state(exitCode: Int32(status) ?? 5, unreachable: false, output: request.outputTail, instance)
        }
        switch (r.unreachable, seen) {
        case (false, "absent"?): return .notRunning
        case (false, let before?) where before.hasPrefix("unknown "): return .unknown(seenBy(before.dropFirst(8)).unknownReason ?? "")
        case (false, "gone"?): return .stopped(request)
        case (false, "running"?): return .notStopped(request, seen: .running)
        case (false, let after?) where after.hasPrefix("still-unknown "): return .notStopped(request, seen: seenBy(after.dropFirst(14)))
        default: return .notStopped(request, seen: state(r, instance))
        }
    }

    // MARK: Scripts

    /// A shell function, `absent PATH`: true only when PATH is proven not to exist, that is when the first
    /// missing component of the absolute PATH lies in a directory the user can search. `test -e` alone is
    /// false for a path behind a directory the user cannot search (EACCES) as well: unknown is not absent.
    static let provenAbsent = #"""
        absent() {
          p=; rest=${1#/}
          while :; do
            c=${rest%%/*}
            { [ -d "${p:-/}" ] && [ -x "${p:-/}" ]; } || return 1
            if [ ! -e "$p/$c" ] && [ ! -L "$p/$c" ]; then return 0; fi
            p="$p/$c"
            case $rest in */*) rest=${rest#*/} ;; *) return 1 ;; esac
          done
        }

        """#

    /// A shell function, `pm PG_CTL DATA`: `pg_ctl status`'s 0 (running) or 3 (not running); its 4 (no data
    /// directory) only when ``provenAbsent`` proves the directory is not there, else 5 (unknown): pg_ctl also
    /// says 4 for a data directory it cannot reach (a parent the OS user cannot search) or that holds no cluster.
    static let postmasterStatus = #"""
        pm() {
          "$1" status -D "$2" >/dev/null 2>&1; pm_rc=$?
          [ "$pm_rc" -eq 4 ] || return "$pm_rc"
          absent "$2" && return 4
          return 5
        }

        """#

    /// ``stopPostmaster(of:request:environment:timeout:on:)``'s script: $1 pg_ctl, $2 the data directory,
    /// $3 the timeout in seconds, then the request's argv.
    static let stopAndWait = #"""
        pg="$1"; d="$2"; t="$3"; shift 3
        pm "$pg" "$d"; s=$?
        case $s in
          0) ;;
          3|4) echo "failoverd-stop: absent"; exit 0 ;;
          *) echo "failoverd-stop: unknown $s"; exit 0 ;;
        esac
        pid=$(head -n 1 -- "$d/postmaster.pid" 2>/dev/null)
        "$@"; rc=$?
        if [ "$rc" -eq 0 ]; then n=$(( t * 100 )); else n=100; fi
        while [ -f "$d/postmaster.pid" ] && { [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null; } && [ "$n" -gt 0 ]; do
          sleep 0.01 2>/dev/null || sleep 1
          n=$((n - 1))
        done
        pm "$pg" "$d"; s=$?
        case $s in
          0) echo "failoverd-stop: running" ;;
          3|4) echo "failoverd-stop: gone" ;;
          *) echo "failoverd-stop: still-unknown $s" ;;
        esac
        exit "$rc"
        """#

    /// ``read(_:on:)``'s script: $1 a token, then the paths. Each file is framed by a line `\nTOKEN +`
    /// (its text follows) or `\nTOKEN -` (proven absent); `\nTOKEN .` ends the output.
    static let readFiles = #"""
        tok=$1; shift
        for f; do
          if [ -e "$f" ]; then
            printf '\n%s +\n' "$tok"; cat -- "$f" || exit 5
          elif absent "$f"; then
            printf '\n%s -\n' "$tok"
          else
            printf 'cannot reach %s\n' "$f" >&2; exit 5
          fi
        done
        printf '\n%s .\n' "$tok"
        """#

    /// ``write(_:on:)``'s script: (path, text, octal mode) triples, each written to PATH.failoverd-new and
    /// renamed over PATH.
    static let writeFiles = #"""
        umask 077
        while [ "$#" -ge 3 ]; do
          n="$1.failoverd-new"
          { printf '%s' "$2" > "$n" && chmod "$3" "$n" && mv -f -- "$n" "$1"; } \
            || { rm -f -- "$n"; printf 'could not write %s\n' "$1" >&2; exit 5; }
          shift 3
        done
        """#

    /// The texts ``readFiles`` framed with `token`, nil for each file proven absent; nil when the output is
    /// not that framing.
    static func parseFiles(_ output: String, token: String) -> [String?]? {
        let bytes = Array(output.utf8)
        let marker = Array(("\n" + token + " ").utf8)
        var parts: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i + marker.count <= bytes.count {
            if bytes[i] == marker[0] && bytes[i..<(i + marker.count)].elementsEqual(marker) {
                parts.append(bytes[start..<i])
                i += marker.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(bytes[start...])
        guard parts.first?.isEmpty == true, parts.last.map({ Array($0) == Array(".\n".utf8) }) == true else { return nil }
        var texts: [String?] = []
        for part in parts.dropFirst().dropLast() {
            if Array(part) == Array("-\n".utf8) {
                texts.append(nil)
            } else if part.starts(with: Array("+\n".utf8)) {
                texts.append(String(decoding: part.dropFirst(2), as: UTF8.self))
            } else {
                return nil
            }
        }
        return texts
    }
}

extension PostmasterState {
    /// Why the postmaster's state is unknown; nil when it is known.
    var unknownReason: String? {
        if case .unknown(let reason) = self { return reason }
        return nil
    }
}
