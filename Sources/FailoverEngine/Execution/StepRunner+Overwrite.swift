import Foundation

/// The check before failoverd overwrites a data directory (delta restore, pg_rewind, or the stop before them).
extension StepRunner {
    /// Refuses unless `target`'s data directory belongs to the plan's cluster and is not a primary that
    /// failoverd did not fence. Returns the evidence of what was checked.
    ///
    /// The plan's cluster is the one the live primary runs (`source` when given, else any instance of the
    /// plan that answers as a primary) or the one the repository's stanza backs up. An empty directory has
    /// nothing to protect. A directory with files but no readable pg_control is refused, unless this very
    /// step was interrupted in this run (a restore that a crash cut short).
    func checkOverwrite(_ target: Instance, by action: String, source: Instance?) async throws -> OverwriteCheck {
        guard try await driver.hasData(target) else { return OverwriteCheck(nothingToProve: "no cluster in the data directory") }
        let control: ControlData?
        var readError = "no pg_control"
        do { control = try await driver.controlData(of: target) } catch {
            control = nil
            readError = "\(error)"
        }
        guard let control else {
            if inDoubt { return OverwriteCheck(nothingToProve: "no readable pg_control: this step was interrupted in this run") }
            throw FailoverError.refused(
                "\(action) refused: \(target.dataDirectory) (\(target.name)) holds files but no readable pg_control (\(readError)); failoverd will not overwrite what it cannot identify. Check the plan's dataDirectory for \(target.name); nothing in it was changed."
            )
        }
        var known: [(String, String)] = []
        for candidate in (source.map { [$0] } ?? ctx.plan.allInstances.map(\.instance)) where candidate != target {
            if let s = try? await ctx.status(of: candidate), s.reachable, !s.inRecovery || candidate == source {
                known.append((candidate.name, s.systemIdentifier))
            }
        }
        if let repository = try? await driver.repositorySystemIdentifier() {
            known.append(("the repository's stanza \(ctx.plan.repository.stanza)", repository))
        }
        guard !known.isEmpty else {
            throw FailoverError.refused(
                "\(action) refused: cannot tell which cluster is the plan's (no primary answers and the repository's stanza cannot be read), so \(target.dataDirectory) cannot be proven to belong to it. Restore access to the primary or the repository, then resume."
            )
        }
        guard known.contains(where: { $0.1 == control.systemIdentifier }) else {
            let names = known.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
            throw FailoverError.refused(
                "\(action) refused: \(target.dataDirectory) (\(target.name)) holds the cluster with system identifier \(control.systemIdentifier), not the plan's (\(names)); is the plan's dataDirectory for \(target.name) a typo? Nothing in it was changed."
            )
        }
        if control.state == "in production", try await !Blocking.run({ [ctx] in try ctx.journal.isFenced(instance: target.name) }) {
            throw FailoverError.refused(
                "\(action) refused: \(target.name)'s pg_control says \"in production\" (a primary that is running or was not shut down) and failoverd did not fence it; overwriting it could discard commits nobody has. Fence its site first (a fence transition), then resume."
            )
        }
        return OverwriteCheck(systemIdentifier: control.systemIdentifier, state: control.state)
    }

    /// The restore or rewind that follows this stop step for the same instance in this transition, if any.
    var overwriteAfterStop: Step? {
        ctx.steps.first {
            $0.transition == step.transition && $0.number > step.number && $0.instance == step.instance
                && ($0.kind == .restore || $0.kind == .rewind)
        }
    }
}
