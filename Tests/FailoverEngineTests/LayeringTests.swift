import Foundation
import Testing

/// The engine's folders depend one way (#24.4): the flow plan → planning → execution → drivers, and the
/// tools around the engine (Sandbox, Lab, Drill) above it all, so that no core folder uses them.
/// docs/architecture.md draws these same arrows; a use of a type declared in a folder its folder has no
/// arrow to fails here, naming the file, the line and the type.
@Suite struct LayeringTests {
    /// The folders of Sources/FailoverEngine each folder may use (the types they declare), besides its own.
    static let arrows: [String: Set<String>] = {
        // The vocabulary every folder may use: Support (files, processes, LSN, errors), Topology (roles,
        // actions, transitions and the role machine) and Plan (the plan and its values).
        let support: Set<String> = ["Support"]
        let topology = support.union(["Topology"])
        let vocabulary = topology.union(["Plan"])
        // Planning and Drivers both sit on the vocabulary alone: the planner never asks a driver, a driver
        // never sees a step. The journal stores steps; the audit log lives in the journal's database.
        let journal = vocabulary.union(["Planning", "Audit"])
        let coordination = journal.union(["Journal", "Drivers"])
        let divergence = journal.union(["Journal", "Drivers"])
        let execution = journal.union(["Journal", "Drivers", "Coordination", "Divergence"])
        let core = execution.union(["Execution", "Check", "Fleet"])
        return [
            "Support": [],
            "Topology": support,
            "Plan": topology,
            "Planning": vocabulary,
            "Drivers": vocabulary,
            "Audit": vocabulary.union(["Planning"]),
            "Journal": journal,
            "Coordination": coordination,
            "Divergence": divergence,
            "Execution": execution,
            "Check": execution.union(["Execution"]),
            "Fleet": execution.union(["Execution", "Check"]),
            // The tools around the engine: each may use every core folder and the other tools.
            "Sandbox": core.union(["Lab"]),
            "Lab": core.union(["Sandbox"]),
            "Drill": core.union(["Sandbox", "Lab"]),
        ]
    }()

    /// Uses against the arrows that are known and kept for now, by folder and type, with why: each is a
    /// reverse use still to be turned around. A use of any other type against the arrows fails.
    static let knownReverseUses: [String: [String: String]] = [
        "Planning": [
            "DriverRegistry": "the one expansion asks the registry whether a kind is driven at the site or the instance level"
        ],
        "Drivers": [
            "Planner": "DriverRegistry.hostNeeds reads the plan's steps for what a step needs on this host",
            "StepOperation": "DriverRegistry's per-kind step needs take the step's operation",
            "EtcdGateway": "the Patroni fence writes Patroni's keys in its etcd through the coordinator's gateway",
            "AuditLog": "a Patroni refusal redacts the member's WAL source settings with the audit log's redaction",
            "CaptureFiles": "the drivers' capture primitives write and digest the capture's files",
            "CatalogSQL": "the PostgreSQL driver's catalog query runs the capture's SQL",
            "IsolatedCopy": "the PostgreSQL driver starts the capture's isolated copy",
            "LostSlots": "the PostgreSQL driver keeps the lost-rows slots by the capture's rules",
        ],
        "Journal": [
            "Coordinator": "the journal writes through the coordinator attached to it (Journal+Coordination)",
            "StepEvidence": "the journal encodes a step's evidence as it records the step",
            "EvidenceCoding": "the journal names an evidence coding error as the steps do",
            "StatusReport": "the journal builds the status report from its runs",
        ],
        "Audit": [
            "Journal": "the audit log lives in the journal's database and is read through it",
            "RunState": "the cross-check compares a run's outcome with its audit events",
            "CaptureManifest": "verify checks each sealed lost-transaction capture against its audit event",
            "CaptureFiles": "verify digests a sealed capture's files",
        ],
        "Coordination": [
            "InstanceObserver": "the cluster's identity is read through the run's observer",
            "StandardDrivers": "the coordinated status builds the run's drivers to see the members",
        ],
        "Divergence": [
            "StandardDrivers": "the lost listing builds the run's drivers to read a capture's instance"
        ],
    ]

    static var root: String { CLI.packageRoot + "/Sources/FailoverEngine" }

    /// Every use against the arrows and not known, as the failure names it.
    static func violations(_ layering: SourceLayering, arrows: [String: Set<String>], known: [String: [String: String]]) -> [String] {
        layering.uses.filter { use in
            !(arrows[use.from]?.contains(use.to) ?? false) && known[use.from]?[use.type] == nil
        }.map(\.description)
    }

    @Test("every type a folder of the engine uses is declared in a folder it has an arrow to")
    func everyUseFollowsAnArrow() throws {
        let layering = try SourceLayering(root: Self.root)
        #expect(layering.uses.count > 100, "the reader found the folders' uses of each other")
        #expect(layering.ambiguous.isEmpty, "a type name declared in two folders: \(layering.ambiguous)")
        let violations = Self.violations(layering, arrows: Self.arrows, known: Self.knownReverseUses)
        #expect(violations.isEmpty, "uses against the arrows (docs/architecture.md):\n\(violations.joined(separator: "\n"))")
    }

    @Test("every folder of the engine has its place in the arrows")
    func everyFolderIsPlaced() throws {
        let layering = try SourceLayering(root: Self.root)
        #expect(layering.folders == Set(Self.arrows.keys), "folders without arrows: \(layering.folders.subtracting(Self.arrows.keys))")
        for (folder, targets) in Self.arrows { #expect(targets.isSubset(of: layering.folders), "\(folder) → \(targets)") }
    }

    @Test("each known reverse use is still there (a turned-around one leaves the list)")
    func knownReverseUsesAreReal() throws {
        let layering = try SourceLayering(root: Self.root)
        for (folder, types) in Self.knownReverseUses {
            for type in types.keys {
                let use = layering.uses.first { $0.from == folder && $0.type == type }
                #expect(use != nil, "\(folder) no longer uses \(type): remove it from knownReverseUses")
                if let use { #expect(!(Self.arrows[folder]?.contains(use.to) ?? false), "\(folder) → \(use.to) is an arrow") }
            }
        }
    }

    @Test("a use against the arrows fails, naming the file, the line and the type; comments and strings do not count")
    func aReverseUseFails() throws {
        let root = NSTemporaryDirectory() + "failoverd-layering-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        func write(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(
                atPath: (root + "/" + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: root + "/" + path, atomically: true, encoding: .utf8)
        }
        try write("Plan/Plan.swift", "public struct Plan: Sendable {\n    struct Nested {}\n}\n")
        try write("Execution/Executor.swift", "@_spi(X) public actor Executor {\n    let plan: Plan\n}\n")
        try write(
            "Drivers/Postgres/Driver.swift",
            """
            /// Runs what the ``Executor`` asks; /* Executor */
            final class Driver {
                let plan: Plan  // an Executor
                let text = "Executor \\(Plan.self) " + #"Executor"#
                let steps = "\\(Executor.self)"
            }

            """)
        let layering = try SourceLayering(root: root)
        #expect(layering.declaredIn == ["Plan": "Plan", "Executor": "Execution", "Driver": "Drivers"])
        let arrows: [String: Set<String>] = ["Plan": [], "Execution": ["Plan", "Drivers"], "Drivers": ["Plan"]]
        #expect(
            Self.violations(layering, arrows: arrows, known: [:]) == [
                "Drivers/Postgres/Driver.swift:5 uses Executor (declared in Execution/): Drivers → Execution"
            ])
        #expect(Self.violations(layering, arrows: arrows, known: ["Drivers": ["Executor": "a test"]]).isEmpty)
    }
}
