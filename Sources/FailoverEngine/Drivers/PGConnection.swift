import CLibPQ
import Foundation

/// An error from libpq or the server, with the server's own message, SQLSTATE, detail and hint.
public struct PGError: Error, Sendable, CustomStringConvertible {
    /// The five-character SQLSTATE, when the server sent one (nil for connection failures).
    public var sqlState: String?
    /// The server's (or libpq's) message.
    public var message: String
    /// Where: `user@host:port/dbname`.
    public var endpoint: String
    /// What failoverd was doing: `connect`, or a short name of the query (never its parameters).
    public var operation: String

    /// Creates an error.
    public init(sqlState: String?, message: String, endpoint: String, operation: String) {
        self.sqlState = sqlState
        self.message = message
        self.endpoint = endpoint
        self.operation = operation
    }

    /// `PostgreSQL user@host:port/db: <operation> failed: <message> (SQLSTATE …)`.
    public var description: String {
        "PostgreSQL \(endpoint): \(operation) failed: \(message)\(sqlState.map { " (SQLSTATE \($0))" } ?? "")"
    }

    /// True when the failure is about reaching the server rather than about the query.
    public var isConnectionFailure: Bool { operation == "connect" || sqlState?.hasPrefix("08") == true || sqlState == "57P03" }
}

/// A small libpq wrapper: one connection, used from one task at a time, closed on every path.
///
/// Calls block, so the async entry point ``with(_:_:)`` runs them through ``Blocking``, off Swift's
/// cooperative pool; ``connect(_:)`` and ``query(_:_:name:)`` are for code already on such a thread. Passwords come from the passfile named in ``ConnInfo``; this type never sees one,
/// except in ``encryptPassword(_:role:)`` which hashes it client-side so the server never logs it.
public final class PGConnection: @unchecked Sendable {
    private var conn: OpaquePointer?
    /// Where this connection points, for messages.
    public let info: ConnInfo

    private init(conn: OpaquePointer, info: ConnInfo) {
        self.conn = conn
        self.info = info
    }

    deinit { close() }

    /// Opens a connection; blocks up to `info.connectTimeout` seconds.
    public static func connect(_ info: ConnInfo) throws -> PGConnection {
        let pairs = try Passfile.resolvingPassword(info)
        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        let keyPointers: [UnsafePointer<CChar>?] = keys.map { UnsafePointer($0) } + [nil]
        let valuePointers: [UnsafePointer<CChar>?] = values.map { UnsafePointer($0) } + [nil]
        guard let conn = PQconnectdbParams(keyPointers, valuePointers, 0) else {
            throw PGError(sqlState: nil, message: "libpq could not allocate a connection", endpoint: info.endpoint, operation: "connect")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(conn))
            PQfinish(conn)
            throw PGError(sqlState: nil, message: message, endpoint: info.endpoint, operation: "connect")
        }
        // Server notices and the unsolicited FATAL a server sends when it shuts down would go to stderr;
        // failoverd reports what matters through its own errors, so they are dropped here.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
        return PGConnection(conn: conn, info: info)
    }

    /// Opens a connection, runs `body` with it off the cooperative pool, and closes it on every path.
    public static func with<T: Sendable>(_ info: ConnInfo, _ body: @escaping @Sendable (PGConnection) throws -> T) async throws -> T {
        try await Blocking.run {
            let connection = try connect(info)
            defer { connection.close() }
            return try body(connection)
        }
    }

    /// Runs one statement (text parameters `$1…`, nil for NULL) and returns its rows as optional strings.
    ///
    /// - Parameter name: a short name for error messages; the SQL text and parameters stay out of them.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = [], name: String? = nil) throws -> [[String?]] {
        guard let conn else {
            throw PGError(sqlState: nil, message: "the connection is closed", endpoint: info.endpoint, operation: name ?? "query")
        }
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(conn, sql)
        } else {
            let copies = parameters.map { $0.map { strdup($0) } ?? nil }
            defer { copies.forEach { free($0) } }
            let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
            result = PQexecParams(conn, sql, Int32(pointers.count), nil, pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        let operation = name ?? Self.summary(of: sql)
        guard let result else {
            throw PGError(sqlState: nil, message: Self.trimmed(PQerrorMessage(conn)), endpoint: info.endpoint, operation: operation)
        }
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            break
        default:
            throw Self.error(from: result, conn: conn, endpoint: info.endpoint, operation: operation)
        }
        let rows = PQntuples(result)
        let columns = PQnfields(result)
        return (0..<rows).map { row in
            (0..<columns).map { column in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
        }
    }

    /// The first column of the first row, or nil when there is no row or it is NULL.
    public func scalar(_ sql: String, _ parameters: [String?] = [], name: String? = nil) throws -> String? {
        try query(sql, parameters, name: name).first?.first ?? nil
    }

    /// A SCRAM-SHA-256 verifier for `password`, computed by libpq on this side, for CREATE/ALTER ROLE … PASSWORD.
    public func encryptPassword(_ password: String, role: String) throws -> String {
        guard let conn, let hashed = PQencryptPasswordConn(conn, password, role, "scram-sha-256") else {
            throw PGError(
                sqlState: nil, message: conn.map { Self.trimmed(PQerrorMessage($0)) } ?? "the connection is closed",
                endpoint: info.endpoint, operation: "encrypt password for \(role)")
        }
        defer { PQfreemem(hashed) }
        return String(cString: hashed)
    }

    /// Closes the connection; safe to call more than once.
    public func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    /// `"x"` → `"x"` as an SQL identifier (double quotes doubled).
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// `x` → `'x'` as an SQL literal (single quotes doubled); for values that cannot be parameters (utility statements).
    public static func quoteLiteral(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }

    private static func error(from result: OpaquePointer, conn: OpaquePointer, endpoint: String, operation: String) -> PGError {
        func field(_ code: Character) -> String? {
            guard let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: value)
        }
        var message = field("M") ?? trimmed(PQerrorMessage(conn))
        if let detail = field("D") { message += "; detail: \(detail)" }
        if let hint = field("H") { message += "; hint: \(hint)" }
        return PGError(sqlState: field("C"), message: message, endpoint: endpoint, operation: operation)
    }

    private static func trimmed(_ text: UnsafePointer<CChar>?) -> String {
        guard let text else { return "unknown libpq error" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " ")
    }

    /// The first words of a statement, for messages (`SELECT pg_switch_wal…`), cut before any literal.
    private static func summary(of sql: String) -> String {
        let head = sql.split(separator: "'", maxSplits: 1).first.map(String.init) ?? sql
        let words = head.split(whereSeparator: \.isWhitespace).prefix(4).joined(separator: " ")
        return words.count > 60 ? String(words.prefix(60)) + "…" : words
    }
}

extension PGConnection {
    /// Commits a transaction that is assigned an xid (synchronous_commit local) on `info`'s server and
    /// returns pg_current_wal_lsn(): the proof that it accepts writes. One definition for every driver.
    static func writeProbe(_ info: ConnInfo, instance: String) async throws -> LSN {
        let text = try await with(info) { connection -> String? in
            try connection.query("BEGIN")
            try connection.query("SET LOCAL synchronous_commit = local")
            try connection.query("SELECT pg_current_xact_id()", name: "write probe (assign an xid)")
            try connection.query("COMMIT")
            return try connection.scalar("SELECT pg_current_wal_lsn()")
        }
        guard let lsn = text.flatMap(LSN.init) else {
            throw FailoverError.failed("write probe on \(instance) returned no WAL position")
        }
        return lsn
    }
}
