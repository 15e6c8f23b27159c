import Foundation

/// What a step proved or did, journaled with it as a JSON object of strings and decoded back typed.
public protocol StepEvidence: Codable, Sendable, Equatable {}

extension StepEvidence {
    /// The journal's form: field → text. Throws when a field does not encode as text: evidence that cannot be
    /// journaled is an error, never empty evidence.
    public func journalFields() throws -> [String: String] {
        try JSONDecoder().decode([String: String].self, from: try JSONEncoder().encode(self))
    }

    /// Decodes evidence from the journal's form.
    public init(fields: [String: String]) throws {
        self = try JSONDecoder().decode(Self.self, from: try JSONEncoder().encode(fields))
    }
}

/// A key of a JSON object whose names are data (`candidate.dr-0`, `role.prod`).
struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A step that proves or records nothing beyond having run.
public struct NoEvidence: StepEvidence {
    /// Nothing.
    public init() {}
}

// The evidence the drivers return (Drivers/DemotionToken.swift, Drivers/DriverEvidence.swift), journaled as
// their steps' evidence.
extension DemotionToken: StepEvidence {}
extension Promotion: StepEvidence {}
extension FenceEvidence: StepEvidence {}
