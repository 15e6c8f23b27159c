import Foundation

/// The divergence-capture primitives on this host: files are read as the instance's OS user (so no link it
/// planted reaches what it could not read itself) and streamed into the capture, which failoverd owns.
extension LocalPostgresDriver {
    /// The regular files below `directory` of the data directory, two levels deep (`find -L … -printf`).
    public func dataFiles(of instance: Instance, in directory: String) async throws -> [DataFile]? {
        guard try await hasData(instance) else { return nil }
        let path = InstancePaths(instance).dataDirectory + "/" + directory
        let r = try await runner.run("find", ["-L", path, "-mindepth", "1", "-maxdepth", "2", "-type", "f", "-printf", "%P %s\\n"])
        if !r.succeeded && !Files.exists(path) { return [] }
        try r.checked("Check that \(osUser.name) can read \(path).")
        return DataFileListing.parse(r.stdout)
    }

    /// Copies files of the data directory into `localDirectory` with `cat` run as the OS user.
    public func copyFiles(of instance: Instance, _ paths: [String], into localDirectory: String) async throws -> [CopiedFile] {
        let root = InstancePaths(instance).dataDirectory
        var copied: [CopiedFile] = []
        for path in paths {
            let file = try await CaptureFiles.write(path, in: localDirectory) { fd in
                let r = try await runner.run("cat", ["--", root + "/" + path], timeout: bulkTimeout, standardOutput: fd)
                if r.succeeded { return true }
                if r.stderr.contains("No such file") { return false }
                try r.checked("Check that \(osUser.name) can read \(root)/\(path).")
                return false
            }
            if let file { copied.append(file) }
        }
        return copied
    }

    /// `pgbackrest archive-get NAME` (with `reader`'s data directory as pg1-path, for its pg_control) into a
    /// private directory of the OS user's, then copied into `localDirectory`.
    public func fetchArchivedWAL(_ name: String, using reader: Instance, into localDirectory: String) async throws -> CopiedFile? {
        let scratch = NSTemporaryDirectory() + "/failoverd-archive-get-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectory(scratch, mode: 0o700, owner: osUser)
        defer { try? Files.removeTree(scratch, owner: osUser) }
        let r = try await runner.run(
            backrest.executable,
            backrest.arguments("archive-get", ["--pg1-path=" + InstancePaths(reader).dataDirectory, "--log-level-console=warn"])
                + [name, scratch + "/" + name],
            timeout: bulkTimeout)
        guard r.succeeded, Files.exists(scratch + "/" + name) else { return nil }
        return try await CaptureFiles.write("pg_wal/" + name, in: localDirectory) { fd in
            try await runner.run("cat", ["--", scratch + "/" + name], timeout: bulkTimeout, standardOutput: fd).checked()
            return true
        }
    }

    /// Names relations in the catalog of a running instance (over libpq).
    public func catalogNames(on instance: Instance, _ query: CatalogQuery) async throws -> CatalogAnswer {
        try await CatalogSQL.answer(query, connInfo: adminConnInfo(instance))
    }

    /// Builds, asks and removes an isolated copy next to the data directory (``IsolatedCopy``).
    public func inspectIsolatedCopy(of instance: Instance, _ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        let paths = InstancePaths(instance)
        try Files.makeDirectory(paths.stateDirectory, owner: osUser)
        let runner = self.runner
        let copy = IsolatedCopy(
            run: { script, arguments, timeout in try await runner.run("/bin/sh", ["-c", script, "failoverd"] + arguments, timeout: timeout)
            },
            binDirectory: binDirectory, dataDirectory: paths.dataDirectory, stateDirectory: paths.stateDirectory, port: instance.port,
            user: plan.replication.effectiveAdminUser, timeout: bulkTimeout)
        return try await copy.inspect(request)
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
