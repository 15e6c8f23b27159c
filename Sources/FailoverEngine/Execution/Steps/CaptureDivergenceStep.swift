import Foundation

/// Captures what a stopped former primary wrote past the fork before a rewind, rebuild or restore erases it
/// (``LostCapture``); with --skip-lost-capture, records the operator's override instead.
struct CaptureDivergenceStep: RunnableStep {
    let instance: Instance
    let source: Instance?

    /// Done when this run has sealed a capture of the instance.
    func check(_ run: StepRunner) async throws -> Bool {
        (try? CaptureManifest.read(directory: LostDirectory.capture(run.ctx.stateDirectory, run: run.ctx.runID, instance: instance.name)))
            != nil
    }

    func act(_ run: StepRunner) async throws -> CaptureEvidence {
        let ctx = run.ctx
        if ctx.skipLostCapture {
            try AuditLog(journal: ctx.journal).append(
                kind: .override, run: ctx.runID, site: run.step.site,
                details: [
                    "override": "skip-lost-capture", "instance": instance.name,
                    "consequence": "repaired without a capture: what it committed after the fork is not listed",
                ])
            return CaptureEvidence(
                directory: nil, fork: "unknown", diverged: true, walBytes: 0, transactions: 0, walFrom: "", rows: "", manifestSHA256: nil,
                skipped: "--skip-lost-capture: the operator chose to repair \(instance.name) without a capture")
        }
        let driver = try LostCapture.driver(plan: ctx.plan, runDriver: ctx.driver, logger: ctx.logger)
        if let earlier = try await earlierCapture(run, driver: driver) { return earlier }
        var capture = LostCapture(
            plan: ctx.plan, driver: driver, stateDirectory: ctx.stateDirectory, run: ctx.runID, instance: instance, site: run.step.site,
            source: source, logger: ctx.logger)
        capture.midpoint = ctx.midpoint
        let manifest = try await capture.capture()
        return try record(manifest, directory: capture.directory, run)
    }

    /// A capture an earlier run sealed of this very WAL (same cluster, same end): referenced, not copied again.
    func earlierCapture(_ run: StepRunner, driver: any InstanceDriver) async throws -> CaptureEvidence? {
        let candidates = LostDirectory.sealed(run.ctx.stateDirectory).filter {
            $0.manifest.instance == instance.name && $0.manifest.diverged
        }
        guard let (directory, manifest) = candidates.last, let end = manifest.end else { return nil }
        guard let control = try? await driver.controlData(of: instance), control.systemIdentifier == manifest.systemIdentifier,
            let now = try? await driver.endOfWAL(instance), now == end
        else { return nil }
        return try record(manifest, directory: directory, run, earlier: true)
    }

    /// Journals and audits a sealed capture.
    func record(_ m: CaptureManifest, directory: String, _ run: StepRunner, earlier: Bool = false) throws -> CaptureEvidence {
        var details = m.auditDetails(directory: directory)
        if earlier { details["capturedBy"] = m.run }
        try AuditLog(journal: run.ctx.journal).append(kind: .lostCapture, run: run.ctx.runID, site: run.step.site, details: details)
        run.ctx.logger.info(
            "captured the former primary's WAL past the fork",
            metadata: ["instance": "\(instance.name)", "directory": "\(details["directory"] ?? "")", "transactions": "\(m.transactions)"])
        return CaptureEvidence(
            directory: details["directory"], fork: details["fork"] ?? "unknown", diverged: m.diverged, walBytes: m.walBytes,
            transactions: m.transactions, walFrom: details["walFrom"] ?? "", rows: m.rows, manifestSHA256: details["manifestSHA256"])
    }
}
