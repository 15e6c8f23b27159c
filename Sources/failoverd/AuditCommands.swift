import ArgumentParser
import FailoverEngine
import Foundation

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Query the append-only, hash-chained audit log, verify it, export it, or make its signing key.",
        subcommands: [AuditList.self, AuditVerify.self, AuditExport.self, AuditKeygen.self], defaultSubcommand: AuditList.self)
}

/// The signing key options of the verbs that write audit events.
struct AuditSigningOptions: ParsableArguments {
    @Option(
        name: .customLong("audit-key"),
        help:
            "Sign audit checkpoints with this Ed25519 private key (default: $FAILOVERD_AUDIT_KEY; make one with `failoverd audit keygen`).")
    var auditKey: String?
    @Option(
        name: .customLong("audit-checkpoints"),
        help: "Append signed checkpoints to this file (default: $FAILOVERD_AUDIT_CHECKPOINTS, else audit-checkpoints.jsonl beside the key)."
    )
    var auditCheckpoints: String?

    /// The configured signer, or nil when no key is configured.
    func signer() throws -> AuditSigner? { try AuditSigner.configured(keyPath: auditKey, checkpointPath: auditCheckpoints) }
}

struct AuditList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Print audit events, filtered (the default).")

    @Option(help: "Only this run.") var run: String?
    @Option(help: "Only this site.") var site: String?
    @Option(help: "Only events at or after this ISO 8601 time (e.g. 2026-11-27T04:00:00Z).") var since: String?
    @Option(help: "Only this kind (run-start, run-end, step-start, step-end, step-skip, step-fail, refusal, lock-takeover, override…).")
    var kind: String?
    @Option(help: "At most the latest N events.") var limit: Int?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            var sinceNormalized: String?
            if let since {
                guard let date = (try? Date(since, strategy: .iso8601)) ?? (try? Date(since + "T00:00:00Z", strategy: .iso8601)) else {
                    throw FailoverError.invalid("--since \(since): expected an ISO 8601 time such as 2026-11-27T04:00:00Z")
                }
                sinceNormalized = Journal.timestamp(date)
            }
            let journal = try Journal(existingStateDirectory: state.state)
            let events = try AuditLog(journal: journal).query(.init(run: run, site: site, since: sinceNormalized, kind: kind, limit: limit))
            if json { return try printJSON(events) }
            for e in events {
                print("\(e.seq)\t\(e.at)\t\(e.runID ?? "-")\t\(e.site ?? "-")\t\(e.actor)\t\(e.kind)\t\(e.details)")
            }
        }
    }
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify the audit log: exit 0 when intact, 1 naming the first bad seq and what is wrong.",
        discussion: """
            Walks the hash chain, checks every signed checkpoint with the public key (a rewrite with recomputed \
            hashes, deleted newest events, checkpoints that do not match the log, a run-end, abandon, refusal or \
            adopt that no checkpoint covers), and cross-checks the log against the runs and steps tables. Without \
            --public-key it verifies the chain and says what it cannot prove.
            """)

    @Option(
        name: .customLong("public-key"),
        help: "The Ed25519 public key (audit-signing.pub) whose checkpoints to check; repeat for a rotated key.")
    var publicKeys: [String] = []
    @Option(help: "The checkpoint file kept outside the database (default: audit-checkpoints.jsonl beside the public key, if there).")
    var checkpoints: String?
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            let journal = try Journal(existingStateDirectory: state.state)
            if checkpoints != nil && publicKeys.isEmpty {
                throw FailoverError.invalid(
                    "--checkpoints needs --public-key: checkpoints are checked with the public key that matches the signing key")
            }
            let keys = try publicKeys.map(AuditKeys.loadPublicKey)
            var file = checkpoints
            if file == nil, let first = publicKeys.first {
                let beside = ((first as NSString).deletingLastPathComponent as NSString).appendingPathComponent(AuditKeys.checkpointFile)
                if FileManager.default.fileExists(atPath: beside) { file = beside }
            }
            if let file, !FileManager.default.fileExists(atPath: file) {
                throw FailoverError.invalid(
                    "checkpoint file \(file) does not exist: give the audit-checkpoints.jsonl that failoverd appended to")
            }
            let v = try await AuditLog(journal: journal).verify(.init(publicKeys: keys, checkpointFile: file))
            if v.intact {
                print("audit log intact: \(v.checked) events, hash chain verified")
                if !keys.isEmpty {
                    let last = v.lastCheckpoint.map { " (latest: seq \($0.seq), signed \($0.at))" } ?? ""
                    let others = v.otherJournalCheckpoints > 0 ? " (and \(v.otherJournalCheckpoints) of other journals, left aside)" : ""
                    print(
                        "signed checkpoints: \(v.checkpointsVerified) verified and matching the log\(last); \(v.journalCheckpoints) in the journal, \(v.fileCheckpoints) in \(file ?? "no checkpoint file")\(others)"
                    )
                }
                print(
                    "runs and steps tables: \(v.runsChecked) run\(v.runsChecked == 1 ? "" : "s") agree\(v.runsChecked == 1 ? "s" : "") with the log"
                )
                if v.capturesChecked > 0 {
                    print("lost-transaction captures: \(v.capturesChecked) match the digests the log recorded")
                }
                for c in v.caveats { print("not proven: " + c) }
            } else {
                let first = v.problems[0]
                print("audit log BROKEN\(first.seq.map { " at seq \($0)" } ?? ""): \(first.reason)")
                for p in v.problems.dropFirst().prefix(20) { print("  also\(p.seq.map { " at seq \($0)" } ?? ""): \(p.reason)") }
                if v.problems.count > 21 { print("  … and \(v.problems.count - 21) more") }
                throw ExitCode(1)
            }
        }
    }
}

struct AuditExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Print the audit log as JSON lines for a log store: each event with its hash, and the signed checkpoints.",
        discussion: """
            Each event line holds the exact canonical text its hash covers ("event"), its "prevHash" and "hash", so \
            hash = SHA-256(prevHash ‖ event) can be recomputed anywhere; each checkpoint line is the line failoverd \
            appends to the checkpoint file. --after-seq ships only what is new.
            """)

    @Option(help: "Output format (jsonl).") var format: String = "jsonl"
    @Option(name: .customLong("after-seq"), help: "Only events after this seq.") var afterSeq: Int64 = 0
    @OptionGroup var state: StateOption

    func run() async throws {
        try await guarded {
            guard format == "jsonl" else { throw FailoverError.invalid("--format \(format): the only format is jsonl") }
            let journal = try Journal(existingStateDirectory: state.state)
            var buffer = [UInt8]()
            buffer.reserveCapacity(1 << 16)
            func flush() {
                FileHandle.standardOutput.write(Data(buffer))
                buffer.removeAll(keepingCapacity: true)
            }
            try AuditLog(journal: journal).exportJSONLines(afterSeq: afterSeq) { line in
                buffer.append(contentsOf: line.utf8)
                buffer.append(0x0A)
                if buffer.count >= 1 << 16 { flush() }
            }
            flush()
        }
    }
}

struct AuditKeygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Write a new Ed25519 key pair for signing audit checkpoints (the private key mode 0600).")

    @Option(help: "The directory to write audit-signing.key and audit-signing.pub into (created 0700 if missing).") var out: String

    func run() async throws {
        try await guarded {
            let g = try AuditKeys.generate(into: out)
            print("wrote \(g.privateKeyPath) (private, mode 0600) and \(g.publicKeyPath); key id \(g.keyID)")
            print("sign with: failoverd run PLAN --audit-key \(g.privateKeyPath)   (or export FAILOVERD_AUDIT_KEY=\(g.privateKeyPath))")
            print(
                "checkpoints go to \(((out as NSString).appendingPathComponent(AuditKeys.checkpointFile))) unless --audit-checkpoints names another file"
            )
            print("keep a copy of the public key and the checkpoint file on another host or write-once storage (see docs/journal.md)")
        }
    }
}
