import Foundation

/// The divergence-capture primitives, over the host transport: files are listed and read on the instance's
/// host as its OS user (so no link it planted reaches what it could not read itself) and their bytes streamed
/// into the capture on this host, which failoverd owns.
extension PostgresInstanceDriver {
    /// The regular files below `directory` of the data directory, two levels deep (`find -L … -printf`); nil
    /// when the data directory holds no cluster.
    public func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        let d = paths(instance).dataDirectory
        let r = try await transport.script(
            #"[ -f "$1/PG_VERSION" ] || exit 3; [ -e "$1/$2" ] || exit 0; exec find -L "$1/$2" -mindepth 1 -maxdepth 2 -type f -printf '%P %s\n'"#,
            [d, directory], on: instance)
        if r.exitCode == 3 && !r.unreachable { return nil }
        try r.checked("Check that \(transport.postgresUser) can read \(d)/\(directory)\(on(instance)).")
        return DataFileListing.parse(r.stdout)
    }

    /// Copies files of the data directory into `localDirectory` (`cat` on the host, as the OS user).
    public func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        let root = self.paths(instance).dataDirectory
        var copied: [CopiedFile] = []
        for path in paths {
            let file = try await CaptureFiles.write(path, in: localDirectory) { fd in
                let r = try await transport.stream(
                    ["sh", "-c", #"[ -e "$1" ] || exit 3; exec cat -- "$1""#, "failoverd", root + "/" + path], on: instance, to: fd,
                    timeout: bulkTimeout)
                if r.exitCode == 3 && !r.unreachable { return false }
                try r.checked("Check that \(transport.postgresUser) can read \(root)/\(path)\(on(instance)).")
                return true
            }
            if let file { copied.append(file) }
        }
        return copied
    }

    /// `pgbackrest archive-get NAME` on `reader`'s host (its data directory as pg1-path, for its pg_control)
    /// into a private directory there, then copied into `localDirectory`.
    public func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        try await CaptureFiles.write("pg_wal/" + name, in: localDirectory) { fd in
            let r = try await transport.stream(
                [
                    "sh", "-c",
                    #"t=$(mktemp -d) || exit 4; trap 'rm -rf -- "$t"' EXIT; n="$1"; b="$2"; shift 2; "$b" "$@" "$n" "$t/$n" >/dev/null 2>&1 || exit 3; cat -- "$t/$n""#,
                    "failoverd", name, backrest.executable,
                ] + backrest.arguments("archive-get", ["--pg1-path=" + paths(reader).dataDirectory, "--log-level-console=warn"]),
                on: reader, to: fd, timeout: bulkTimeout)
            if r.exitCode == 3 && !r.unreachable { return false }
            try r.checked()
            return true
        }
    }

    /// Builds, asks and removes an isolated copy next to the data directory on its host (``IsolatedCopy``).
    public func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        let paths = paths(instance)
        try await transport.makeDirectory(paths.stateDirectory, mode: 0o700, on: instance)
        let transport = self.transport
        let copy = IsolatedCopy(
            run: { script, arguments, timeout in
                let r = try await transport.script(script, arguments, on: instance, timeout: timeout)
                if r.unreachable { try r.checked() }
                return r.result
            }, binDirectory: binDirectory, dataDirectory: paths.dataDirectory, stateDirectory: paths.stateDirectory, port: instance.port,
            user: plan.replication.effectiveAdminUser, timeout: bulkTimeout)
        do { return try await copy.inspect(request) } catch let e as FailoverError where !on(instance).isEmpty {
            throw FailoverError(e.code, e.message + " (on \(instance.host))")
        }
    }

    /// Names relations in the catalog of a running instance (over libpq).
    public func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer {
        try await CatalogSQL.answer(query, connInfo: adminConnInfo(instance))
    }

    /// failoverd's logical slots on a running instance (over libpq).
    public func lostSlots(on instance: Instance, _ action: LostSlotAction) async throws -> LostSlotState {
        try await LostSlots.run(action, connInfo: adminConnInfo(instance))
    }
}

/// `find -printf '%P %s\n'` output.
enum DataFileListing {
    static func parse(_ text: String) -> [DataFile] {
        text.split(separator: "\n").compactMap { line in
            guard let space = line.lastIndex(of: " "), let bytes = UInt64(line[line.index(after: space)...]) else { return nil }
            return DataFile(name: String(line[..<space]), bytes: bytes)
        }
    }
}
