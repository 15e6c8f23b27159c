import Foundation

/// Evidence where it enters and leaves the journal. It enters as the journal's text form
/// (``StepEvidence/journalFields()``) and leaves decoded once, into the type its step kind's act returns;
/// a failure either way is an error naming the run, the step, its kind and the field, never evidence taken
/// for absent or empty.
extension StepEvidence {
    /// Decodes the evidence step `step` of run `run` journaled; throws a failure (exit 1) naming the run, the
    /// step, its kind and the field when the text is not this evidence.
    init(journaled fields: [String: String], run: String, step: Step) throws {
        do {
            self = try Self(fields: fields)
        } catch {
            throw FailoverError.failed(
                "run \(run) step \(step.number) (\(step.kind.rawValue)): its journaled evidence is not a \(Self.self): \(EvidenceCoding.describe(error)). failoverd does not act on evidence it cannot read; the journal was changed outside failoverd or written by a failoverd that journals this step differently. Resume it with the failoverd that wrote it, or give it up: failoverd abandon \(run)"
            )
        }
    }

    /// The journal's text form of the evidence step `step` of run `run` produced; throws a failure (exit 1)
    /// naming the run, the step, its kind and the field that does not encode as text.
    func journalFields(run: String, step: Step) throws -> [String: String] {
        do {
            return try journalFields()
        } catch {
            throw FailoverError.failed(
                "run \(run) step \(step.number) (\(step.kind.rawValue)): its evidence (\(Self.self)) cannot be journaled as text: \(EvidenceCoding.describe(error)); nothing was journaled as its evidence. This is a failoverd defect: report it with this message."
            )
        }
    }
}

extension StepRecord {
    /// The evidence the step journaled, decoded as its kind's evidence type; nil when it journaled none (a
    /// satisfied step, or one that proves nothing beyond having run). Throws when the text does not decode.
    func decodedEvidence() throws -> (any StepEvidence)? {
        evidence.isEmpty ? nil : try step.kind.evidenceType.init(journaled: evidence, run: runID, step: step)
    }
}

/// A run's steps as they leave the journal for the executor: the records, and the evidence of every
/// finished step decoded once into its kind's type.
struct JournaledSteps {
    /// The run's steps, in order.
    let records: [StepRecord]
    /// The decoded evidence of the finished steps that journaled some, by step number.
    let evidence: [Int: any StepEvidence]

    /// Reads run `run`'s steps from `journal`; throws naming the step whose evidence does not decode.
    init(run: String, journal: Journal) throws {
        records = try journal.steps(of: run)
        var evidence: [Int: any StepEvidence] = [:]
        for r in records where r.status.isFinished {
            if let e = try r.decodedEvidence() { evidence[r.step.number] = e }
        }
        self.evidence = evidence
    }
}

/// What went wrong coding evidence, in words that name the field.
enum EvidenceCoding {
    /// `field lastKnownLSN: "x" is not an LSN`, `field timeline is missing`…
    static func describe(_ error: any Error) -> String {
        func field(_ path: [any CodingKey]) -> String {
            path.isEmpty ? "the evidence" : "field " + path.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case DecodingError.keyNotFound(let key, let c): return "\(field(c.codingPath + [key])) is missing"
        case DecodingError.valueNotFound(_, let c): return "\(field(c.codingPath)) is null"
        case DecodingError.typeMismatch(_, let c), DecodingError.dataCorrupted(let c):
            return "\(field(c.codingPath)): \(c.debugDescription)"
        case EncodingError.invalidValue(_, let c): return "\(field(c.codingPath)): \(c.debugDescription)"
        default: return "\(error)"
        }
    }
}
