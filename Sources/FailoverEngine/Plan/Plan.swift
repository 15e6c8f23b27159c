import Foundation

/// A plan (format v1): the sites it touches, the shared repository, the policy and the ordered transitions.
///
/// The v1 fields are a contract documented in docs/plan-format.md; decode a plan only after
/// ``PlanValidator`` accepted it, so that every problem is reported with its JSON path first.
public struct Plan: Codable, Sendable, Equatable {
    /// The format version; always 1.
    public var version: Int
    /// A name for the topology, used in reports and the journal.
    public var name: String
    /// The shared pgBackRest repository.
    public var repository: Repository
    /// How standbys connect to their upstream.
    public var replication: Replication
    /// Limits that gates and waits apply.
    public var policy: Policy
    /// The sites, each with its declared role and instances.
    public var sites: [Site]
    /// The ordered transitions to carry out.
    public var transitions: [Transition]
    /// The unprivileged OS user that runs PostgreSQL when failoverd runs as root (default `failoverd`).
    public var osUser: String?
    /// How to fence an old primary that failoverd cannot reach (a load balancer, a cloud API, a power switch).
    public var fencing: FencingHook? = nil
    /// Where the run lock, the journal and the audit chain of the plan's replicated cluster are kept beside
    /// the state directory, so that no two machines drive the same sites at once and a run can be finished
    /// from any of them (docs/coordination.md). Without it, the run lock guards one state directory only.
    public var coordination: Coordination? = nil

    /// The site named `name`, if the plan has it.
    public func site(named name: String) -> Site? { sites.first { $0.name == name } }

    /// The first site declared `primary`, if any.
    public var declaredPrimary: Site? { sites.first { $0.role == .primary } }

    /// Every instance of every site, with the site it belongs to.
    public var allInstances: [(site: Site, instance: Instance)] {
        sites.flatMap { site in site.instances.map { (site, $0) } }
    }
}

/// The shared pgBackRest repository.
public struct Repository: Codable, Sendable, Equatable {
    /// The repository type: `posix` (a shared file system such as NFS), `s3`, `gcs` or `azure`.
    public var type: String
    /// The repository path (repo1-path).
    public var path: String
    /// The pgBackRest stanza.
    public var stanza: String
    /// An optional pgBackRest configuration file, passed as --config on every call.
    public var config: String?
    /// For `s3`: the bucket and how to reach it (never the keys).
    public var s3: S3Settings?
    /// For `gcs`: the bucket and endpoint (never the key).
    public var gcs: GCSSettings?
    /// For `azure`: the account and container (never the key).
    public var azure: AzureSettings?

    /// A repository; the object-store settings default to none.
    public init(
        type: String, path: String, stanza: String, config: String?, s3: S3Settings? = nil, gcs: GCSSettings? = nil,
        azure: AzureSettings? = nil
    ) {
        self.type = type
        self.path = path
        self.stanza = stanza
        self.config = config
        self.s3 = s3
        self.gcs = gcs
        self.azure = azure
    }
}

/// The non-secret settings of an S3 (or S3-compatible) repository, as pgBackRest's repo1-s3-* options.
public struct S3Settings: Codable, Sendable, Equatable {
    /// repo1-s3-bucket.
    public var bucket: String
    /// repo1-s3-endpoint: a host name or address, without scheme or port.
    public var endpoint: String
    /// repo1-s3-region.
    public var region: String
    /// repo1-s3-uri-style: `host` (default) or `path`.
    public var uriStyle: String?
    /// repo1-storage-port (default 443).
    public var port: Int?
    /// repo1-storage-ca-file.
    public var caFile: String?
    /// repo1-storage-verify-tls: `y` (default) or `n`.
    public var verifyTLS: String?

    /// S3 settings.
    public init(
        bucket: String, endpoint: String, region: String, uriStyle: String? = nil, port: Int? = nil, caFile: String? = nil,
        verifyTLS: String? = nil
    ) {
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.uriStyle = uriStyle
        self.port = port
        self.caFile = caFile
        self.verifyTLS = verifyTLS
    }
}

/// The non-secret settings of a Google Cloud Storage repository (repo1-gcs-*).
public struct GCSSettings: Codable, Sendable, Equatable {
    /// repo1-gcs-bucket.
    public var bucket: String
    /// repo1-gcs-endpoint (default storage.googleapis.com).
    public var endpoint: String?
}

/// The non-secret settings of an Azure Blob Storage repository (repo1-azure-*).
public struct AzureSettings: Codable, Sendable, Equatable {
    /// repo1-azure-account.
    public var account: String
    /// repo1-azure-container.
    public var container: String
}

/// How standbys reach their upstream; secrets live in the passfile, never in the plan.
public struct Replication: Codable, Sendable, Equatable {
    /// The replication role standbys connect as.
    public var user: String
    /// A libpq passfile (mode 0600) holding the passwords.
    public var passfile: String
    /// The role pg_rewind connects as (default `rewinder`).
    public var rewindUser: String?
    /// The role failoverd itself connects as to probe, promote and switch WAL (default `postgres`).
    public var adminUser: String?
    /// An optional libpq sslmode for every connection (`disable`, `require`, `verify-full`…).
    public var sslmode: String?

    /// The pg_rewind role with its default.
    public var effectiveRewindUser: String { rewindUser ?? "rewinder" }
    /// The admin role with its default.
    public var effectiveAdminUser: String { adminUser ?? "postgres" }
}

/// Limits that gates and waits apply.
public struct Policy: Codable, Sendable, Equatable {
    /// The most a switchover target may lag behind the primary, in bytes.
    public var maxLagBytes: UInt64
    /// How long one step may wait for its condition.
    public var stepTimeoutSeconds: Double
    /// archive_timeout set on the primary, which bounds an archive standby's lag.
    public var archiveTimeoutSeconds: Double
    /// The most WAL a capture-divergence step copies from a former primary, in bytes (default 1 GiB).
    public var lostCaptureMaxBytes: UInt64? = nil
    /// Keep logical slots on the primary so that a former primary's lost row changes can be decoded
    /// (needs wal_level=logical on every instance).
    public var captureLostRows: Bool? = nil

    /// The default of ``lostCaptureMaxBytes``: 1 GiB.
    public static let defaultLostCaptureMaxBytes: UInt64 = 1 << 30
    /// ``lostCaptureMaxBytes`` with its default.
    public var effectiveLostCaptureMaxBytes: UInt64 { lostCaptureMaxBytes ?? Self.defaultLostCaptureMaxBytes }
}

/// A site: one or more instances that share a role; the first is its leader.
public struct Site: Codable, Sendable, Equatable {
    /// The site's name, unique in the plan.
    public var name: String
    /// The driver: `local` (PostgreSQL on this host), `patroni` (a Patroni cluster, through its REST API),
    /// `ssh` (on the instances' hosts, over OpenSSH) or `simulated`; what each means to a run is said in
    /// ``DriverRegistry``.
    public var driver: DriverKind
    /// The role the plan's author expects the site to have now.
    public var role: Role
    /// The instances; the first is the site leader, the others follow it.
    public var instances: [Instance]
    /// For `"driver": "patroni"`: the Patroni cluster the site is, and the files its REST API needs.
    public var patroni: PatroniCluster?
    /// How failoverd logs in to the instances' hosts (driver `ssh` only).
    public var ssh: SSHSettings? = nil

    /// The site leader.
    public var leader: Instance { instances[0] }
    /// The instances that cascade from the leader.
    public var followers: ArraySlice<Instance> { instances.dropFirst() }
}

/// One PostgreSQL server of a site.
public struct Instance: Codable, Sendable, Equatable, Hashable {
    /// The instance name, unique in the plan.
    public var name: String
    /// The address other instances and clients reach it on.
    public var host: String
    /// The port.
    public var port: Int
    /// The data directory.
    public var dataDirectory: String
    /// For an instance of a Patroni site: its member's REST API.
    public var patroni: PatroniMember?
    /// How the server is started and stopped on its host (driver `ssh`; default `pg_ctl`).
    public var service: ServiceSettings? = nil
}

/// A site run by Patroni: one Patroni cluster (its own scope). failoverd talks only to its members' REST
/// API (and to PostgreSQL over libpq); the DCS is named for `failoverd sandbox` alone, which starts it.
public struct PatroniCluster: Codable, Sendable, Equatable {
    /// Patroni's `scope`: the cluster's name in its DCS.
    public var scope: String
    /// The cluster's etcd (v3 JSON gateway), `host:port`: `failoverd sandbox` starts it there, and a fence
    /// of a cluster none of whose members answers writes `standby_cluster` there.
    public var etcd: String?
    /// The permanent physical replication slot this site streams through when it follows another site's
    /// leader (`primary_slot_name`); the other clusters must declare it in their `slots` (the sandbox does).
    public var slot: String?
    /// A netrc file with the REST API's user and password (curl --netrc-file); never inline in the plan.
    public var netrcFile: String?
    /// The CA certificate that signs the REST API's certificate (https).
    public var caFile: String?
    /// A client certificate for the REST API, with ``keyFile``.
    public var certFile: String?
    /// The client certificate's key.
    public var keyFile: String?
    /// Patroni's `namespace`, one name without slashes (Patroni's default `/service/` is `service`): the
    /// cluster's configuration is the etcd key `/<namespace>/<scope>/config`. Default `service`.
    public var namespace: String? = nil
    /// The CA certificate of etcd's client endpoint: with it failoverd speaks https to etcd.
    public var etcdCaFile: String? = nil
    /// A client certificate for etcd, with ``etcdKeyFile``.
    public var etcdCertFile: String? = nil
    /// The etcd client certificate's key.
    public var etcdKeyFile: String? = nil
    /// A netrc file with etcd's user and password (etcd authentication); never inline in the plan.
    public var etcdNetrcFile: String? = nil
}

/// One Patroni member: where its REST API answers.
public struct PatroniMember: Codable, Sendable, Equatable, Hashable {
    /// `http://host:port` or `https://host:port`.
    public var url: String
}

extension Plan {
    /// Decodes a plan that ``PlanValidator`` accepted.
    public static func decode(_ data: Data) throws -> Plan {
        try JSONDecoder().decode(Plan.self, from: data)
    }

    /// The plan as canonical JSON (sorted keys), as stored in the journal.
    public func canonicalJSON() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }
}

/// A plan's coordination store: today etcd (v3, through its JSON gateway).
public struct Coordination: Codable, Sendable, Equatable {
    /// The etcd cluster.
    public var etcd: EtcdCoordination

    /// Coordination through `etcd`.
    public init(etcd: EtcdCoordination) { self.etcd = etcd }

    /// What keeps two machines from running a plan on the same sites at once, in one sentence (`check`,
    /// `status`): plainly nothing, without coordination.
    public static func summary(_ coordination: Coordination?) -> String {
        guard let etcd = coordination?.etcd else {
            return
                "none: the run lock guards this state directory only; nothing stops a second machine (or another state directory) from running a plan on the same sites at the same time. Add \"coordination\" to the plan (docs/coordination.md)."
        }
        return
            "etcd \(etcd.endpoints.joined(separator: ", ")): one run lock per PostgreSQL cluster under \(etcd.effectivePrefix)/clusters/, lease \(etcd.effectiveLeaseSeconds) s; journal and audit chain kept there too."
    }
}

/// The etcd cluster that holds the run lock (a lease kept alive by the coordinator), the journal and the
/// audit chain of the plan's replicated cluster. Credentials never appear here: TLS files are named, and
/// checked like every file the plan names.
public struct EtcdCoordination: Codable, Sendable, Equatable {
    /// Client URLs, `http(s)://HOST:PORT`, of the members; tried in order.
    public var endpoints: [String]
    /// The key prefix (default `/failoverd`): keys live under `<prefix>/clusters/<system identifier>/`.
    public var prefix: String?
    /// The lease of the run lock in seconds, 2 to 60 (default 10): how long a dead coordinator holds it.
    public var leaseSeconds: Int?
    /// The CA certificate of the members' client endpoints (https).
    public var caFile: String?
    /// A client certificate, with ``keyFile``.
    public var certFile: String?
    /// The client certificate's key (mode 0600 or stricter).
    public var keyFile: String?

    /// The prefix with its default.
    public var effectivePrefix: String { prefix ?? "/failoverd" }
    /// The lease with its default.
    public var effectiveLeaseSeconds: Int { leaseSeconds ?? 10 }

    /// Settings for `endpoints`; the rest defaults.
    public init(
        endpoints: [String], prefix: String? = nil, leaseSeconds: Int? = nil, caFile: String? = nil, certFile: String? = nil,
        keyFile: String? = nil
    ) {
        self.endpoints = endpoints
        self.prefix = prefix
        self.leaseSeconds = leaseSeconds
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// The TLS files named, with their field names.
    public var files: [(field: String, path: String)] {
        [("caFile", caFile), ("certFile", certFile), ("keyFile", keyFile)].compactMap { f in f.1.map { (f.0, $0) } }
    }
}
