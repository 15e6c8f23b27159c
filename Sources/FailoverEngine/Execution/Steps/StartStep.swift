/// Starts `instance` as a standby; refuses to start a fenced instance without standby settings.
struct StartStep: RunnableStep {
    let instance: Instance

    func check(_ run: StepRunner) async throws -> Bool {
        let s = try await run.ctx.status(of: instance)
        if s.isWritablePrimary {
            throw FailoverError.refused(
                "\(instance.name) is running as a primary, but this step starts it as a standby; stop it (or fence its site) before resuming."
            )
        }
        return s.running
    }

    func act(_ run: StepRunner) async throws -> NoEvidence {
        let ctx = run.ctx
        if try await Blocking.run({ try ctx.journal.isFenced(instance: instance.name) }),
            try await run.driver.recoverySettings(of: instance) == nil
        {
            throw FailoverError.refused(
                "\(instance.name) is fenced and has no standby settings: failoverd will not start it as a primary. Repair it with rewind or rebuild."
            )
        }
        try await run.driver.start(instance)
        return NoEvidence()
    }

    func verify(_ run: StepRunner) async throws -> Bool {
        try await run.ctx.wait("\(instance.name) accepts connections", timeout: 30) {
            try await run.ctx.status(of: instance).reachable ? true : nil
        }
    }
}
