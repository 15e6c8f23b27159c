import Foundation
import Logging

/// Where the fault switch kills the engine: after step N is journaled `started`, before, inside (`mid`) or
/// after its act.
public struct CrashPoint: Sendable, Equatable, CustomStringConvertible {
    /// Before, inside or after the act. `mid` fires where a step offers a midpoint (capture-divergence: its WAL
    /// copied, the capture not yet sealed), and right after the act in steps that offer none.
    public enum Phase: String, Sendable { case before, mid, after }
    /// The step number, from 1.
    public var step: Int
    /// Before or after the act.
    public var phase: Phase

    /// Parses `N:before`, `N:mid` or `N:after`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let n = Int(parts[0]), n >= 1, let p = Phase(rawValue: String(parts[1])) else { return nil }
        step = n
        phase = p
    }

    /// Creates a crash point.
    public init(step: Int, phase: Phase) {
        self.step = step
        self.phase = phase
    }

    public var description: String { "\(step):\(phase.rawValue)" }
}

/// A progress notification: a step started, finished or was skipped.
public struct StepProgress: Sendable {
    /// Where a step stands in a progress report; the raw value is the word `run` prints.
    public enum Phase: String, Sendable, CaseIterable {
        /// Before its check.
        case begin
        /// Its act started (journaled).
        case started
        /// Its act and verify finished.
        case done
        /// Its check found the postcondition already held: skipped.
        case satisfied
        /// It failed.
        case failed
    }

    /// The step.
    public var step: Step
    /// Where the step stands.
    public var phase: Phase
    /// How many steps the run has.
    public var total: Int
    /// Seconds since the run (or resume) started.
    public var elapsed: Double
}

/// How to carry out a run or a resume.
public struct RunOptions: Sendable {
    /// The state directory holding journal.sqlite (and simulation.json with --simulate).
    public var stateDirectory: String
    /// Run against the simulated driver instead of PostgreSQL.
    public var simulate: Bool
    /// The fault switch for crash tests and drills.
    public var crashAt: CrashPoint?
    /// Override the data-loss gates for this run; written to the audit log.
    public var allowDataLoss: Bool
    /// True when a drill runs the plan.
    public var isDrill: Bool
    /// Where the library logs (info and below); the executable bootstraps logging.
    public var logger: Logger
    /// Called on every step state change, and with status `begin` before a step's check; the executor waits
    /// for it to return (a drill injects its faults there).
    public var onProgress: (@Sendable (StepProgress) async -> Void)?
    /// Seconds to let the world run between two transitions (drills measure each topology); 0 by default.
    public var dwellBetweenTransitions: Double = 0
    /// Signs audit checkpoints at the end of the run and every 100 events; nil when no key is configured.
    public var auditSigner: AuditSigner?
    /// Sites the operator declares fenced by other means (--assume-fenced): a failover whose old primary
    /// there cannot be reached may promote without seeing it stopped. Written to the audit log.
    public var assumeFenced: [String] = []
    /// Repair former primaries without capturing what they wrote past the fork (--skip-lost-capture).
    /// Written to the audit log.
    public var skipLostCapture = false

    /// Options with defaults: no crash point, no override, not a drill.
    public init(
        stateDirectory: String, simulate: Bool = false, crashAt: CrashPoint? = nil, allowDataLoss: Bool = false,
        isDrill: Bool = false, logger: Logger = Logger(label: "failoverd"), onProgress: (@Sendable (StepProgress) async -> Void)? = nil
    ) {
        self.stateDirectory = stateDirectory
        self.simulate = simulate
        self.crashAt = crashAt
        self.allowDataLoss = allowDataLoss
        self.isDrill = isDrill
        self.logger = logger
        self.onProgress = onProgress
    }

    /// The default state directory: `$FAILOVERD_STATE`, else one per machine (``StateDirectory/defaultPath(environment:isRoot:home:)``).
    public static var defaultStateDirectory: String {
        StateDirectory.defaultPath(environment: ProcessInfo.processInfo.environment, isRoot: OSUser.isRoot, home: OSUser.current.home)
    }
}

/// How a run ended.
public struct RunOutcome: Sendable, Codable {
    /// The run id.
    public var runID: String
    /// `succeeded`, the only outcome returned (failures throw).
    public var outcome: RunState
    /// Steps whose act ran in this invocation.
    public var stepsDone: Int
    /// Steps found already satisfied in this invocation.
    public var stepsSatisfied: Int
    /// Steps in the run.
    public var stepCount: Int
    /// Seconds this invocation took.
    public var seconds: Double
}
