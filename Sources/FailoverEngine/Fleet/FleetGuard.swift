import Foundation

/// Keeps two fleets of one state directory from driving one cluster at once: a fleet run (or resume) is
/// refused while another fleet that shares a site with it holds its fleet lock.
///
/// A run started with another state directory, or a plain `failoverd run` of a member's plan, is not seen:
/// the lock guards failoverd's state, not the cluster itself (docs/fleet.md, "Limits").
enum FleetGuard {
    /// Throws exit 4 naming the other fleet, its process and the shared site.
    static func checkOthers(_ fleet: Fleet, paths: FleetPaths) throws {
        let root = FleetPaths.root(paths.stateDirectory)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        var ours: [String: (member: String, what: String)] = [:]
        for m in fleet.members {
            for site in FleetValidator.siteKeys(of: m.plan) where ours[site.key] == nil { ours[site.key] = (m.name, site.what) }
        }
        for name in names.sorted() where name != fleet.name && Files.exists(root + "/" + name + "/fleet.sqlite") {
            let other = FleetPaths(stateDirectory: paths.stateDirectory, fleet: name)
            guard let store = try? FleetStore(paths: other, create: false), let holder = try? store.lockHolder(), holder.alive,
                let run = try? store.latestRun(), let theirs = try? run.fleet()
            else { continue }
            for m in theirs.members {
                for site in FleetValidator.siteKeys(of: m.plan) {
                    guard let mine = ours[site.key] else { continue }
                    throw FailoverError(
                        .lockHeld,
                        "member \(PlanValues.quoted(mine.member)) of fleet \(PlanValues.quoted(fleet.name)) shares a cluster with member \(PlanValues.quoted(m.name)) of fleet \(PlanValues.quoted(name)), which is running now (fleet run \(run.id), pid \(holder.pid) on \(holder.host)): \(mine.what) and \(site.what). Wait for it to end (failoverd fleet status \(name) --state \(paths.stateDirectory))."
                    )
                }
            }
        }
    }
}
