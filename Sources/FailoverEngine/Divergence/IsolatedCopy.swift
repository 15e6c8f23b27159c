import Foundation

/// An isolated, read-only copy of a stopped former primary, started on its own host to answer what only the
/// old catalog knows (names of relations created after the fork) and to decode the changes failoverd's
/// logical slots held (`policy.captureLostRows`).
///
/// The copy holds the catalog, the transaction status, the slots and the WAL from the instance's redo point
/// and its slots' restart point, but not the relation files of user tables (logical decoding and catalog
/// queries never read them; crash recovery recreates the pages WAL touches). It runs as the instance's OS
/// user in `<dataDirectory>.failoverd/lost-copy`, on a unix socket in a 0700 directory (listen_addresses
/// empty, trust for that socket only), with archive_mode off, no WAL senders, no logical replication
/// workers, no preloaded libraries, default_transaction_read_only on and autovacuum off (its socket in a
/// private directory of /tmp, since a socket path holds at most 107 bytes), and it is stopped
/// (immediate) and removed before the capture ends. Queries go through psql on the host, so the same code
/// serves this host and SSH hosts: each driver supplies only how to run a script there.
public struct IsolatedCopy: Sendable {
    /// Runs a fixed script with positional arguments on the instance's host as its OS user.
    public typealias Run = @Sendable (_ script: String, _ arguments: [String], _ timeout: Double) async throws -> CommandResult

    let run: Run
    let binDirectory: String
    let dataDirectory: String
    let copyDirectory: String
    let port: Int
    let user: String
    let timeout: Double

    /// A copy of `dataDirectory` in `stateDirectory/lost-copy`, queried as `user` over a socket numbered `port`.
    public init(
        run: @escaping Run, binDirectory: String, dataDirectory: String, stateDirectory: String, port: Int, user: String, timeout: Double
    ) {
        self.run = run
        self.binDirectory = binDirectory
        self.dataDirectory = dataDirectory
        self.copyDirectory = stateDirectory + "/lost-copy"
        self.port = port
        self.user = user
        self.timeout = timeout
    }

    /// Builds and starts the copy, asks `request`, and always stops and removes it.
    public func inspect(_ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        do {
            let answer = try await inspectStarted(request)
            try await stop()
            return answer
        } catch {
            try? await stop()
            throw error
        }
    }

    func inspectStarted(_ request: IsolatedCopyRequest) async throws -> IsolatedCopyAnswer {
        let keep = request.keepFiles.flatMap { db, nodes in nodes.map { "\(db):\($0)" } }.joined(separator: "\n")
        let started = try await run(
            Self.startScript,
            [
                binDirectory, dataDirectory, copyDirectory, String(port), keep, request.walFiles.joined(separator: "\n"),
                String(Int(timeout)),
                request.decode ? "logical" : "",
            ], timeout + 60)
        guard started.succeeded else {
            throw FailoverError.failed(
                "the isolated copy of \(dataDirectory) in \(copyDirectory) did not start (exit \(started.exitCode)): \(started.outputTail)")
        }
        var answer = IsolatedCopyAnswer()
        var databases: [UInt32: String] = [:]
        for r in try await query("template1", CatalogSQL.databases) {
            if let oid = r[0].flatMap({ UInt32($0) }), let name = r[1] { databases[oid] = name }
        }
        answer.names = try await CatalogSQL.answer(request.names, databases: databases) { try await query($0, $1) }
        guard request.decode else { return answer }
        let slots = try await query("template1", CatalogSQL.slots)
        var changedDatabases = Set<String>()
        for slot in slots {
            guard let name = slot[0], let database = slot[1], slot[2] == LostSlots.plugin else { continue }
            answer.slots.append(database)
            for r in try await query(database, CatalogSQL.peekChanges(slot: name)) {
                guard let lsn = r[0].flatMap(LSN.init), let xid = r[1].flatMap({ UInt32($0) }), let data = r[2] else { continue }
                answer.changes.append(DecodedChange(database: database, lsn: lsn, xid: xid, data: data))
                changedDatabases.insert(database)
            }
        }
        for database in changedDatabases.sorted() {
            for r in try await query(database, CatalogSQL.keys) {
                guard let table = r[0] else { continue }
                answer.replicaIdentity[table] = r[1] ?? "d"
                answer.keys[table] = (r[2] ?? "").split(separator: ",").map(String.init)
            }
        }
        return answer
    }

    /// Rows of `sql` in `database` of the running copy.
    func query(_ database: String, _ sql: String) async throws -> [[String?]] {
        let r = try await run(Self.queryScript, [binDirectory, copyDirectory, String(port), user, database, sql], timeout)
        guard r.succeeded else {
            throw FailoverError.failed("a query on the isolated copy in \(copyDirectory) failed (exit \(r.exitCode)): \(r.outputTail)")
        }
        return Self.rows(r.stdout)
    }

    /// Stops the copy (immediate) and removes it.
    func stop() async throws {
        let r = try await run(Self.stopScript, [binDirectory, copyDirectory], 90)
        guard r.succeeded else {
            throw FailoverError.failed("could not stop and remove the isolated copy in \(copyDirectory): \(r.outputTail)")
        }
    }

    /// psql's unaligned output with ASCII unit (fields) and record separators.
    static func rows(_ text: String) -> [[String?]] {
        var out = text
        while out.hasSuffix("\n") { out.removeLast() }
        guard !out.isEmpty else { return [] }
        return out.split(separator: "\u{1e}", omittingEmptySubsequences: false).map { record in
            record.split(separator: "\u{1f}", omittingEmptySubsequences: false).map { $0.isEmpty ? nil : String($0) }
        }
    }

    /// $1 bin directory, $2 data directory, $3 copy directory, $4 port, $5 user relation files to keep
    /// (`DB:RELFILENODE` lines), $6 pg_wal files to copy (lines), $7 start timeout, $8 `logical` to keep slots usable.
    static let startScript = #"""
        b="$1"; d="$2"; c="$3"; port="$4"; keep="$5"; wal="$6"; t="$7"; level="$8"
        [ -f "$d/PG_VERSION" ] || { echo "no cluster in $d" >&2; exit 10; }
        if [ -f "$c/data/postmaster.pid" ]; then "$b/pg_ctl" -D "$c/data" stop -m immediate -w -t 60 >/dev/null 2>&1; fi
        if [ -f "$c/sockdir" ]; then rm -rf -- "$(cat -- "$c/sockdir")"; fi
        rm -rf -- "$c" || exit 11
        umask 077
        mkdir -p -- "$c/data/pg_wal/archive_status" || exit 11
        # The socket's directory is short (a unix socket path holds at most 107 bytes) and private (0700).
        sock=$(mktemp -d /tmp/failoverd-lost-XXXXXX) || exit 11
        printf '%s' "$sock" > "$c/sockdir" || exit 11
        cd "$d" || exit 10
        top='PG_VERSION global base pg_tblspc pg_xact pg_multixact pg_subtrans pg_twophase pg_commit_ts pg_logical pg_replslot pg_snapshots pg_notify pg_serial pg_stat pg_stat_tmp postgresql.conf postgresql.auto.conf failoverd.recovery.conf'
        for e in $top; do [ -e "$e" ] || continue; find -L "./$e" -type d -print; done | while IFS= read -r dir; do mkdir -p -- "$c/data/$dir" || exit 12; done
        for e in $top; do [ -e "$e" ] || continue; find -L "./$e" -type f ! -name postmaster.pid -print; done |
        awk -v keep="$keep" 'BEGIN { n = split(keep, k, "\n"); for (i = 1; i <= n; i++) want[k[i]] = 1 }
        {
          m = split($0, part, "/")
          if ((part[2] == "base" && m == 4) || (part[2] == "pg_tblspc" && m == 6)) {
            db = part[m - 1]; f = part[m]; sub(/[._].*$/, "", f)
            if (f ~ /^[0-9]+$/ && f + 0 >= 16384 && !((db ":" f) in want)) next
          }
          print
        }' > "$c/files" || exit 12
        tar -cf - -T "$c/files" | tar -C "$c/data" -xf - || exit 13
        for w in $wal; do if [ -f "pg_wal/$w" ]; then cp -- "pg_wal/$w" "$c/data/pg_wal/$w" || exit 13; fi; done
        [ -f "$c/data/postgresql.conf" ] || : > "$c/data/postgresql.conf"
        printf 'local all all trust\n' > "$c/hba.conf" && : > "$c/ident.conf" || exit 12
        o="-c port=$port -c listen_addresses= -c unix_socket_directories=$sock -c hba_file=$c/hba.conf -c ident_file=$c/ident.conf"
        o="$o -c archive_mode=off -c max_wal_senders=0 -c max_logical_replication_workers=0 -c shared_preload_libraries="
        o="$o -c default_transaction_read_only=on -c autovacuum=off -c ssl=off -c fsync=off -c synchronous_standby_names="
        o="$o -c cluster_name=failoverd-lost-copy -c logging_collector=off -c log_destination=stderr"
        [ "$level" = logical ] && o="$o -c wal_level=logical"
        "$b/pg_ctl" -D "$c/data" -l "$c/log" -w -t "$t" -s -o "$o" start || { tail -n 20 "$c/log" >&2; exit 14; }
        """#

    /// $1 bin directory, $2 copy directory, $3 port, $4 user, $5 database, $6 SQL.
    static let queryScript = #"""
        exec "$1/psql" -X -q -A -t -F "$(printf '\037')" -R "$(printf '\036')" -h "$(cat -- "$2/sockdir")" -p "$3" -U "$4" -d "$5" -v ON_ERROR_STOP=1 -c "$6"
        """#

    /// $1 bin directory, $2 copy directory.
    static let stopScript = #"""
        if [ -f "$2/data/postmaster.pid" ]; then "$1/pg_ctl" -D "$2/data" stop -m immediate -w -t 60 >/dev/null 2>&1; fi
        if [ -f "$2/sockdir" ]; then rm -rf -- "$(cat -- "$2/sockdir")"; fi
        rm -rf -- "$2"
        """#
}
