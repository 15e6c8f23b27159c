/// What a probe of an instance sees, where its driver kind says it is read (``DriverRegistry``): a
/// site-level site's own driver (Patroni: its REST API and libpq; ``SimulatedSite`` in a rehearsal) for its
/// members, the instance driver for every other site. The gates, the preflight, `check`, `status`, `adopt`
/// and the owed fence markers all look through it, so that a member of a managed site on another host is
/// never taken for stopped because this host has no postmaster for it.
struct InstanceObserver: Sendable {
    /// The plan.
    let plan: Plan
    /// The driver of the sites that are not managed.
    let driver: any InstanceDriver
    /// The site-level drivers of managed sites, by site name.
    let sites: [String: any SiteDriver]

    /// The site driver of `site`, when it is a site-level (managed) site.
    func managed(_ site: Site) -> (any SiteDriver)? { sites[site.name] }

    /// The status of `instance`, as its site's driver reports it. A member the managed site does not report
    /// cannot be seen; nor can one of a site-level site that has no site driver here.
    func status(of instance: Instance) async throws -> InstanceStatus {
        guard let site = plan.sites.first(where: { $0.instances.contains(instance) }), DriverRegistry.expansion(of: site) == .siteSteps
        else {
            return try await driver.status(of: instance)
        }
        guard let managed = sites[site.name] else {
            throw FailoverError.failed("site \(site.name) (driver \(site.driver)) has no site driver here to report \(instance.name)")
        }
        guard let member = try await managed.status(of: site).members.first(where: { $0.instance.name == instance.name }) else {
            throw FailoverError.failed("site \(site.name)'s driver does not report \(instance.name)")
        }
        return member.status
    }
}
