import Testing

@testable import FailoverEngine

/// Expects `body` to throw a ``FailoverError`` with `code` whose message contains `text`: a test says
/// which refusal it expects, never "any error".
func expectFailure(
    _ code: FailoverError.Code, _ text: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
    let error = #expect(throws: FailoverError.self, sourceLocation: sourceLocation) { try body() }
    check(error, code, text, sourceLocation)
}

/// Expects the async `body` to throw a ``FailoverError`` with `code` whose message contains `text`.
func expectFailure(
    _ code: FailoverError.Code, _ text: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async {
    let error = await #expect(throws: FailoverError.self, sourceLocation: sourceLocation) { try await body() }
    check(error, code, text, sourceLocation)
}

private func check(_ error: FailoverError?, _ code: FailoverError.Code, _ text: String, _ sourceLocation: SourceLocation) {
    guard let error else { return }
    #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
    #expect(error.message.contains(text), "the message does not say \"\(text)\": \(error.message)", sourceLocation: sourceLocation)
}
