import Foundation

/// The keywords of a libpq connection: who to reach and how, with the password left to a passfile.
///
/// Passwords never appear here: libpq reads them from ``passfile`` (libpq's own format, mode 0600),
/// so a conninfo can be logged, written to primary_conninfo or passed to pg_rewind as it is.
public struct ConnInfo: Sendable, Equatable {
    /// The server's host name or address.
    public var host: String
    /// The server's port.
    public var port: Int
    /// The role to log in as.
    public var user: String
    /// The database; `replication` is not special here (use `replication: true` keywords for that).
    public var dbname: String?
    /// The libpq passfile that holds the password.
    public var passfile: String?
    /// The libpq sslmode, when the plan sets one.
    public var sslmode: String?
    /// Seconds libpq waits for the connection.
    public var connectTimeout: Int
    /// The application_name the server shows in pg_stat_activity and pg_stat_replication.
    public var applicationName: String

    /// Creates connection keywords.
    public init(
        host: String, port: Int, user: String, dbname: String? = "postgres", passfile: String? = nil,
        sslmode: String? = nil, connectTimeout: Int = 3, applicationName: String = "failoverd"
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.dbname = dbname
        self.passfile = passfile
        self.sslmode = sslmode
        self.connectTimeout = connectTimeout
        self.applicationName = applicationName
    }

    /// The keyword/value pairs, in a stable order, for PQconnectdbParams.
    public var keywords: [(String, String)] {
        var pairs: [(String, String)] = [("host", host), ("port", String(port)), ("user", user)]
        if let dbname { pairs.append(("dbname", dbname)) }
        if let passfile { pairs.append(("passfile", passfile)) }
        if let sslmode { pairs.append(("sslmode", sslmode)) }
        pairs.append(("connect_timeout", String(connectTimeout)))
        pairs.append(("application_name", applicationName))
        return pairs
    }

    /// The keywords as one conninfo string (`host=… port=…`), values quoted where libpq needs it.
    public var string: String {
        keywords.map { "\($0.0)=\(Self.quoted($0.1))" }.joined(separator: " ")
    }

    /// Where this points, for messages: `user@host:port/dbname`.
    public var endpoint: String { "\(user)@\(host):\(port)/\(dbname ?? "")" }

    /// A conninfo value: bare when it is plain, else in single quotes with `\` and `'` escaped.
    static func quoted(_ value: String) -> String {
        let plain = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_./:,@%+"))
        if !value.isEmpty, value.unicodeScalars.allSatisfy(plain.contains) { return value }
        return "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }
}

extension Plan {
    /// How failoverd connects to `instance`: the admin role, over TCP, password from the passfile. One
    /// definition for every driver (local, SSH, Patroni).
    public func adminConnInfo(_ instance: Instance) -> ConnInfo {
        ConnInfo(
            host: instance.host, port: instance.port, user: replication.effectiveAdminUser, dbname: "postgres",
            passfile: replication.passfile, sslmode: replication.sslmode)
    }

    /// primary_conninfo for `instance` streaming from `upstream`: the replication role, no password.
    public func replicationConnInfo(from upstream: Instance, for instance: Instance) -> ConnInfo {
        ConnInfo(
            host: upstream.host, port: upstream.port, user: replication.user, dbname: nil, passfile: replication.passfile,
            sslmode: replication.sslmode, applicationName: instance.name)
    }

    /// pg_rewind's --source-server: the rewind role on `source`.
    public func rewindConnInfo(_ source: Instance) -> ConnInfo {
        ConnInfo(
            host: source.host, port: source.port, user: replication.effectiveRewindUser, dbname: "postgres",
            passfile: replication.passfile, sslmode: replication.sslmode, applicationName: "failoverd-rewind")
    }
}
