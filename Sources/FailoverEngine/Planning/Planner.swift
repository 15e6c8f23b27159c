/// Expands a plan's transitions into ordered steps: the one expansion every caller uses (`plan`, `check`,
/// `drill`, `run`, `run --simulate`, `resume` of a run it started, `--crash-at`), so that a rehearsal runs the
/// numbered steps a real run runs. How a site's transitions become steps is its driver kind's
/// (``DriverRegistry/expansion(of:)``), never the caller's. Pure: no I/O, so `failoverd plan` is a dry run.
public struct Planner: Sendable {
    /// The plan to expand.
    public let plan: Plan
    /// How each site's transitions become steps, by site name, from its driver kind.
    let expansion: [String: StepExpansion]

    /// Creates a planner for `plan`.
    public init(plan: Plan) {
        self.plan = plan
        self.expansion = Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, DriverRegistry.expansion(of: $0)) })
    }

    /// The steps of every transition, numbered from 1, or the state machine's refusal.
    ///
    /// Roles start from the plan's declared roles and change transition by transition.
    public func steps() -> Result<[Step], RoleMachine.Refusal> {
        var roles = Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, $0.role) })
        // Which site each streaming standby follows; the plan declares streaming sites as following the primary.
        var upstreams: [String: String] = [:]
        if let primary = plan.declaredPrimary {
            for site in plan.sites where site.role == .streamingStandby { upstreams[site.name] = primary.name }
        }
        var all: [Step] = []
        for (index, transition) in plan.transitions.enumerated() {
            let position = index + 1
            let next: [String: Role]
            switch RoleMachine.apply(transition, position: position, to: roles) {
            case .success(let r): next = r
            case .failure(let refusal): return .failure(refusal)
            }
            if let refusal = siteLevelRefusal(transition, position: position, roles: roles) { return .failure(refusal) }
            var builder = StepBuilder(plan: plan, transition: transition, position: position, expansion: expansion)
            builder.expand(roles: roles, upstreams: &upstreams)
            builder.keepLostSlots(before: roles, after: next)
            let changed = next.filter { roles[$0.key] != $0.value }
            builder.add(
                .recordRoles(changed), site: transition.subject,
                "record roles: " + changed.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.rawValue)" }.joined(separator: ", "))
            all += builder.steps
            roles = next
        }
        for i in all.indices { all[i].number = i + 1 }
        return .success(all)
    }

    /// What a managed site (site-step expansion) cannot do through its driver: be bootstrapped (its manager
    /// creates it as a standby cluster), or be rebuilt when no primary is there to follow.
    func siteLevelRefusal(_ transition: Transition, position: Int, roles: [String: Role]) -> RoleMachine.Refusal? {
        let subject = transition.subject
        guard expansion[subject] == .siteSteps else { return nil }
        let reason: String
        switch transition.action {
        case .bootstrapStandby:
            reason =
                "its manager creates it: bootstrap it as a standby cluster (Patroni: bootstrap.dcs.standby_cluster), then adopt its role (failoverd adopt)"
        case .rebuild where !roles.values.contains(.primary):
            reason = "a managed site is rebuilt from the repository while following the primary, and the plan has no primary at this point"
        default:
            return nil
        }
        return RoleMachine.Refusal(
            site: subject,
            message:
                "transition \(position) (\(transition.action.rawValue) \(subject)): site \"\(subject)\" is managed by a site-level driver; \(reason)."
        )
    }

    /// The roles every site has after the whole plan, or the refusal.
    public func finalRoles() -> Result<[String: Role], RoleMachine.Refusal> {
        RoleMachine.applyAll(plan.transitions, to: Dictionary(uniqueKeysWithValues: plan.sites.map { ($0.name, $0.role) }))
    }
}

/// Builds the steps of one transition.
struct StepBuilder {
    let plan: Plan
    let transition: Transition
    let position: Int
    let expansion: [String: StepExpansion]
    var steps: [Step] = []

    init(plan: Plan, transition: Transition, position: Int, expansion: [String: StepExpansion]) {
        self.plan = plan
        self.transition = transition
        self.position = position
        self.expansion = expansion
    }

    mutating func add(_ operation: StepOperation, site: String, unlessFollowing: Instance? = nil, _ summary: String) {
        steps.append(
            Step(
                transition: position, action: transition.action, site: site, operation, unlessFollowing: unlessFollowing?.name,
                summary: summary))
    }

    func site(_ name: String) -> Site { plan.site(named: name)! }

    /// True when the site's driver acts on the whole site (Patroni): its steps are site steps.
    func managed(_ name: String) -> Bool { expansion[name] == .siteSteps }

    /// Expands the transition, given the roles before it; updates which site streams from which.
    mutating func expand(roles: [String: Role], upstreams: inout [String: String]) {
        let subject = site(transition.subject)
        let primaryName = roles.first { $0.value == .primary }?.key
        switch transition.action {
        case .bootstrapStandby:
            for i in subject.instances {
                add(.restore(instance: i.name, delta: false), site: subject.name, "restore \(i.name) from the repository as a standby")
                configureAndStart(subject, i, upstream: nil)
            }
        case .enableStreaming:
            let up = site(transition.upstream!)
            upstreams[subject.name] = up.name
            if managed(subject.name) {
                add(
                    .followSite(site: subject.name, upstream: up.name), site: subject.name,
                    "make site \(subject.name) stream from \(up.leader.name) through its driver")
            } else {
                follow(subject, leaderUpstream: up.leader, start: false)
            }
        case .disableStreaming where managed(subject.name):
            upstreams[subject.name] = nil
            add(
                .followSite(site: subject.name, upstream: nil), site: subject.name,
                "make site \(subject.name) replay from the repository only, through its driver")
        case .disableStreaming:
            upstreams[subject.name] = nil
            for i in subject.instances {
                add(
                    .configureRecovery(instance: i.name, upstream: nil), site: subject.name,
                    "configure \(i.name) as an archive standby (restore_command only)")
                add(
                    .awaitArchiveRecovery(instance: i.name), site: subject.name,
                    "wait until \(i.name) replays from the repository with no WAL receiver")
            }
        case .fence where managed(subject.name):
            add(
                .fenceSite(site: subject.name), site: subject.name,
                "fence site \(subject.name) through its driver: no member accepts writes")
        case .fence:
            for i in subject.instances {
                add(.fence(instance: i.name), site: subject.name, "fence \(i.name): record its last LSN and stop it")
            }
        case .switchover:
            switchover(from: site(primaryName!), to: subject, roles: roles, upstreams: &upstreams)
        case .failover:
            let old = primaryName.map(site)
            add(
                .gateFailover(target: subject.leader.name), site: subject.name,
                "check that \(subject.leader.name) is the most advanced standby (before fencing)")
            if let old {
                if managed(old.name) {
                    add(.fenceSite(site: old.name), site: old.name, "fence site \(old.name) through its driver: no member accepts writes")
                } else {
                    for i in old.instances {
                        add(.fence(instance: i.name), site: old.name, "fence \(i.name): record its last LSN and stop it")
                    }
                }
                // Positions are final only once the old primary can no longer write.
                add(
                    .gateFailover(target: subject.leader.name), site: subject.name,
                    "check again, with \(old.name) fenced, that \(subject.leader.name) holds the most WAL of every candidate")
            }
            upstreams[subject.name] = nil
            if let old { upstreams[old.name] = nil }
            if managed(subject.name) {
                add(
                    .promoteSite(site: subject.name), site: subject.name,
                    "promote site \(subject.name) after proving no other instance accepts writes")
                for f in subject.followers {
                    add(
                        .awaitStreaming(instance: f.name, upstream: subject.leader.name), site: subject.name,
                        "wait until \(f.name) streams from \(subject.leader.name)")
                }
                repointStandbys(from: old?.name, to: subject, roles: roles, upstreams: &upstreams)
                return
            }
            add(
                .promote(target: subject.leader.name), site: subject.name,
                "promote \(subject.leader.name) after proving no other instance accepts writes")
            add(
                .switchWAL(instance: subject.leader.name), site: subject.name,
                "switch WAL on \(subject.leader.name) and wait until it is archived")
            for f in subject.followers {
                add(
                    .configureRecovery(instance: f.name, upstream: subject.leader.name), site: subject.name,
                    "point \(f.name) at its leader \(subject.leader.name)")
                add(
                    .awaitStreaming(instance: f.name, upstream: subject.leader.name), site: subject.name,
                    "wait until \(f.name) streams from \(subject.leader.name)")
            }
            repointStandbys(from: old?.name, to: subject, roles: roles, upstreams: &upstreams)
        case .rewind:
            let source = site(transition.source!)
            let formerPrimary = roles[subject.name] == .fenced
            if managed(subject.name) {
                captureDivergence(subject, source: source.leader, if: formerPrimary)
                add(
                    .rejoinSite(site: subject.name, source: source.name, method: .rewind), site: subject.name,
                    "rewind site \(subject.name) from \(source.leader.name) through its driver and follow it")
            } else {
                rewind(subject, from: source.leader, capture: formerPrimary)
            }
            upstreams[subject.name] = source.name
        case .rebuild where managed(subject.name):
            let p = site(primaryName!)
            upstreams[subject.name] = nil
            captureDivergence(subject, source: p.leader, if: roles[subject.name] == .fenced)
            add(
                .rejoinSite(site: subject.name, source: p.name, method: .rebuild), site: subject.name,
                "rebuild site \(subject.name) from the repository through its driver, following \(p.leader.name)")
            add(
                .followSite(site: subject.name, upstream: nil), site: subject.name,
                "make site \(subject.name) replay from the repository only, through its driver")
        case .rebuild:
            if let p = primaryName.map(site) {
                add(.switchWAL(instance: p.leader.name), site: p.name, "switch WAL on \(p.leader.name) and wait until it is archived")
            }
            upstreams[subject.name] = nil
            for i in subject.instances {
                add(.stop(instance: i.name), site: subject.name, "stop \(i.name) before the delta restore")
                if i == subject.leader {
                    captureDivergence(subject, source: primaryName.map(site)?.leader, if: roles[subject.name] == .fenced)
                }
                add(.restore(instance: i.name, delta: true), site: subject.name, "delta-restore \(i.name) from the repository")
                configureAndStart(subject, i, upstream: nil)
            }
        case .failback:
            let current = site(primaryName!)
            let formerPrimary = roles[subject.name] == .fenced
            if managed(subject.name) {
                let method: RejoinMethod = transition.method == .rebuild ? .rebuild : .rewind
                captureDivergence(subject, source: current.leader, if: formerPrimary)
                add(
                    .rejoinSite(site: subject.name, source: current.name, method: method), site: subject.name,
                    "\(method.rawValue) site \(subject.name) from \(current.leader.name) through its driver and follow it")
            } else if transition.method == .rebuild {
                add(
                    .switchWAL(instance: current.leader.name), site: current.name,
                    "switch WAL on \(current.leader.name) and wait until it is archived")
                for i in subject.instances {
                    let upstream = i == subject.leader ? current.leader : subject.leader
                    add(.stop(instance: i.name), site: subject.name, unlessFollowing: upstream, "stop \(i.name) before the delta restore")
                    if i == subject.leader {
                        captureDivergence(subject, source: current.leader, unlessFollowing: upstream, if: formerPrimary)
                    }
                    add(
                        .restore(instance: i.name, delta: true), site: subject.name, unlessFollowing: upstream,
                        "delta-restore \(i.name) from the repository")
                    configureAndStart(subject, i, upstream: upstream)
                }
            } else {
                rewind(subject, from: current.leader, capture: formerPrimary)
            }
            upstreams[subject.name] = current.name
            add(
                .awaitCatchup(instance: subject.leader.name, upstream: current.leader.name), site: subject.name,
                "wait until \(subject.leader.name) has caught up with \(current.leader.name)")
            switchover(from: current, to: subject, roles: roles, upstreams: &upstreams)
        }
    }

    /// Before a former primary's data directory is rewound, rebuilt or restored: capture what it wrote past the
    /// fork (its leader was the primary), so that `failoverd lost` can list it afterwards.
    mutating func captureDivergence(_ s: Site, source: Instance?, unlessFollowing: Instance? = nil, if formerPrimary: Bool) {
        guard formerPrimary else { return }
        add(
            .captureDivergence(instance: s.leader.name, source: source?.name), site: s.name, unlessFollowing: unlessFollowing,
            "capture what \(s.leader.name) wrote past the fork (WAL, transaction status, names) before it is repaired")
    }

    /// With policy.captureLostRows, failoverd's logical slots follow the primary: recreated where this transition
    /// promoted one, and dropped from a former primary it repaired.
    mutating func keepLostSlots(before: [String: Role], after: [String: Role]) {
        guard plan.policy.captureLostRows == true, let primary = after.first(where: { $0.value == .primary })?.key else { return }
        let moved = before.first { $0.value == .primary }?.key != primary
        guard moved || [.rewind, .rebuild, .failback].contains(transition.action) else { return }
        let leader = site(primary).leader
        add(
            .lostSlot(primary: leader.name), site: primary,
            "keep failoverd's logical slots on \(leader.name) (policy.captureLostRows) and drop them elsewhere")
    }

    /// Standby settings, start, and the wait that proves the mode.
    mutating func configureAndStart(_ s: Site, _ i: Instance, upstream: Instance?) {
        if let upstream {
            add(
                .configureRecovery(instance: i.name, upstream: upstream.name), site: s.name,
                "configure \(i.name) to stream from \(upstream.name)")
            add(.start(instance: i.name), site: s.name, "start \(i.name) as a standby")
            add(
                .awaitStreaming(instance: i.name, upstream: upstream.name), site: s.name,
                "wait until \(i.name) streams from \(upstream.name)")
        } else {
            add(
                .configureRecovery(instance: i.name, upstream: nil), site: s.name,
                "configure \(i.name) as an archive standby (restore_command only)")
            add(.start(instance: i.name), site: s.name, "start \(i.name) as a standby")
            add(.awaitArchiveRecovery(instance: i.name), site: s.name, "wait until \(i.name) replays WAL from the repository")
        }
    }

    /// The site leader follows `leaderUpstream`; the other instances cascade from the leader.
    mutating func follow(_ s: Site, leaderUpstream: Instance, start: Bool) {
        for i in s.instances {
            let upstream = i == s.leader ? leaderUpstream : s.leader
            add(
                .configureRecovery(instance: i.name, upstream: upstream.name), site: s.name,
                "configure \(i.name) to stream from \(upstream.name)")
            if start { add(.start(instance: i.name), site: s.name, "start \(i.name) as a standby") }
            add(
                .awaitStreaming(instance: i.name, upstream: upstream.name), site: s.name,
                "wait until \(i.name) streams from \(upstream.name)")
        }
    }

    mutating func rewind(_ s: Site, from source: Instance, capture: Bool) {
        for i in s.instances {
            let upstream = i == s.leader ? source : s.leader
            add(.stop(instance: i.name), site: s.name, unlessFollowing: upstream, "stop \(i.name) cleanly before pg_rewind")
            if i == s.leader { captureDivergence(s, source: source, unlessFollowing: upstream, if: capture) }
            add(
                .rewind(instance: i.name, source: source.name), site: s.name, unlessFollowing: upstream,
                "pg_rewind \(i.name) from \(source.name)")
            add(
                .configureRecovery(instance: i.name, upstream: upstream.name), site: s.name,
                "configure \(i.name) to stream from \(upstream.name)")
            add(.start(instance: i.name), site: s.name, "start \(i.name) as a standby")
            add(
                .awaitStreaming(instance: i.name, upstream: upstream.name), site: s.name,
                "wait until \(i.name) streams from \(upstream.name) on its timeline")
        }
    }

    /// The planned handover: gate, checkpoint, clean stop, demotion token, replay, promote, re-point.
    mutating func switchover(from old: Site, to new: Site, roles: [String: Role], upstreams: inout [String: String]) {
        if managed(old.name) || managed(new.name) {
            siteSwitchover(from: old, to: new, roles: roles, upstreams: &upstreams)
            return
        }
        let o = old.leader
        let n = new.leader
        add(
            .gateSwitchover(target: n.name, primary: o.name), site: new.name,
            "check that \(n.name) streams from \(o.name) within policy, same system and timeline")
        add(.checkpoint(instance: o.name), site: old.name, "CHECKPOINT on \(o.name) so its shutdown checkpoint is short")
        add(.stop(instance: o.name), site: old.name, "stop \(o.name) cleanly (fast)")
        add(.readShutdownCheckpoint(oldPrimary: o.name), site: old.name, "read \(o.name)'s shutdown checkpoint (the demotion token)")
        add(
            .awaitReplay(target: n.name, oldPrimary: o.name), site: new.name,
            "wait until \(n.name) has replayed \(o.name)'s shutdown checkpoint")
        // Before the promotion: from here on even a bare `pg_ctl start` brings the old primary up as a standby.
        add(
            .configureRecovery(instance: o.name, upstream: n.name), site: old.name,
            "configure \(o.name) to stream from \(n.name), before the promotion")
        add(.promote(target: n.name), site: new.name, "promote \(n.name) after proving no other instance accepts writes")
        add(.switchWAL(instance: n.name), site: new.name, "switch WAL on \(n.name) and wait until it is archived")
        add(.start(instance: o.name), site: old.name, "start \(o.name) as a standby of \(n.name)")
        add(
            .awaitStreaming(instance: o.name, upstream: n.name), site: old.name,
            "wait until \(o.name) streams from \(n.name) on the new timeline")
        followersAfterSwitchover(from: old, to: new, roles: roles, upstreams: &upstreams)
    }

    /// After either switchover: each site's followers stream from its leader on the new timeline, and the
    /// other streaming sites that followed the old primary follow the new one.
    mutating func followersAfterSwitchover(from old: Site, to new: Site, roles: [String: Role], upstreams: inout [String: String]) {
        for f in old.followers {
            add(
                .awaitStreaming(instance: f.name, upstream: old.leader.name), site: old.name,
                "wait until \(f.name) streams from \(old.leader.name) on the new timeline")
        }
        for f in new.followers {
            add(
                .awaitStreaming(instance: f.name, upstream: new.leader.name), site: new.name,
                "wait until \(f.name) streams from \(new.leader.name) on the new timeline")
        }
        upstreams[new.name] = nil
        upstreams[old.name] = new.name
        repointStandbys(from: old.name, to: new, roles: roles, upstreams: &upstreams, except: [old.name])
    }

    /// The switchover at the site level: the same gates (switchover gate, demotion-token replay, the
    /// split-brain check inside promote-site), with the demotion and promotion asked of the sites' drivers.
    mutating func siteSwitchover(from old: Site, to new: Site, roles: [String: Role], upstreams: inout [String: String]) {
        let o = old.leader
        let n = new.leader
        add(
            .gateSwitchover(target: n.name, primary: o.name), site: new.name,
            "check that \(n.name) streams from \(o.name) within policy, same system and timeline")
        add(
            .demote(site: old.name, upstream: new.name), site: old.name,
            "demote site \(old.name) to a standby of \(new.name) (its shutdown checkpoint: the demotion token)")
        add(
            .awaitReplay(target: n.name, oldPrimary: o.name), site: new.name,
            "wait until \(n.name) has replayed \(o.name)'s shutdown checkpoint")
        add(.promoteSite(site: new.name), site: new.name, "promote site \(new.name) after proving no other instance accepts writes")
        add(
            .awaitStreaming(instance: o.name, upstream: n.name), site: old.name,
            "wait until \(o.name) streams from \(n.name) on the new timeline")
        followersAfterSwitchover(from: old, to: new, roles: roles, upstreams: &upstreams)
    }

    /// Every other streaming site that followed `from` now follows `to`'s leader.
    mutating func repointStandbys(
        from: String?, to new: Site, roles: [String: Role], upstreams: inout [String: String], except: Set<String> = []
    ) {
        for s in plan.sites where s.name != new.name && !except.contains(s.name) && roles[s.name] == .streamingStandby {
            guard upstreams[s.name] == from || upstreams[s.name] == nil else { continue }
            upstreams[s.name] = new.name
            if managed(s.name) {
                add(
                    .followSite(site: s.name, upstream: new.name), site: s.name,
                    "re-point site \(s.name) at \(new.leader.name) through its driver")
                continue
            }
            add(
                .configureRecovery(instance: s.leader.name, upstream: new.leader.name), site: s.name,
                "re-point \(s.leader.name) at \(new.leader.name)")
            add(
                .awaitStreaming(instance: s.leader.name, upstream: new.leader.name), site: s.name,
                "wait until \(s.leader.name) streams from \(new.leader.name)")
        }
    }
}
