/// Before a new run: what failoverd observes must not contradict the roles the plan declares. Managed
/// sites (Patroni) are seen through their own driver.
struct Preflight {
    let plan: Plan
    let driver: any InstanceDriver
    /// The site-level drivers of managed sites, by site name.
    var sites: [String: any SiteDriver] = [:]

    /// Throws a refusal naming the site, the declared role and what was observed.
    func check() async throws {
        for site in plan.sites {
            for instance in site.instances {
                let s: InstanceStatus
                do {
                    s = try await InstanceObserver(plan: plan, driver: driver, sites: sites).status(of: instance)
                } catch {
                    // A primary that cannot be read may be the reason for the plan (a failover); an instance
                    // declared unable to write must be seen to be so.
                    if site.role == .primary { continue }
                    throw FailoverError.refused(
                        "site \"\(site.name)\": the plan declares \(site.role.rawValue) but failoverd cannot read \(instance.name) (\(error)); it cannot prove that \(instance.name) does not accept writes. Restore failoverd's access to it, or stop it, then run again."
                    )
                }
                let observed = s.seen
                switch site.role {
                case .archiveStandby, .streamingStandby, .fenced, .none:
                    if !s.isProvenNotWritable {
                        throw FailoverError.refused(
                            "site \"\(site.name)\": the plan declares \(site.role.rawValue) but \(instance.name) is \(observed). Fix the plan's role, or fence that server first; an instance that does not answer must answer or be stopped before failoverd plans around it."
                        )
                    }
                    // A managed site's data directories are its driver's (Patroni refuses bootstrap-standby anyway).
                    if site.role == .none, sites[site.name] == nil, try await driver.hasData(instance) {
                        throw FailoverError.refused(
                            "site \"\(site.name)\": the plan declares none (to be bootstrapped) but \(instance.name) already has a data directory at \(instance.dataDirectory); declare its real role or use rebuild."
                        )
                    }
                case .primary:
                    if instance == site.leader, s.running, s.inRecovery {
                        throw FailoverError.refused(
                            "site \"\(site.name)\": the plan declares primary but its leader \(instance.name) is \(observed). Fix the plan's role."
                        )
                    }
                }
            }
        }
    }
}
