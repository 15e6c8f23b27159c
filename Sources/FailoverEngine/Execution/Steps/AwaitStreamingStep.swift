/// Waits until `instance` streams from `upstream` on the upstream's timeline.
struct AwaitStreamingStep: RunnableStep {
    let instance: Instance
    let upstream: Instance

    func check(_ run: StepRunner) async throws -> Bool { try await run.isFollowing(instance, upstream) }

    func act(_ run: StepRunner) async throws -> StreamingEvidence {
        let timeline = try await run.ctx.wait("\(instance.name) streams from \(upstream.name)") {
            try await run.isFollowing(instance, upstream)
                ? try await run.ctx.status(of: instance).walReceiver?.receivedTimeline ?? 0 : nil
        }
        return StreamingEvidence(timeline: timeline)
    }
}
