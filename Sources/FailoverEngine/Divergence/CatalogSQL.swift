import Foundation

/// The catalog queries the lost-transaction report asks, as SQL text with numbers only inlined, so that the
/// same text runs over libpq (a running instance) and through psql (an isolated copy on its host).
public enum CatalogSQL {
    /// Databases a connection can reach: `oid, datname`.
    public static let databases = "SELECT oid, datname FROM pg_database WHERE datallowconn ORDER BY oid"

    /// `{1,2,3}` for an oid[] literal.
    static func array(_ values: [UInt32]) -> String { "'{" + values.map(String.init).joined(separator: ",") + "}'::oid[]" }

    /// A relation's name, kind and TOAST owner, for the relation `c` of namespace `n`.
    static let describe = """
        quote_ident(n.nspname) || '.' || quote_ident(c.relname),
        CASE WHEN c.relkind = 't' THEN 'toast'
             WHEN c.relkind IN ('i', 'I') THEN 'index'
             WHEN c.relkind = 'S' THEN 'sequence'
             WHEN c.oid < 16384 OR n.nspname IN ('pg_catalog', 'information_schema') THEN 'catalog'
             WHEN c.relkind IN ('r', 'p', 'm') THEN 'table'
             ELSE 'other' END,
        (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) FROM pg_class t
           JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE t.reltoastrelid = c.oid AND c.relkind = 't')
        """

    /// Names of file nodes in the connected database (and shared ones): `tablespace, relfilenode, name, kind, toastOf`.
    public static func names(of nodes: [RelFileNode]) -> String {
        """
        SELECT f.spc, f.node, \(describe)
        FROM unnest(\(array(nodes.map(\.tablespace))), \(array(nodes.map(\.relation)))) AS f(spc, node)
        JOIN pg_class c ON c.oid = pg_filenode_relation(
            CASE WHEN f.spc = (SELECT dattablespace FROM pg_database WHERE datname = current_database()) THEN 0 ELSE f.spc END, f.node)
        JOIN pg_namespace n ON n.oid = c.relnamespace
        """
    }

    /// Names of relations by OID in the connected database: `oid, name, kind, toastOf`.
    public static func names(ofOIDs oids: [UInt32]) -> String {
        "SELECT c.oid, \(describe) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(\(array(oids)))"
    }

    /// The file nodes of the connected database's catalog (relations with OIDs below 16384 that have storage).
    public static let catalogFiles =
        "SELECT pg_relation_filenode(c.oid) FROM pg_class c WHERE c.oid < 16384 AND pg_relation_filenode(c.oid) IS NOT NULL"

    /// Key columns and replica identity of the connected database's user tables: `table, relreplident, columns`.
    public static let keys = """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relreplident,
               coalesce((SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey::int2[], a.attnum))
                  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                  WHERE i.indrelid = c.oid
                    AND ((c.relreplident = 'i' AND i.indisreplident) OR (c.relreplident IN ('d', 'f') AND i.indisprimary))), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
        """

    /// The changes failoverd's slot of the connected database holds, peeked (nothing is consumed): `lsn, xid, data`.
    public static func peekChanges(slot: String) -> String {
        "SELECT lsn, xid, data FROM pg_logical_slot_peek_changes('\(slot)', NULL, NULL, 'include-xids', '1', 'skip-empty-xacts', '1')"
    }

    /// failoverd's slots: `slot_name, database, plugin, restart_lsn, confirmed_flush_lsn`.
    public static let slots = """
        SELECT slot_name, database, plugin, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots
        WHERE slot_type = 'logical' AND slot_name LIKE 'failoverd\\_lost\\_%' ORDER BY slot_name
        """

    /// Adds one answer row of ``names(of:)`` to `answer`.
    static func addNode(_ row: [String?], database: UInt32, to answer: inout CatalogAnswer) {
        guard row.count >= 5, let spc = row[0].flatMap({ UInt32($0) }), let node = row[1].flatMap({ UInt32($0) }), let name = row[2],
            let kind = row[3]
        else { return }
        let db = spc == 1664 ? 0 : database
        answer.nodes[RelFileNode(tablespace: spc, database: db, relation: node)] = RelationName(
            qualifiedName: name, kind: kind, toastOf: row[4].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Adds one answer row of ``names(ofOIDs:)`` to `answer`.
    static func addOID(_ row: [String?], database: UInt32, to answer: inout CatalogAnswer) {
        guard row.count >= 4, let oid = row[0].flatMap({ UInt32($0) }), let name = row[1], let kind = row[2] else { return }
        answer.oids[database, default: [:]][oid] = RelationName(
            qualifiedName: name, kind: kind, toastOf: row[3].flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Asks every database a query concerns, through `query(database name, sql)`; `databases` are the
    /// catalog's (OID → name).
    static func answer(
        _ q: CatalogQuery, databases: [UInt32: String], query: (String, String) async throws -> [[String?]]
    ) async throws -> CatalogAnswer {
        var answer = CatalogAnswer()
        answer.databases = databases
        var wanted = Set(q.nodes.map(\.database)).union(q.oids.keys)
        if q.catalogFiles { wanted.formUnion(databases.keys) }
        let fallback = databases.values.contains("postgres") ? "postgres" : databases.values.sorted().first
        for db in wanted.sorted() {
            // Shared relations (database 0) are named from any database.
            guard let name = db == 0 ? fallback : databases[db] else { continue }
            let nodes = q.nodes.filter { $0.database == db }
            if !nodes.isEmpty {
                for row in try await query(name, names(of: nodes)) { addNode(row, database: db, to: &answer) }
            }
            if let oids = q.oids[db], !oids.isEmpty {
                for row in try await query(name, names(ofOIDs: oids)) { addOID(row, database: db, to: &answer) }
            }
            if q.catalogFiles && db != 0 {
                answer.catalogFiles[db] = try await query(name, Self.catalogFiles).compactMap { ($0.first ?? nil).flatMap { UInt32($0) } }
            }
        }
        return answer
    }

    /// Names relations on a running instance over libpq.
    public static func answer(_ q: CatalogQuery, connInfo: ConnInfo) async throws -> CatalogAnswer {
        let rows = try await PGConnection.with(connInfo) { try $0.query(Self.databases) }
        var databases: [UInt32: String] = [:]
        for r in rows { if let oid = r[0].flatMap({ UInt32($0) }), let name = r[1] { databases[oid] = name } }
        return try await answer(q, databases: databases) { db, sql in
            var info = connInfo
            info.dbname = db
            return try await PGConnection.with(info) { try $0.query(sql) }
        }
    }
}
