import Foundation

/// A file of a data directory, as a driver lists it: its path below the listed directory and its size.
public struct DataFile: Sendable, Equatable, Codable {
    /// The path below the listed directory (`000000010000000000000003`, `failoverd_lost_5/state`).
    public var name: String
    /// Its size in bytes.
    public var bytes: UInt64

    /// Creates a listing entry.
    public init(name: String, bytes: UInt64) {
        self.name = name
        self.bytes = bytes
    }
}

/// A file copied from a data directory (or the repository) into a directory of this host.
public struct CopiedFile: Sendable, Equatable, Codable {
    /// Its path in the capture (`pg_wal/000000010000000000000003`, `pg_xact/0000`).
    public var path: String
    /// Its size in bytes.
    public var bytes: UInt64
    /// The SHA-256 of its bytes, hex.
    public var sha256: String

    /// Creates the record of a copied file.
    public init(path: String, bytes: UInt64, sha256: String) {
        self.path = path
        self.bytes = bytes
        self.sha256 = sha256
    }
}

/// A relation as a catalog names it.
public struct RelationName: Sendable, Equatable, Codable {
    /// `schema.table`.
    public var qualifiedName: String
    /// `table`, `toast` (its table in ``toastOf``), `catalog`, `index`, `sequence`, or `other`.
    public var kind: String
    /// For a TOAST table, the table it belongs to.
    public var toastOf: String?

    /// Creates a name.
    public init(qualifiedName: String, kind: String, toastOf: String? = nil) {
        self.qualifiedName = qualifiedName
        self.kind = kind
        self.toastOf = toastOf
    }
}

/// What to name: relations by file node and (for TRUNCATE) by OID in a database.
public struct CatalogQuery: Sendable, Equatable, Codable {
    /// File nodes to name.
    public var nodes: [RelFileNode]
    /// Relation OIDs to name, by database OID.
    public var oids: [UInt32: [UInt32]]
    /// Also list each database's catalog file nodes (relations with OIDs below 16384), for an isolated copy.
    public var catalogFiles: Bool

    /// Creates a query.
    public init(nodes: [RelFileNode], oids: [UInt32: [UInt32]] = [:], catalogFiles: Bool = false) {
        self.nodes = nodes
        self.oids = oids
        self.catalogFiles = catalogFiles
    }
}

/// A catalog's answer to a ``CatalogQuery``.
public struct CatalogAnswer: Sendable, Equatable, Codable {
    /// Names of the file nodes the catalog knows.
    public var nodes: [RelFileNode: RelationName] = [:]
    /// Names of relations by database OID and relation OID.
    public var oids: [UInt32: [UInt32: RelationName]] = [:]
    /// Database names by OID.
    public var databases: [UInt32: String] = [:]
    /// Catalog file nodes (relfilenode) by database OID, when asked.
    public var catalogFiles: [UInt32: [UInt32]] = [:]

    /// An empty answer.
    public init() {}
}

/// What to do in an isolated copy of a stopped instance.
public struct IsolatedCopyRequest: Sendable, Equatable, Codable {
    /// Relation files (beyond the catalog's) to copy, by database OID.
    public var keepFiles: [UInt32: [UInt32]]
    /// The pg_wal files to copy into it (segments from its redo point and its slots' restart point, and
    /// history files).
    public var walFiles: [String]
    /// What to name in its catalog.
    public var names: CatalogQuery
    /// Decode the changes held by failoverd's logical slots (`failoverd_lost_<database OID>`).
    public var decode: Bool

    /// Creates a request.
    public init(keepFiles: [UInt32: [UInt32]], walFiles: [String], names: CatalogQuery, decode: Bool) {
        self.keepFiles = keepFiles
        self.walFiles = walFiles
        self.names = names
        self.decode = decode
    }
}

/// One change a logical slot decoded (test_decoding's text).
public struct DecodedChange: Sendable, Equatable, Codable {
    /// The database it happened in.
    public var database: String
    /// Where the change is in WAL.
    public var lsn: LSN
    /// The top-level transaction id.
    public var xid: UInt32
    /// test_decoding's line (`table public.t: INSERT: id[integer]:1 …`).
    public var data: String
}

/// What an isolated copy answered.
public struct IsolatedCopyAnswer: Sendable, Equatable, Codable {
    /// Names from the old primary's own catalog.
    public var names: CatalogAnswer = CatalogAnswer()
    /// Changes its logical slots decoded.
    public var changes: [DecodedChange] = []
    /// Key columns by table (`schema.table` → columns of its replica identity).
    public var keys: [String: [String]] = [:]
    /// Replica identity by table (`d` default, `f` full, `n` nothing, `i` index).
    public var replicaIdentity: [String: String] = [:]
    /// Slots that were there, by database name.
    public var slots: [String] = []

    /// An empty answer.
    public init() {}
}

/// What to do with failoverd's logical slots on a primary (``InstanceDriver/lostSlots(on:_:)``).
public enum LostSlotAction: Sendable, Equatable {
    /// Read wal_level, the slots, the standbys' flush positions and the archiver.
    case status
    /// Drop any failoverd slot and create one per database with `plugin` at the current position.
    case recreate(plugin: String)
    /// Create the slots that are missing (one per database) with `plugin`; keep the others where they are.
    case ensure(plugin: String)
    /// Advance every failoverd slot to `lsn` (slots already past it are left alone).
    case advance(to: LSN)
    /// Drop failoverd's slots (on an instance that is no longer the primary).
    case drop
}

/// failoverd's logical slots on an instance, and what bounds how far they may advance.
public struct LostSlotState: Sendable, Equatable, Codable {
    /// One slot.
    public struct Slot: Sendable, Equatable, Codable {
        /// The slot's name (`failoverd_lost_<database OID>`).
        public var name: String
        /// The database it decodes.
        public var database: String
        /// Its output plugin.
        public var plugin: String
        /// WAL it still needs from here.
        public var restartLSN: LSN?
        /// Changes before this were confirmed (decoding starts after it).
        public var confirmedFlushLSN: LSN?
    }

    /// The server's wal_level.
    public var walLevel: String
    /// It is in recovery.
    public var inRecovery: Bool
    /// failoverd's slots.
    public var slots: [Slot]
    /// pg_stat_replication.flush_lsn of each streaming standby.
    public var standbyFlushLSNs: [LSN]
    /// pg_stat_archiver.last_archived_wal.
    public var lastArchivedWAL: String?
    /// The current WAL position (a primary's).
    public var currentLSN: LSN?

    /// The slot name for a database OID.
    public static func slotName(database oid: UInt32) -> String { "failoverd_lost_\(oid)" }
    /// The prefix of failoverd's slot names.
    public static let slotPrefix = "failoverd_lost_"
}

/// A relation's files as WAL names them: tablespace, database and relfilenode (`rel 1663/5/16384`).
public struct RelFileNode: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    /// The tablespace's OID (1663 pg_default, 1664 pg_global).
    public var tablespace: UInt32
    /// The database's OID (0 for shared relations).
    public var database: UInt32
    /// The relfilenode.
    public var relation: UInt32

    /// Creates a file node.
    public init(tablespace: UInt32, database: UInt32, relation: UInt32) {
        self.tablespace = tablespace
        self.database = database
        self.relation = relation
    }

    /// `1663/5/16384`.
    public var description: String { "\(tablespace)/\(database)/\(relation)" }

    /// Parses `base/5/16398`, `global/1262` or `pg_tblspc/16400/PG_15_…/5/16401` (Storage records).
    init?(path: Substring) {
        let parts = path.split(separator: "/")
        if parts.count == 3, parts[0] == "base", let db = UInt32(parts[1]), let rel = UInt32(parts[2]) {
            self.init(tablespace: 1663, database: db, relation: rel)
        } else if parts.count == 2, parts[0] == "global", let rel = UInt32(parts[1]) {
            self.init(tablespace: 1664, database: 0, relation: rel)
        } else if parts.count == 5, parts[0] == "pg_tblspc", let spc = UInt32(parts[1]), let db = UInt32(parts[3]),
            let rel = UInt32(parts[4])
        {
            self.init(tablespace: spc, database: db, relation: rel)
        } else {
            return nil
        }
    }

    /// Below FirstNormalObjectId (16384): a file initdb made (system catalogs and their indexes).
    public var isInitdbFile: Bool { relation < 16384 }

    public static func < (a: RelFileNode, b: RelFileNode) -> Bool {
        (a.tablespace, a.database, a.relation) < (b.tablespace, b.database, b.relation)
    }
}
