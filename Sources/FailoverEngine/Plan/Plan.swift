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

/// The v1 actions.
public enum Action: String, Codable, Sendable, CaseIterable {
    /// Creates a site that has no data yet (`none`) as an archive standby, restored from the repository.
    case bootstrapStandby = "bootstrap-standby"
    /// Makes an archive standby stream from its upstream: archive-standby → streaming-standby.
    case enableStreaming = "enable-streaming"
    /// Stops streaming, leaving the repository as the only WAL source: streaming-standby → archive-standby.
    case disableStreaming = "disable-streaming"
    /// Stops a primary accepting writes: primary → fenced.
    case fence
    /// Planned handover, no committed write lost: the primary → streaming-standby, `to` → primary.
    case switchover
    /// Unplanned promotion: the old primary → fenced, `to` → primary.
    case failover
    /// Repairs a fenced former primary by pg_rewind from `source`: fenced → streaming-standby.
    case rewind
    /// Restores a standby or fenced site by a delta restore from the repository: → archive-standby.
    case rebuild
    /// Repairs the old primary `to` by `method`, lets it catch up, then switches over to it.
    case failback
}

/// How a failback repairs the old primary.
public enum FailbackMethod: String, Codable, Sendable, CaseIterable {
    /// pg_rewind from the current primary.
    case rewind
    /// A delta restore from the repository.
    case rebuild
}

/// One transition of a plan; which fields apply depends on the action.
public struct Transition: Codable, Sendable, Equatable {
    /// What to do.
    public var action: Action
    /// The site acted on (bootstrap-standby, enable/disable-streaming, fence, rewind, rebuild).
    public var site: String?
    /// The site to stream from (enable-streaming).
    public var upstream: String?
    /// The site that becomes primary (switchover, failover, failback).
    public var to: String?
    /// The primary a rewound site is rewound from and then follows (rewind).
    public var source: String?
    /// How failback repairs the old primary.
    public var method: FailbackMethod?

    /// Creates a transition.
    public init(
        action: Action, site: String? = nil, upstream: String? = nil, to: String? = nil, source: String? = nil,
        method: FailbackMethod? = nil
    ) {
        self.action = action
        self.site = site
        self.upstream = upstream
        self.to = to
        self.source = source
        self.method = method
    }

    /// The site this transition is about: `site` or `to`.
    public var subject: String { site ?? to ?? "" }

    /// A short human description, e.g. `switchover to dr`.
    public var summary: String {
        switch action {
        case .bootstrapStandby: "bootstrap-standby \(subject)"
        case .enableStreaming: "enable-streaming \(subject) from \(upstream ?? "?")"
        case .disableStreaming: "disable-streaming \(subject)"
        case .fence: "fence \(subject)"
        case .switchover: "switchover to \(subject)"
        case .failover: "failover to \(subject)"
        case .rewind: "rewind \(subject) from \(source ?? "?")"
        case .rebuild: "rebuild \(subject)"
        case .failback: "failback to \(subject) by \(method?.rawValue ?? "?")"
        }
    }
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
