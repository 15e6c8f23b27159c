import Foundation

/// The divergence-capture primitives on a remote host: the same listing, copies and isolated copy as on
/// this host, run there as the OS user; file bytes come back over one-shot ssh commands.
extension SSHPostgresDriver {
    /// The regular files below `directory` of the data directory on the host, two levels deep.
    public func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        let d = RemotePaths(instance).dataDirectory
        let r = try await shell(instance).script(
            #"[ -f "$1/PG_VERSION" ] || exit 3; [ -e "$1/$2" ] || exit 0; exec find -L "$1/$2" -mindepth 1 -maxdepth 2 -type f -printf '%P %s\n'"#,
            [d, directory])
        if r.exitCode == 3 && !r.unreachable { return nil }
        try r.checked("Check that \(osUser) can read \(d)/\(directory) on \(instance.host).")
        return DataFileListing.parse(r.stdout)
    }

    /// Copies files of the data directory on the host into `localDirectory` (`cat` over ssh, as the OS user).
    public func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        let root = RemotePaths(instance).dataDirectory
        let shell = try shell(instance)
        var copied: [CopiedFile] = []
        for path in paths {
            let file = try await CaptureFiles.write(path, in: localDirectory) { fd in
                let r = try await shell.stream(
                    ["sh", "-c", #"[ -e "$1" ] || exit 3; exec cat -- "$1""#, "failoverd", root + "/" + path], to: fd,
                    timeout: bulkTimeout)
                if r.exitCode == 3 && !r.unreachable { return false }
                try r.checked("Check that \(osUser) can read \(root)/\(path) on \(instance.host).")
                return true
            }
            if let file { copied.append(file) }
        }
        return copied
    }

    /// `pgbackrest archive-get NAME` on `reader`'s host (the repository is shared; its data directory is
    /// pg1-path, for its pg_control), into a private directory there, then copied into `localDirectory`.
    public func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        let shell = try shell(reader)
        return try await CaptureFiles.write("pg_wal/" + name, in: localDirectory) { fd in
            let r = try await shell.stream(
                [
                    "sh", "-c",
                    #"t=$(mktemp -d) || exit 4; trap 'rm -rf -- "$t"' EXIT; n="$1"; b="$2"; shift 2; "$b" "$@" "$n" "$t/$n" >/dev/null 2>&1 || exit 3; cat -- "$t/$n""#,
                    "failoverd", name, backrest.executable,
                ] + backrest.arguments("archive-get", ["--pg1-path=" + RemotePaths(reader).dataDirectory, "--log-level-console=warn"]),
                to: fd,
                timeout: bulkTimeout)
            if r.exitCode == 3 && !r.unreachable { return false }
            try r.checked()
            return true
        }
    }

    /// Names relations in the catalog of a running instance (over libpq).
    public func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer {
        try await CatalogSQL.answer(query, connInfo: adminConnInfo(instance))
    }

    /// Builds, asks and removes an isolated copy next to the data directory on the host (``IsolatedCopy``).
    public func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        let paths = RemotePaths(instance)
        let shell = try shell(instance)
        let host = instance.host
        let copy = IsolatedCopy(
            run: { script, arguments, timeout in
                let r = try await shell.script(script, arguments, timeout: timeout)
                if r.unreachable { try r.checked() }
                return r.result
            }, binDirectory: binDirectory, dataDirectory: paths.dataDirectory, stateDirectory: paths.stateDirectory, port: instance.port,
            user: plan.replication.effectiveAdminUser, timeout: bulkTimeout)
        do { return try await copy.inspect(request) } catch let e as FailoverError {
            throw FailoverError(e.code, e.message + " (on \(host))")
        }
    }

    /// failoverd's logical slots on a running instance (over libpq).
    public func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState {
        try await LostSlots.run(action, connInfo: adminConnInfo(instance))
    }
}
