/// The shape of plan format v1 as data: the fields of each object, which are required and what each
/// holds, with an example for hints. ``PlanValidator`` walks a document against it; docs/plan.schema.json
/// says the same in JSON Schema, and a test keeps the two in step.
enum PlanShape {
    /// What a value must be.
    indirect enum Kind: Sendable {
        /// A plan, site, instance or stanza name (``PlanValues/nameProblem(_:)``).
        case name
        /// A PostgreSQL role name (``PlanValues/roleProblem(_:)``).
        case role
        /// An OS user name other than root (``PlanValues/osUserProblem(_:)``).
        case osUser
        /// An IP address or an RFC 1123 host name (``PlanValues/hostProblem(_:)``).
        case host
        /// An absolute, normal path of at most `maximumLength` bytes (``PlanValues/pathProblem(_:maximumLength:)``).
        case path(maximumLength: Int)
        /// `http://HOST:PORT` or `https://HOST:PORT` (``PlanValues/urlProblem(_:)``).
        case url
        /// `HOST:PORT` (``PlanValues/endpointProblem(_:)``).
        case endpoint
        /// A replication slot name (``PlanValues/slotProblem(_:)``).
        case slot
        /// One of a fixed set of strings, called `noun` in messages (`role`, `driver`…).
        case oneOf([String], noun: String)
        /// An integer literal in a range.
        case integer(ClosedRange<Int>)
        /// An integer literal from 0 to ``PlanValues/maximumByteCount``.
        case byteCount
        /// A number of seconds in ``PlanValues/timeoutRange``.
        case seconds
        /// `true` or `false`.
        case boolean
        /// The format version: the integer 1.
        case formatVersion
        /// A command-line argument: 1 to 1024 characters, no control character (``PlanValues/argumentProblem(_:)``).
        case argument
        /// A systemd unit name (``PlanValues/unitProblem(_:)``).
        case unit
        /// An object with known fields; `noun` names one in messages (`site "dr"`).
        case object(noun: String, fields: [Field])
        /// An array; `atLeastOne` makes an empty one an error.
        case array(of: Kind, atLeastOne: Bool)
        /// A transition, whose fields depend on its action (see ``Action/requiredFields``).
        case transition

        /// What the value must be, for messages: `an integer from 1 to 65535`.
        var expectation: String {
            switch self {
            case .name: "a name of 1 to \(PlanValues.maximumNameLength) \(PlanValues.nameCharacters)"
            case .role: "a role name of 1 to \(PlanValues.maximumNameLength) \(PlanValues.roleCharacters)"
            case .osUser: "an OS user name other than root, of \(PlanValues.osUserCharacters)"
            case .host: "an IP address or a host name (RFC 1123)"
            case .path(let maximum):
                "an absolute, normal path of at most \(maximum) bytes: / then segments of \(PlanValues.pathCharacters), no . or .. segment, no // and no trailing /"
            case .url: "http://HOST:PORT or https://HOST:PORT, with no path, user or query"
            case .endpoint: "HOST:PORT"
            case .slot: "a replication slot name of 1 to 63 lowercase letters, digits and _"
            case .oneOf(let values, _): "one of " + values.joined(separator: ", ")
            case .integer(let range): "an integer from \(range.lowerBound) to \(range.upperBound)"
            case .byteCount: "a whole number of bytes from 0 to \(PlanValues.maximumByteCount) (below 2^62)"
            case .seconds:
                "a number of seconds from \(Int(PlanValues.timeoutRange.lowerBound)) to \(Int(PlanValues.timeoutRange.upperBound)) (24 h)"
            case .formatVersion: "the integer 1"
            case .boolean: "true or false"
            case .argument: "a command-line argument of 1 to \(PlanValues.maximumArgumentLength) characters without control characters"
            case .unit: "a systemd unit name of letters, digits, @ . _ - : ending in .service"
            case .object: "an object"
            case .array: "an array"
            case .transition: "an object"
            }
        }
    }

    /// One field of an object.
    struct Field: Sendable {
        /// The key.
        var key: String
        /// What the value must be.
        var kind: Kind
        /// Whether the field must be present.
        var required: Bool
        /// An example member for hints, e.g. `"port": 6432`.
        var example: String

        init(_ key: String, _ kind: Kind, required: Bool = true, example: String) {
            self.key = key
            self.kind = kind
            self.required = required
            self.example = "\"\(key)\": \(example)"
        }
    }

    /// The top-level object.
    static var plan: Kind {
        .object(
            noun: "plan",
            fields: [
                Field("version", .formatVersion, example: "1"),
                Field("name", .name, example: "\"xkube-dr\""),
                Field("repository", .object(noun: "repository", fields: repository), example: "{ \"type\": \"posix\", … }"),
                Field(
                    "replication", .object(noun: "replication", fields: replication), example: "{ \"user\": \"replicator\", … }"),
                Field("policy", .object(noun: "policy", fields: policy), example: "{ \"maxLagBytes\": 16777216, … }"),
                Field(
                    "sites", .array(of: .object(noun: "site", fields: site), atLeastOne: true),
                    example: "[ { \"name\": \"prod\", … } ]"),
                Field(
                    "transitions", .array(of: .transition, atLeastOne: false),
                    example: "[ { \"action\": \"switchover\", \"to\": \"dr\" } ]"),
                Field("osUser", .osUser, required: false, example: "\"failoverd\""),
                Field(
                    "fencing", .object(noun: "fencing", fields: fencing), required: false,
                    example: "{ \"command\": [\"/usr/local/bin/fence-site\"] }"),
            ])
    }

    /// The pgBackRest repository types failoverd supports.
    static let repositoryTypes = ["posix", "s3", "gcs", "azure"]
    /// The site drivers.
    static let drivers = DriverKind.allCases.map(\.rawValue)
    /// libpq's sslmode values.
    static let sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

    static let repository = [
        Field("type", .oneOf(repositoryTypes, noun: "repository type"), example: "\"posix\""),
        Field("path", .path(maximumLength: PlanValues.maximumPathLength), example: "\"/var/lib/failoverd/repo\""),
        Field("stanza", .name, example: "\"xkube\""),
        Field("config", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/pgbackrest.conf\""),
        Field(
            "s3", .object(noun: "s3 repository", fields: s3), required: false,
            example: "{ \"bucket\": \"pg-dr\", \"endpoint\": \"s3.eu-west-1.amazonaws.com\", \"region\": \"eu-west-1\" }"),
        Field("gcs", .object(noun: "gcs repository", fields: gcs), required: false, example: "{ \"bucket\": \"pg-dr\" }"),
        Field(
            "azure", .object(noun: "azure repository", fields: azure), required: false,
            example: "{ \"account\": \"pgdr\", \"container\": \"pgbackrest\" }"),
    ]

    static let s3 = [
        Field("bucket", .name, example: "\"pg-dr\""),
        Field("endpoint", .host, example: "\"s3.eu-west-1.amazonaws.com\""),
        Field("region", .name, example: "\"eu-west-1\""),
        Field("uriStyle", .oneOf(["host", "path"], noun: "uri style"), required: false, example: "\"path\""),
        Field("port", .integer(1...65535), required: false, example: "443"),
        Field(
            "caFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/ssl/certs/ca-certificates.crt\""
        ),
        Field("verifyTLS", .oneOf(["y", "n"], noun: "verifyTLS value"), required: false, example: "\"y\""),
    ]

    static let gcs = [
        Field("bucket", .name, example: "\"pg-dr\""),
        Field("endpoint", .host, required: false, example: "\"storage.googleapis.com\""),
    ]

    static let azure = [
        Field("account", .name, example: "\"pgdr\""),
        Field("container", .name, example: "\"pgbackrest\""),
    ]

    static let replication = [
        Field("user", .role, example: "\"replicator\""),
        Field("passfile", .path(maximumLength: PlanValues.maximumPathLength), example: "\"/etc/failoverd/pgpass\""),
        Field("rewindUser", .role, required: false, example: "\"rewinder\""),
        Field("adminUser", .role, required: false, example: "\"postgres\""),
        Field("sslmode", .oneOf(sslModes, noun: "sslmode"), required: false, example: "\"verify-full\""),
    ]

    static let policy = [
        Field("maxLagBytes", .byteCount, example: "16777216"),
        Field("stepTimeoutSeconds", .seconds, example: "120"),
        Field("archiveTimeoutSeconds", .seconds, example: "120"),
        Field("lostCaptureMaxBytes", .byteCount, required: false, example: "1073741824"),
        Field("captureLostRows", .boolean, required: false, example: "false"),
    ]

    static var site: [Field] {
        [
            Field("name", .name, example: "\"dr\""),
            Field("driver", .oneOf(drivers, noun: "driver"), example: "\"local\""),
            Field("role", .oneOf(Role.allCases.map(\.rawValue), noun: "role"), example: "\"archive-standby\""),
            Field(
                "instances", .array(of: .object(noun: "instance", fields: instance), atLeastOne: true),
                example:
                    "[ { \"name\": \"dr-0\", \"host\": \"127.0.0.1\", \"port\": 6433, \"dataDirectory\": \"/var/lib/failoverd/dr-0\" } ]"
            ),
            Field(
                "patroni", .object(noun: "patroni cluster", fields: patroniCluster), required: false,
                example: "{ \"scope\": \"dr\", \"etcd\": \"127.0.0.1:2379\" }"),
            Field(
                "ssh", .object(noun: "ssh settings", fields: ssh), required: false,
                example: "{ \"user\": \"dba\", \"knownHostsFile\": \"/etc/failoverd/known_hosts\" }"),
        ]
    }

    static let patroniCluster = [
        Field("scope", .name, example: "\"dr\""),
        Field("etcd", .endpoint, required: false, example: "\"127.0.0.1:2379\""),
        Field("slot", .slot, required: false, example: "\"failoverd_dr\""),
        Field(
            "netrcFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/patroni.netrc\""),
        Field("caFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/patroni-ca.pem\""),
        Field("certFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/client.pem\""),
        Field("keyFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/client.key\""),
        Field("namespace", .name, required: false, example: "\"service\""),
        Field("etcdCaFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/etcd-ca.pem\""),
        Field(
            "etcdCertFile", .path(maximumLength: PlanValues.maximumPathLength), required: false,
            example: "\"/etc/failoverd/etcd-client.pem\""),
        Field(
            "etcdKeyFile", .path(maximumLength: PlanValues.maximumPathLength), required: false,
            example: "\"/etc/failoverd/etcd-client.key\""),
        Field(
            "etcdNetrcFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/etcd.netrc\""),
    ]

    static let patroniMember = [
        Field("url", .url, example: "\"http://127.0.0.1:8008\"")
    ]

    /// A site's SSH settings (driver `ssh`).
    static let ssh = [
        Field("user", .osUser, example: "\"dba\""),
        Field("port", .integer(1...65535), required: false, example: "22"),
        Field(
            "identityFile", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/failoverd/id_ed25519\""),
        Field(
            "knownHostsFile", .path(maximumLength: PlanValues.maximumPathLength), required: false,
            example: "\"/etc/failoverd/known_hosts\""),
    ]

    /// How an instance is started and stopped (driver `ssh`).
    static let service = [
        Field("manager", .oneOf(ServiceSettings.managers, noun: "service manager"), example: "\"pg_ctl\""),
        Field("version", .integer(10...99), required: false, example: "15"),
        Field("cluster", .name, required: false, example: "\"main\""),
        Field("unit", .unit, required: false, example: "\"postgresql@15-main.service\""),
        Field(
            "configurationRoot", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/etc/postgresql\""),
        Field("scope", .oneOf(ServiceSettings.scopes, noun: "systemd scope"), required: false, example: "\"system\""),
        Field(
            "runtimeDirectory", .path(maximumLength: PlanValues.maximumPathLength), required: false, example: "\"/run/user/104\""),
        Field(
            "dropInDirectory", .path(maximumLength: PlanValues.maximumPathLength), required: false,
            example: "\"/etc/systemd/system/postgresql-15.service.d\""),
    ]

    /// The plan's fencing hook.
    static let fencing = [
        Field(
            "command", .array(of: .argument, atLeastOne: true),
            example: "[\"/usr/local/bin/fence-site\", \"--datacenter\", \"eu-1\"]")
    ]

    static let instance = [
        Field("name", .name, example: "\"dr-0\""),
        Field("host", .host, example: "\"127.0.0.1\""),
        Field("port", .integer(1...65535), example: "6433"),
        Field("dataDirectory", .path(maximumLength: PlanValues.maximumDataDirectoryLength), example: "\"/var/lib/failoverd/dr-0\""),
        Field(
            "patroni", .object(noun: "patroni member", fields: patroniMember), required: false,
            example: "{ \"url\": \"http://127.0.0.1:8008\" }"),
        Field("service", .object(noun: "service", fields: service), required: false, example: "{ \"manager\": \"pg_ctl\" }"),
    ]

    /// The fields of a transition other than `action`; which apply depends on the action.
    static let transitionFields = [
        Field("site", .name, example: "\"<the site to act on>\""),
        Field("upstream", .name, example: "\"<the site to stream from>\""),
        Field("to", .name, example: "\"<the site to promote>\""),
        Field("source", .name, example: "\"<the primary to rewind from>\""),
        Field("method", .oneOf(FailbackMethod.allCases.map(\.rawValue), noun: "method"), example: "\"rewind\""),
    ]

    /// The transition's action field.
    static let action = Field("action", .oneOf(Action.allCases.map(\.rawValue), noun: "action"), example: "\"switchover\"")
}
