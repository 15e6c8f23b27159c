import Foundation

/// The text of the configuration files failoverd writes or edits: its standby settings file
/// (`failoverd.recovery.conf`), the line that includes it from postgresql.conf, and the keys it owns, which
/// postgresql.auto.conf must not hold. Pure text, no I/O: the driver reads and writes through its transport.
enum PostgresConf {
    /// The settings failoverd's file sets, and which it therefore removes from postgresql.auto.conf.
    static let ownedSettings = ["restore_command", "primary_conninfo", "recovery_target_timeline"]
    /// The comment line that records the upstream, so that the settings can be read back exactly.
    static let upstreamTag = "# failoverd-upstream:"

    /// A postgresql.conf string literal: single quotes, with `'` doubled and `\` escaped.
    static func quoted(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "''") + "'"
    }

    /// failoverd.recovery.conf for `settings`: restore_command, recovery_target_timeline and primary_conninfo
    /// (empty for an archive standby, so that nothing earlier in postgresql.conf can make it stream).
    static func recoveryFile(_ settings: RecoverySettings, primaryConnInfo: String, restoreCommand: String) throws -> String {
        let upstreamJSON: String
        if let upstream = settings.upstream {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            upstreamJSON = String(decoding: try encoder.encode(upstream), as: UTF8.self)
        } else {
            upstreamJSON = "none"
        }
        return """
            # Written by failoverd; rewritten at every role change, so do not edit it.
            # Included from postgresql.conf (include_if_exists) and read at every start and reload.
            \(upstreamTag) \(upstreamJSON)
            restore_command = \(quoted(restoreCommand))
            recovery_target_timeline = 'latest'
            primary_conninfo = \(quoted(primaryConnInfo))

            """
    }

    /// The upstream a recovery file written by ``recoveryFile(_:primaryConnInfo:restoreCommand:)`` records:
    /// nil for an archive standby.
    ///
    /// - Throws: ``RecoveryFileProblem`` when the file has no upstream line (it was edited by hand) or the
    ///   line does not name an instance.
    static func upstream(inRecoveryFile text: String) throws(RecoveryFileProblem) -> Instance? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(upstreamTag) }) else { throw .noUpstreamLine }
        let value = line.dropFirst(upstreamTag.count).trimmingCharacters(in: .whitespaces)
        if value == "none" { return nil }
        guard let upstream = try? JSONDecoder().decode(Instance.self, from: Data(value.utf8)) else { throw .unreadableUpstream(value) }
        return upstream
    }

    /// Why a recovery file's upstream cannot be read back.
    enum RecoveryFileProblem: Error {
        /// No ``upstreamTag`` line.
        case noUpstreamLine
        /// The line's value, which is not an instance.
        case unreadableUpstream(String)
    }

    /// True when postgresql.conf includes failoverd's file (an `include_if_exists` line that is not a comment).
    static func includesRecoveryFile(_ conf: String) -> Bool {
        conf.split(separator: "\n").contains { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            return !text.hasPrefix("#") && text.hasPrefix("include_if_exists") && text.contains(InstancePaths.recoveryFileName)
        }
    }

    /// What to append to postgresql.conf (whose text is `conf`) so that it includes failoverd's file.
    static func includeBlock(after conf: String) -> String {
        (conf.hasSuffix("\n") || conf.isEmpty ? "" : "\n")
            + "\n# failoverd: standby settings (restore_command, primary_conninfo) live in this file.\n" + InstancePaths.includeLine + "\n"
    }

    /// True when the line sets one of ``ownedSettings``.
    static func setsOwnedSetting(_ line: Substring) -> Bool {
        let key = line.split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return ownedSettings.contains(key)
    }

    /// True when postgresql.auto.conf (read after postgresql.conf, so it wins) sets a key failoverd owns:
    /// ALTER SYSTEM or a hand edit overrides failoverd's file.
    static func overridesOwnedSettings(_ autoConf: String) -> Bool {
        autoConf.split(separator: "\n").contains(where: setsOwnedSetting)
    }

    /// postgresql.auto.conf without the keys failoverd owns; nil when it sets none of them.
    ///
    /// `pgbackrest restore` writes a restore_command there with a hard-coded --pg1-path, and pg_rewind copies
    /// the source's file, which names the source's own upstream: both would point the standby at the wrong
    /// directory or server.
    static func withoutOwnedSettings(_ autoConf: String) -> String? {
        let lines = autoConf.split(separator: "\n", omittingEmptySubsequences: false)
        let kept = lines.filter { !setsOwnedSetting($0) }
        return kept.count == lines.count ? nil : kept.joined(separator: "\n")
    }
}
