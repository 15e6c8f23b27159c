import Foundation
import GRDB

/// What identifies the sites themselves, whatever plan names them: the PostgreSQL system identifier they
/// share. Read from the servers (SQL, else pg_control), else the repository's stanza, else what this
/// journal last coordinated; a plan whose sites disagree is refused.
enum ClusterIdentity {
    /// The plan's system identifier.
    ///
    /// - Throws: exit 3 when the sites disagree, or when nothing can tell.
    static func systemIdentifier(plan: Plan, driver: any InstanceDriver, sites: [String: any SiteDriver], journal: Journal) async throws
        -> String
    {
        let observer = InstanceObserver(plan: plan, driver: driver, sites: sites)
        var seen: [(instance: String, identifier: String)] = []
        for (site, instance) in plan.allInstances {
            if let s = try? await observer.status(of: instance), s.reachable, !s.systemIdentifier.isEmpty {
                seen.append((instance.name, s.systemIdentifier))
            } else if observer.managed(site) == nil, let c = try? await driver.controlData(of: instance), !c.systemIdentifier.isEmpty {
                seen.append((instance.name, c.systemIdentifier))
            }
        }
        let distinct = Set(seen.map(\.identifier))
        if distinct.count > 1 {
            let list = seen.map { "\($0.instance): \($0.identifier)" }.joined(separator: ", ")
            throw FailoverError.refused(
                "the plan's sites are not one replicated cluster (system identifiers \(list)); a coordinated run locks one cluster. Rebuild the odd instance from the repository or fix the plan; nothing was changed."
            )
        }
        if let only = distinct.first { return only }
        if let repository = try? await driver.repositorySystemIdentifier(), !repository.isEmpty { return repository }
        if let recorded = try recorded(in: journal) { return recorded }
        throw FailoverError.refused(
            "cannot tell which PostgreSQL cluster the plan's sites are (no instance answers, no pg_control is readable, the repository's stanza cannot be read, and this state directory never coordinated a run), so the run lock in etcd cannot be chosen. Restore access to one server or the repository; nothing was changed."
        )
    }

    /// The identifier this journal last coordinated, if any.
    static func recorded(in journal: Journal) throws -> String? {
        try journal.db.read { db in try String.fetchOne(db, sql: "SELECT value FROM coordination_mirror WHERE key = 'identity'") }
    }

    /// Remembers `identifier` in this journal, for a takeover when no server answers.
    static func remember(_ identifier: String, in journal: Journal) throws {
        try journal.db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO coordination_mirror (key, value) VALUES ('identity', ?)", arguments: [identifier])
        }
    }
}
