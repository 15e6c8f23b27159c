import ArgumentParser
import FailoverEngine
import Foundation

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check a plan and report every problem at once with its JSON path (exit 0 valid, 2 invalid).")

    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Print the problems as JSON.") var json = false

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: plan) else {
            FileHandle.standardError.write(Data("failoverd: cannot read plan file \(plan)\n".utf8))
            throw ExitCode(2)
        }
        // The plan, then whether pgBackRest can reach its repository as it says (type, credentials) and whether
        // the fencing hook is root's own.
        let result = HostAccess.validate(data)
        if json {
            struct Out: Encodable { var valid: Bool; var summary: String?; var problems: [PlanProblem] }
            try printJSON(Out(valid: result.isValid, summary: result.isValid ? result.summary : nil, problems: result.problems))
        } else {
            if !result.problems.isEmpty { print(PlanLoader.describe(result.problems, file: plan)) }
            if result.isValid { print(result.summary) }
        }
        if !result.isValid { throw ExitCode(2) }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Print the steps each transition expands into, with no side effect.")

    @Argument(help: "The plan file.") var plan: String
    @Flag(help: "Print the steps as JSON.") var json = false

    func run() async throws {
        try await guarded {
            let p = try PlanLoader.load(plan)
            switch Planner(plan: p).steps() {
            case .failure(let refusal): throw FailoverError.refused(refusal.message)
            case .success(let steps):
                if json {
                    try printJSON(steps)
                    return
                }
                var transition = 0
                for s in steps {
                    if s.transition != transition {
                        transition = s.transition
                        print("transition \(transition): \(p.transitions[transition - 1].summary)")
                    }
                    let target = s.instance ?? "site \(s.site)"
                    let mark = s.destructive ? "destructive" : ""
                    print("  " + String(s.number).padded(4) + s.kind.rawValue.padded(25) + target.padded(11) + mark.padded(12) + s.summary)
                }
                print("\(steps.count) steps, \(steps.filter(\.destructive).count) destructive")
            }
        }
    }
}
