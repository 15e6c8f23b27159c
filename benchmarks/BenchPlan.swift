@_spi(Benchmarks) import FailoverEngine
import Foundation

/// The benchmarks' own plans of one instance per site, written as a plan file says them (the plan's JSON
/// form, decoded as `failoverd` decodes a validated plan), so that they need no initializer the engine
/// keeps to itself.
enum BenchPlan {
    /// One site of one instance.
    struct SiteSpec {
        var name: String
        var role: Role
        var driver: DriverKind
        var host: String
        var port: Int
        /// The instance's data directory.
        var dataDirectory: String
        /// `user`, `identityFile`, `knownHostsFile` of an ssh site.
        var ssh: [String: String]? = nil
    }

    /// A plan `name` with a posix repository at `repository` (`stanza`), replication as `replicator` through
    /// `passfile`, lag within 16 MiB, steps within `stepTimeoutSeconds`, archiving within 2 s, and no transitions.
    static func make(
        name: String, repository: String, stanza: String, passfile: String, stepTimeoutSeconds: Int, sites: [SiteSpec]
    ) throws -> Plan {
        let json: [String: Any] = [
            "version": 1, "name": name,
            "repository": ["type": "posix", "path": repository, "stanza": stanza],
            "replication": ["user": "replicator", "passfile": passfile],
            "policy": ["maxLagBytes": 16 << 20, "stepTimeoutSeconds": stepTimeoutSeconds, "archiveTimeoutSeconds": 2],
            "sites": sites.map { s -> [String: Any] in
                var site: [String: Any] = [
                    "name": s.name, "driver": s.driver.rawValue, "role": s.role.rawValue,
                    "instances": [["name": s.name + "-0", "host": s.host, "port": s.port, "dataDirectory": s.dataDirectory]],
                ]
                if let ssh = s.ssh { site["ssh"] = ssh }
                return site
            },
            "transitions": [Any](),
        ]
        return try Plan.decode(try JSONSerialization.data(withJSONObject: json))
    }

    /// `plan` declared with `primary` as its primary and `target` streaming from it, switching over to `target`.
    static func switching(_ plan: Plan, from primary: String, to target: String) -> Plan {
        var p = plan
        for i in p.sites.indices {
            p.sites[i].role = p.sites[i].name == primary ? .primary : p.sites[i].name == target ? .streamingStandby : p.sites[i].role
        }
        p.transitions = [Transition(action: .switchover, to: target)]
        return p
    }
}
